"""The transfer ledger on its own: records, staleness, atomic batches, threads, corruption."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from xnat_prefect.errors import InvalidInputError
from xnat_prefect.services.ledger import (
    LEDGER_FILE_NAME,
    LedgerRecord,
    TransferLedger,
    default_ledger_dir,
    file_stamp,
)


def test_record_get_and_staleness(tmp_path: Path) -> None:
    data = tmp_path / "a.dcm"
    data.write_bytes(b"x" * 100)
    with TransferLedger(tmp_path / "l.sqlite") as ledger:
        ledger.record("scope", "a", path=data, state="confirmed", local_md5="m", server_md5="s",
                      remote="/data/x")  # fmt: skip
        entry = ledger.get("scope", "a")
        assert entry is not None
        assert (entry.size, entry.local_md5, entry.server_md5, entry.state, entry.remote) == (
            100, "m", "s", "confirmed", "/data/x",
        )  # fmt: skip
        assert ledger.confirmed_unchanged("scope", "a", path=data) == entry
        assert ledger.get("other", "a") is None
        stat = data.stat()
        os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        assert ledger.confirmed_unchanged("scope", "a", path=data) is None  # touched: stale
        data.unlink()
        assert not entry.matches_file()


def test_persisted_between_instances_and_forget(tmp_path: Path) -> None:
    files = []
    for n in range(5):
        path = tmp_path / f"{n}.bin"
        path.write_bytes(b"y" * n)
        files.append(path)
    with TransferLedger.in_directory(tmp_path) as ledger:
        written = ledger.record_many("s", [LedgerRecord(p.name, p, "confirmed") for p in files])
        assert written == 5
    assert (tmp_path / LEDGER_FILE_NAME).is_file()
    with TransferLedger.in_directory(tmp_path) as ledger:
        assert set(ledger.entries("s")) == {p.name for p in files}
        assert ledger.entries("s", state="partial") == {}
        assert ledger.forget("s", ["0.bin", "1.bin", "nope"]) == 2
        assert ledger.forget("s") == 3
        assert ledger.entries("s") == {}


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"z")
    with TransferLedger(tmp_path / "l.sqlite") as ledger:

        def write(worker: int) -> None:
            for n in range(50):
                ledger.record("s", f"{worker}-{n}", path=target, state="confirmed")

        threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ledger.entries("s")) == 400
    with TransferLedger(tmp_path / "l.sqlite") as again:  # a second process-like opener
        assert len(again.entries("s")) == 400


def test_a_corrupt_ledger_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with TransferLedger(path) as ledger:
        assert ledger.entries("s") == {}
    assert list(tmp_path.glob("l.sqlite.corrupt-*"))


def test_unwritable_location_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match="ledger=False"):
        TransferLedger(blocker / "sub" / "l.sqlite")


def test_default_dir_and_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XNAT_PREFECT_LEDGER_DIR", str(tmp_path / "x"))
    assert default_ledger_dir() == tmp_path / "x"
    monkeypatch.delenv("XNAT_PREFECT_LEDGER_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_ledger_dir() == tmp_path / "cache" / "xnat-prefect"
    (tmp_path / "f").write_bytes(b"abc")
    assert file_stamp(tmp_path / "f")[0] == 3
