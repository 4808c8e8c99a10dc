"""A file that changes while it is uploaded is an error and is never recorded as confirmed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from xnat_prefect.client import XNATClient
from xnat_prefect.models.transfer import UploadProgress
from xnat_prefect.services.ledger import TransferLedger
from xnat_prefect.services.uploads import UploadService
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

IMPORT = "POST /data/services/import"


def _touch(path: Path) -> None:
    """What a writer does: new bytes, a new modification time."""
    with path.open("r+b") as handle:
        handle.seek(16)
        handle.write(os.urandom(64))
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def _session(rest: Any, client: XNATClient) -> str:
    rest.project("P1")
    client.put("/data/projects/P1/subjects/S1")
    reply = client.put(
        "/data/projects/P1/subjects/S1/experiments/E1", params={"xsiType": "xnat:mrSessionData"}
    )
    return reply.text.strip()


def test_resource_file_changed_during_the_upload_is_an_error_not_confirmed(
    rest: Any, client: XNATClient, ledger: TransferLedger, tmp_path: Path
) -> None:
    session_id = _session(rest, client)
    source = tmp_path / "qc"
    source.mkdir()
    (source / "steady.txt").write_bytes(b"steady\n" * 100)
    changing = source / "changing.bin"
    changing.write_bytes(os.urandom(64 * 1024))
    touched: list[str] = []

    def rewrite_once(report: UploadProgress) -> None:
        # between the PUT and the check of what XNAT stored: the writer was not finished
        if report.phase == "verifying" and not touched:
            _touch(changing)
            touched.append(report.phase)

    service = UploadService(client, ledger=ledger, backoff_base=0.01)
    summary = service.upload_resource(session_id, "QC", source, progress_callback=rewrite_once)
    assert touched
    [(path, reason)] = summary.errors
    assert path == str(changing)
    assert "changing.bin changed while it was being uploaded" in reason
    assert "overwrite=True" in reason and "once nothing writes to it" in reason
    assert (summary.uploaded, summary.failed) == (1, 1)
    scope = f"resource|{client.base_url}|/data/experiments/{session_id}/resources/QC/files"
    assert sorted(ledger.entries(scope, state="confirmed")) == ["steady.txt"]
    # the fix the message gives: upload it again with overwrite=True once nothing writes
    again = service.upload_resource(session_id, "QC", source, overwrite=True)
    assert again.success and (again.uploaded, again.skipped) == (1, 1)
    entries = ledger.entries(scope, state="confirmed")
    assert sorted(entries) == ["changing.bin", "steady.txt"]
    assert entries["changing.bin"].matches_file(changing)
    assert entries["changing.bin"].server_md5 == rest.md5(changing)


def test_dicom_file_changed_while_it_is_sent_is_an_error_and_resent_on_the_rerun(
    xnat_emulator: XNATEmulator,
    rest: Any,
    client: XNATClient,
    ledger: TransferLedger,
    tmp_path: Path,
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=4)
    xnat_emulator.add_fault(IMPORT, "latency", latency_ms=(800, 800))
    xnat_emulator.reset_metrics()
    touched: list[int] = []

    def rewrite_all_during_the_second_request() -> None:
        # the second file's request is at the server (it waits 0.8 s for its answer): that
        # file was stamped and read; the files after it are stamped later, after this
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if xnat_emulator.metrics()["requests"].get(IMPORT, 0) >= 2:
                for path in study.files:
                    info = path.stat()
                    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
                touched.append(1)
                return
            time.sleep(0.01)

    writer = threading.Thread(target=rewrite_all_during_the_second_request)
    writer.start()
    try:
        service = UploadService(client, ledger=ledger, backoff_base=0.01)
        summary = service.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1", workers=1)
    finally:
        writer.join(30)
    assert touched
    [(path, reason)] = summary.errors
    assert Path(path) in study.files
    assert "changed while it was being uploaded" in reason and "send it again" in reason
    assert (summary.uploaded, summary.failed) == (3, 1)
    xnat_emulator.clear_faults()
    assert xnat_emulator.wait_idle(15)
    xnat_emulator.reset_metrics()
    again = service.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1")
    # sent again: the changed one and the first one (confirmed, then touched); the last two
    # were stamped after the touch and are skipped
    assert again.success and (again.uploaded, again.skipped) == (2, 2)
    assert xnat_emulator.metrics()["bytes_in"][IMPORT] == 2 * Path(path).stat().st_size
