"""C-STORE uploads to the emulator's DICOM receiver, and resource uploads."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, ResourceNotFoundError, XNATError
from xnat_prefect.services.uploads import DicomStoreError, DICOMStoreSummary, UploadService
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study, write_non_dicom

# --- C-STORE -------------------------------------------------------------------------------------


def test_cstore_sends_to_the_receiver_and_the_session_is_archived(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=3, instances_per_series=4)
    write_non_dicom(tmp_path / "src" / "notes.txt")
    summary = uploads.upload_dicom_store(
        tmp_path / "src",
        "127.0.0.1",
        xnat_emulator.dicom_ae_title,
        port=xnat_emulator.dicom_port,
        workers=3,
    )
    assert isinstance(summary, DICOMStoreSummary)
    assert (summary.total_files, summary.sent, summary.failed) == (12, 12, 0)
    assert summary.success and not summary.workspace.exists()  # cleaned up
    assert xnat_emulator.wait_idle(15)
    [experiment] = rest.experiments("P1")
    assert experiment["label"] == "SESS001"
    assert len(rest.session_files(experiment["ID"])) == len(study.files)
    assert rest.scans(experiment["ID"]) == ["1", "2", "3"]
    again = uploads.upload_dicom_store(
        tmp_path / "src", "127.0.0.1", "XNAT", port=xnat_emulator.dicom_port
    )
    assert (again.total_files, again.sent, again.failed) == (12, 0, 0)  # ledger: nothing resent


def test_cstore_to_the_prearchive_and_logs_kept_without_cleanup(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("MAN", code=0)
    generate_study(tmp_path / "src", project="MAN", series=2, instances_per_series=3)
    summary = uploads.upload_dicom_store(
        tmp_path / "src", "127.0.0.1", "XNAT", port=xnat_emulator.dicom_port, cleanup=False
    )
    assert summary.sent == 6 and summary.workspace.is_dir()
    assert summary.log_dir.parent == summary.workspace
    lines = [line for log in summary.log_dir.glob("*.log") for line in log.read_text().splitlines()]
    assert len(lines) == 6 and all("\tok\t" in line for line in lines)
    assert xnat_emulator.wait_idle(15)
    [row] = rest.prearchive("MAN")
    assert row["status"] == "READY"


def test_cstore_wrong_ae_title_is_a_typed_error_and_nothing_is_sent(
    xnat_emulator: XNATEmulator, uploads: UploadService, tmp_path: Path
) -> None:
    generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=2)
    with pytest.raises(DicomStoreError) as info:
        uploads.upload_dicom_store(
            tmp_path / "src", "127.0.0.1", "NOT_XNAT", port=xnat_emulator.dicom_port
        )
    err = info.value
    assert isinstance(err, RuntimeError) and isinstance(err, XNATError)
    assert "C-ECHO failed" in str(err) and "'NOT_XNAT'" in str(err) and "AE title" in str(err)
    assert err.transient is False


def test_cstore_bad_inputs(
    xnat_emulator: XNATEmulator, uploads: UploadService, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError):
        uploads.upload_dicom_store(tmp_path / "nope", "127.0.0.1", "XNAT", port=1)
    (tmp_path / "empty").mkdir()
    write_non_dicom(tmp_path / "empty" / "notes.txt")
    with pytest.raises(DicomStoreError, match="no DICOM files"):
        uploads.upload_dicom_store(
            tmp_path / "empty", "127.0.0.1", "XNAT", port=xnat_emulator.dicom_port
        )


# --- resources -----------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n" * 100, "sub/b.bin": os.urandom(5000), "sub/deep/c.csv": b"1,2\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / ".hidden").write_text("skip me")
    return files


def _listing(client: XNATClient, session_id: str, label: str) -> dict[str, dict[str, str]]:
    rows = client.get_result_set(f"/data/experiments/{session_id}/resources/{label}/files")
    return {r["URI"].split("/files/", 1)[1]: r for r in rows}


@pytest.fixture
def session_id(rest: Any, client: XNATClient) -> str:
    rest.project("P1")
    client.put("/data/projects/P1/subjects/S1")
    reply = client.put(
        "/data/projects/P1/subjects/S1/experiments/E1", params={"xsiType": "xnat:mrSessionData"}
    )
    return reply.text.strip()


def test_resource_directory_upload_is_verified_and_skipped_on_rerun(
    xnat_emulator: XNATEmulator,
    client: XNATClient,
    uploads: UploadService,
    session_id: str,
    tmp_path: Path,
) -> None:
    files = _tree(tmp_path / "qc")
    summary = uploads.upload_resource(session_id, "QC", tmp_path / "qc")
    assert summary.success and (summary.uploaded, summary.skipped) == (3, 0)
    assert summary.bytes_sent == sum(len(v) for v in files.values())
    listing = _listing(client, session_id, "QC")
    assert set(listing) == set(files)  # sub-folders kept, hidden file skipped
    assert all(listing[rel]["Size"] == str(len(data)) for rel, data in files.items())
    xnat_emulator.reset_metrics()
    again = uploads.upload_resource("E1", "QC", tmp_path / "qc", project="P1")
    assert (again.uploaded, again.skipped) == (0, 3)
    assert sum(v for k, v in xnat_emulator.metrics()["bytes_in"].items() if "/files" in k) == 0


def test_resource_conflicting_file_needs_overwrite(
    client: XNATClient, uploads: UploadService, session_id: str, tmp_path: Path
) -> None:
    _tree(tmp_path / "qc")
    assert uploads.upload_resource(session_id, "QC", tmp_path / "qc").success
    (tmp_path / "qc" / "a.txt").write_text("changed\n")
    refused = uploads.upload_resource(session_id, "QC", tmp_path / "qc")
    [(path, reason)] = refused.errors
    assert path.endswith("a.txt") and "overwrite=True" in reason and refused.skipped == 2
    replaced = uploads.upload_resource(session_id, "QC", tmp_path / "qc", overwrite=True)
    assert replaced.success and replaced.uploaded == 1
    assert _listing(client, session_id, "QC")["a.txt"]["Size"] == str(len("changed\n"))


def test_resource_extract_archive_and_directory(
    xnat_emulator: XNATEmulator,
    client: XNATClient,
    uploads: UploadService,
    session_id: str,
    tmp_path: Path,
) -> None:
    files = _tree(tmp_path / "qc")
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, data in files.items():
            zf.writestr(f"inner/{rel}", data)
    summary = uploads.upload_resource(session_id, "ZIPPED", archive, extract=True)
    assert summary.success and summary.uploaded == 1
    assert set(_listing(client, session_id, "ZIPPED")) == {f"inner/{r}" for r in files}
    xnat_emulator.reset_metrics()
    summary = uploads.upload_resource(session_id, "DIR", tmp_path / "qc", extract=True)
    assert summary.success and summary.uploaded == 3
    puts = sum(v for k, v in xnat_emulator.metrics()["requests"].items() if k.startswith("PUT"))
    assert puts == 1  # one zip, unpacked by XNAT
    assert set(_listing(client, session_id, "DIR")) == set(files)
    with pytest.raises(InvalidInputError, match="extract=True needs an archive"):
        uploads.upload_resource(session_id, "X", tmp_path / "qc" / "a.txt", extract=True)


def test_resource_upload_to_a_scan_and_bad_targets(
    client: XNATClient, uploads: UploadService, session_id: str, tmp_path: Path
) -> None:
    client.put(f"/data/experiments/{session_id}/scans/1", params={"xsiType": "xnat:mrScanData"})
    (tmp_path / "n.nii").write_bytes(b"nifti" * 10)
    summary = uploads.upload_resource(session_id, "NIFTI", tmp_path / "n.nii", scan_id="1")
    assert summary.success and summary.session_uris == [
        f"/data/experiments/{session_id}/scans/1/resources/NIFTI/files"
    ]
    with pytest.raises(InvalidInputError):
        uploads.upload_resource(session_id, "NIFTI", tmp_path / "missing")
    with pytest.raises(ResourceNotFoundError):
        uploads.upload_resource("NOPE", "NIFTI", tmp_path / "n.nii", project="P1")
