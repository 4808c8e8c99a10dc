"""Downloads that must fail loudly: a full disk, an output path that is a file, a lying listing.

* A full disk (ENOSPC) deletes the ``.part``, starts no other file and raises a
  ``TransferError`` (status ``ENOSPC``) naming the file, the folder, the bytes and the fix. The
  ENOSPC is raised by the per-chunk byte hook, right after a chunk was written to the
  ``.part`` (a real 1 MiB tmpfs, which needs root, is the reliability suite's
  ``download-full-disk`` case).
* ``output_dir`` that is a file (or runs through one) is an ``InvalidInputError``.
* A session whose file listing is empty while its scans' resources count files is a
  ``VerificationError`` (status ``EMPTY_LISTING``) with ``verify``.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, TransferError, VerificationError
from xnat_prefect.models.transfer import DownloadProgress
from xnat_prefect.services._transfer_fetch import FetchSettings, fetch_file, fetch_many, part_path
from xnat_prefect.services._transfer_plan import RemoteFile, scan_files, scan_types
from xnat_prefect.services._transfer_streams import ProgressTracker
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.testing.server import XNATEmulator


@pytest.fixture
def session(client: XNATClient, rest: Any, tmp_path: Path) -> str:
    """P1/SUBJ1/SESS1: 2 scans of 3 DICOM files each (archived by one DICOM-zip import)."""
    experiment_id = rest.archive_study(
        tmp_path / "seed", series=2, instances_per_series=3, rows=32, cols=32
    )
    return experiment_id


def _leftovers(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".part"))


def _file_gets(xnat_emulator: XNATEmulator) -> int:
    """Single-file GETs the emulator answered (its metrics key routes by template)."""
    requests = xnat_emulator.metrics()["requests"]
    return sum(n for key, n in requests.items() if key.startswith("GET") and "/files/{path" in key)


# --- a full disk --------------------------------------------------------------------------------


class _DiskFillsUp(ProgressTracker[DownloadProgress]):
    """Progress counting whose byte hook fails like a write to a full disk, after ``room``."""

    def __init__(self, room: int) -> None:
        super().__init__(None, lambda c: DownloadProgress(phase=c.phase), phase="listing")
        self.room = room

    def add_bytes(self, count: int) -> None:
        super().add_bytes(count)
        if self.counters.bytes > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _plan(client: XNATClient, session: str) -> list[RemoteFile]:
    data = f"/data/experiments/{session}"
    return scan_files(client, data, label="SESS1", types=scan_types(client, data))


def _settings() -> FetchSettings:
    return FetchSettings(resume=True, verify=True, max_retries=1, backoff_base=0.01, scope="t")


def test_a_full_disk_deletes_the_part_and_names_the_file_folder_bytes_and_fix(
    client: XNATClient, session: str, tmp_path: Path
) -> None:
    [remote, *_] = _plan(client, session)
    target = tmp_path / "out" / remote.local
    partial: list[bool] = []

    def disk_full_after_first_chunk(count: int) -> None:
        partial.append(part_path(target).exists())  # the chunk went to the .part
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(TransferError) as caught:
        fetch_file(
            client,
            remote,
            target=target,
            item=remote.local.as_posix(),
            settings=_settings(),
            ledger=None,
            on_bytes=disk_full_after_first_chunk,
        )
    error = caught.value
    assert partial == [True]
    assert not part_path(target).exists() and not target.exists()
    assert error.status == "ENOSPC" and error.target == str(target)
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOSPC
    message = error.message
    for phrase in (str(target), str(target.parent), "no space left", f"{remote.size} bytes"):
        assert phrase in message, message
    assert "free at least" in message and "output_dir" in message


def test_a_full_disk_stops_the_run_and_leaves_nothing_partial(
    client: XNATClient, session: str, tmp_path: Path, xnat_emulator: XNATEmulator
) -> None:
    files = _plan(client, session)
    sizes = [f.size or 0 for f in files]
    out = tmp_path / "out"
    xnat_emulator.reset_metrics()
    with pytest.raises(TransferError) as caught:
        fetch_many(
            client,
            files,
            out=out,
            settings=_settings(),
            ledger=None,
            tracker=_DiskFillsUp(room=sizes[0] + sizes[1] + 10),  # the 3rd file does not fit
            workers=1,
            errors=[],
            started=0.0,
        )
    error = caught.value
    assert error.status == "ENOSPC" and files[2].name in error.message
    assert f"4 files are missing, {sum(sizes[2:])} bytes in all" in error.message
    assert _leftovers(out) == []
    assert len(list(out.rglob("*.dcm"))) == 2  # the two that fit are complete
    assert _file_gets(xnat_emulator) == 3  # nothing was started after the full disk


def test_a_rerun_after_a_full_disk_fetches_the_rest(
    client: XNATClient, session: str, tmp_path: Path
) -> None:
    files = _plan(client, session)
    out = tmp_path / "out"
    with pytest.raises(TransferError):
        fetch_many(
            client,
            files,
            out=out,
            settings=_settings(),
            ledger=None,
            tracker=_DiskFillsUp(room=(files[0].size or 0) + 10),
            workers=4,
            errors=[],
            started=0.0,
        )
    assert _leftovers(out) == []
    summary = DownloadService(client, ledger=False).download_session(
        session, out, resume=True, verify=True
    )
    assert summary.verified and summary.failed == 0 and summary.total_files == 6


# --- output_dir that is a file ------------------------------------------------------------------


def test_output_dir_that_is_a_file_is_refused_with_the_fix(
    client: XNATClient, session: str, tmp_path: Path
) -> None:
    service = DownloadService(client, ledger=False)
    a_file = tmp_path / "out"
    a_file.write_text("not a folder")
    with pytest.raises(InvalidInputError) as caught:
        service.download_session(session, a_file)
    assert str(a_file) in str(caught.value) and "pass a folder path" in str(caught.value)
    with pytest.raises(InvalidInputError) as through:
        service.download_resource(session, "DICOM", a_file / "below", scan_id="1")
    assert str(a_file) in str(through.value) and "is a file" in str(through.value)
    assert a_file.read_text() == "not a folder"


# --- a listing that names no file ---------------------------------------------------------------


def _empty_listing() -> str:
    return json.dumps({"ResultSet": {"Result": [], "title": "Files", "Columns": []}})


def test_an_empty_listing_of_scans_with_files_is_a_verification_error(
    client: XNATClient, session: str, tmp_path: Path, xnat_emulator: XNATEmulator
) -> None:
    xnat_emulator.add_fault(
        rf"^GET /data/experiments/{session}/scans/ALL/files$", "error_body", body=_empty_listing()
    )
    service = DownloadService(client, ledger=False)
    with pytest.raises(VerificationError) as caught:
        service.download_session(session, tmp_path / "out", verify=True)
    error = caught.value
    assert error.target == session and error.status == "EMPTY_LISTING"
    assert "scan(s) 1, 2" in error.message and "6 file(s)" in error.message
    assert "refresh" in error.message
    # without verify the listing is taken as it is (no extra requests)
    summary = service.download_session(session, tmp_path / "unchecked", verify=False)
    assert summary.total_files == 0 and summary.failed == 0


def test_a_scan_without_files_does_not_fail_a_verified_download(
    client: XNATClient, session: str, tmp_path: Path
) -> None:
    reply = client.put(
        f"/data/experiments/{session}/scans/99", params={"xsiType": "xnat:mrScanData"}
    )
    assert reply.status_code in (200, 201), reply.text
    summary = DownloadService(client, ledger=False).download_session(
        session, tmp_path / "out", verify=True
    )
    assert summary.verified and summary.total_files == 6 and summary.failed == 0
