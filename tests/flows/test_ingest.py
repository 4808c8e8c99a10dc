"""``ingest_dicom`` end to end against the emulator: each transport, each typed failure."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.errors import ArchiveFailed, SessionNotSettled, VerificationError
from xnat_prefect.flows.ingest import ingest_dicom
from xnat_prefect.flows.results import IngestResult
from xnat_prefect.tasks.limits import limit_name, set_limit

IMPORT_KEY = "POST /data/services/import"
LABELS = {"project": "P1", "subject": "SUBJ01", "session": "SUBJ01_MR1"}
#: One batch unless a test is about batching: concurrent slot acquisitions on the harness's
#: SQLite database are slow (SQLITE_BUSY -> 503 -> client retry after ~2 s).
ONE = {"batches": 1}


def _archived_scan_files(lab: Any, result: IngestResult) -> dict[str, int]:
    assert result.experiment_id
    return {s.scan_id: len(lab.files(result.experiment_id, s.scan_id)) for s in result.scans}


# --- transports ---------------------------------------------------------------------------------


def test_gradual_archives_and_verifies_with_md5(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, manifest = lab.study()
    result = ingest_dicom(
        creds, str(folder), transport="gradual", verify_checksums=True, **ONE, **LABELS, **fast
    )
    assert result.verified and result.experiment_id
    assert result.archived_by == "auto-archive"
    assert result.files_sent == len(manifest.files) == 6
    assert result.bytes_sent == manifest.total_bytes
    assert all(s.ok and s.md5_checked and s.md5_mismatches == 0 for s in result.scans)
    assert _archived_scan_files(lab, result) == {"1": 3, "2": 3}
    assert [e["label"] for e in lab.experiments("P1")] == ["SUBJ01_MR1"]


def test_parallel_zip_from_a_zip_source_by_direct_archive(
    creds: XNATCredentials, lab: Any, fast: dict[str, float], tmp_path: Path
) -> None:
    lab.project("P1")
    folder, manifest = lab.study(series=3)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in manifest.files:
            zf.write(path, path.relative_to(folder).as_posix())
    result = ingest_dicom(
        creds,
        archive,
        transport="parallel-zip",
        batches=2,
        direct_archive=True,
        **LABELS,
        **fast,
    )
    assert result.verified and result.transport == "parallel-zip"
    assert result.archived_by == "direct-archive"
    assert len(result.batches) == 2
    assert sorted(sid for b in result.batches for sid in b.series) == ["1", "2", "3"]
    assert result.files_sent == 9
    assert _archived_scan_files(lab, result) == {"1": 3, "2": 3, "3": 3}


def test_cstore_routes_by_headers(creds: XNATCredentials, lab: Any, fast: dict[str, float]) -> None:
    lab.project("P1")
    folder, _ = lab.study(subject="SUBJ07", session="SUBJ07_MR1")
    node = DicomNode(
        host="127.0.0.1", port=lab.emulator.dicom_port, called_ae_title=lab.emulator.dicom_ae_title
    )
    result = ingest_dicom(creds, str(folder), transport="cstore", dicom_node=node, **ONE, **fast)
    assert result.verified and result.experiment_id
    assert (result.project, result.subject, result.session_label) == ("P1", "SUBJ07", "SUBJ07_MR1")
    assert result.files_sent == 6


def test_manual_project_is_archived_by_the_flow_or_left_ready(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1", code=0)
    folder, _ = lab.study()
    left = ingest_dicom(
        creds, str(folder), transport="gradual", archive=False, **ONE, **LABELS, **fast
    )
    assert left.archived_by == "none" and left.experiment_id is None and not left.verified
    assert [r["status"] for r in lab.prearchive("P1")] == ["READY"]
    archived = ingest_dicom(creds, str(folder), transport="gradual", **ONE, **LABELS, **fast)
    assert archived.archived_by == "flow" and archived.verified
    assert lab.prearchive("P1") == []
    assert [e["ID"] for e in lab.experiments("P1")] == [archived.experiment_id]


# --- typed failures -----------------------------------------------------------------------------


def test_reingest_with_overwrite_none_is_refused_then_append_merges(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study()
    first = ingest_dicom(creds, str(folder), transport="gradual", **ONE, **LABELS, **fast)
    lab.emulator.reset_metrics()
    with pytest.raises(ArchiveFailed) as caught:
        ingest_dicom(creds, str(folder), transport="parallel-zip", **LABELS, **fast)
    assert caught.value.status == "CONFLICT" and caught.value.target == first.experiment_id
    assert IMPORT_KEY not in lab.emulator.metrics()["requests"]
    merged = ingest_dicom(
        creds, str(folder), transport="gradual", overwrite="append", **ONE, **LABELS, **fast
    )
    assert merged.verified and merged.experiment_id == first.experiment_id
    assert lab.prearchive("P1") == []


def test_another_study_on_an_archived_label_is_a_prearchive_conflict(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    node = DicomNode(host="127.0.0.1", port=lab.emulator.dicom_port)
    first, _ = lab.study("first", seed=1)
    second, _ = lab.study("second", seed=2)  # same labels, another StudyInstanceUID
    ingest_dicom(creds, str(first), transport="cstore", dicom_node=node, **ONE, **fast)
    with pytest.raises(ArchiveFailed) as caught:
        ingest_dicom(creds, str(second), transport="cstore", dicom_node=node, **ONE, **fast)
    assert caught.value.status == "CONFLICT" and "overwrite" in caught.value.message
    assert [r["status"] for r in lab.prearchive("P1")] == ["CONFLICT"]


def test_error_status_is_archive_failed(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    lab.emulator.set_timing(rebuild_quiet_seconds=3600)
    folder, _ = lab.study()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            ingest_dicom(creds, str(folder), transport="gradual", **ONE, **LABELS, **fast)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        accepted = lab.emulator.metrics
        lab.wait_for(lambda: accepted()["statuses"].get(IMPORT_KEY, {}).get("200") == 6, 20)
        row = lab.prearchive("P1")[0]
        reply = lab.rest.post(
            f"/data{row['url']}", params={"action": "set-status", "status": "ERROR"}
        )
        assert reply.status_code == 200, reply.text
    finally:
        worker.join(30)
    error = outcome.get("error")
    assert isinstance(error, ArchiveFailed), error
    assert error.status == "ERROR" and "logs" in error.message


def test_stalled_receiving_is_session_not_settled(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    lab.emulator.set_timing(rebuild_quiet_seconds=3600)
    folder, _ = lab.study()
    with pytest.raises(SessionNotSettled) as caught:
        ingest_dicom(
            creds,
            str(folder),
            transport="gradual",
            **ONE,
            **LABELS,
            **{**fast, "stall_seconds": 1.0},
        )
    assert caught.value.status == "RECEIVING"
    assert "no progress" in caught.value.message


def test_verification_catches_a_file_missing_from_the_archive(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    folder = lab.study_with_a_repeated_instance()
    with pytest.raises(VerificationError) as caught:
        ingest_dicom(creds, str(folder), transport="parallel-zip", **ONE, **LABELS, **fast)
    assert "scan 1: 3 of 4 file(s)" in caught.value.message


# --- concurrency --------------------------------------------------------------------------------


def test_uploads_limit_bounds_requests_in_flight(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study(series=5, instances_per_series=2)
    set_limit(limit_name(creds.server_key, "uploads"), 2)
    lab.emulator.add_fault(r"^POST /data/services/import", "latency", latency_ms=(100, 100))
    result = ingest_dicom(
        creds,
        str(folder),
        transport="parallel-zip",
        batches=5,
        max_workers=5,
        **LABELS,
        **fast,
    )
    assert len(result.batches) >= 4 and result.verified
    metrics = lab.emulator.metrics()
    assert metrics["requests"][IMPORT_KEY] >= len(result.batches)  # a retried batch counts twice
    assert 1 <= metrics["max_in_flight"][IMPORT_KEY] <= 2
