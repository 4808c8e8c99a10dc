"""Retries (transient vs permanent), the final lower-concurrency pass, and the upload ledger."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import BadRequestError, PermissionDeniedError, ServerError
from xnat_prefect.services.ledger import TransferLedger
from xnat_prefect.services.uploads import (
    UploadService,
    archive_destination_params,
    collect_dicom_files,
    is_retryable_status,
    split_into_batches,
    split_into_n_batches,
    upload_with_retry,
)
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study, write_non_dicom

IMPORT = "POST /data/services/import"
ROUTE = r"POST /data/services/import"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, ""),
        (400, "Concurrent file sends of the same data is not supported."),
        (400, ""),
        (409, "session document locked"),
        (429, ""),
    ],
)
def test_transient_failures_are_retried(
    xnat_emulator: XNATEmulator,
    rest: Any,
    uploads: UploadService,
    tmp_path: Path,
    status: int,
    body: str,
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=6)
    kind = "rate_limit" if status == 429 else "status"
    xnat_emulator.add_fault(ROUTE, kind, status=status, body=body, times=3, retry_after=0.01)
    summary = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1", workers=2)
    assert summary.success and summary.uploaded == 6
    metrics = xnat_emulator.metrics()
    assert metrics["statuses"][IMPORT] == {str(status): 3, "200": 6}
    assert metrics["bytes_in"][IMPORT] >= study.total_bytes


def test_permanent_403_is_not_retried_and_stops_the_run(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=5)
    xnat_emulator.add_fault(ROUTE, "status", status=403, body="No permission to upload.")
    summary = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1", workers=1)
    assert not summary.success and summary.failed == 5 and summary.uploaded == 0
    assert xnat_emulator.metrics()["requests"][IMPORT] == 1
    reasons = dict(summary.errors)
    assert set(reasons) == {str(p) for p in study.files}
    first = str(study.files[0])
    assert reasons[first] == "HTTP 403: No permission to upload."
    assert all(
        r == "not sent: HTTP 403: No permission to upload."
        for p, r in reasons.items()
        if p != first
    )


def test_stragglers_get_a_final_lower_concurrency_pass(
    xnat_emulator: XNATEmulator,
    rest: Any,
    client: XNATClient,
    ledger: TransferLedger,
    tmp_path: Path,
) -> None:
    """With no per-request retries, failures of pass 1 succeed in pass 2 (fewer workers)."""
    rest.project("P1")
    generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=8)
    service = UploadService(client, ledger=ledger, max_retries=0, backoff_base=0.01)
    xnat_emulator.add_fault(ROUTE, "status", status=502, times=3)
    seen: list[Any] = []
    summary = service.upload_dicom_gradual(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", workers=4, progress_callback=seen.append
    )
    assert summary.success and summary.uploaded == 8
    assert xnat_emulator.metrics()["requests"][IMPORT] == 11
    assert any(p.phase == "retrying" for p in seen)


def test_exhausted_retries_name_each_failed_file(
    xnat_emulator: XNATEmulator, rest: Any, client: XNATClient, tmp_path: Path
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=3)
    service = UploadService(client, ledger=False, max_retries=1, backoff_base=0.001)
    xnat_emulator.add_fault(ROUTE, "status", status=503, body="Service Unavailable")
    summary = service.upload_dicom_parallel(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", upload_workers=2, archive_format="tar"
    )
    assert summary.failed == 3 and not summary.success
    assert {p for p, _ in summary.errors} == {str(p) for p in study.files}
    assert all(r == "HTTP 503: Service Unavailable" for _, r in summary.errors)
    # 2 batches x (1 + 1 retry) x 3 passes ([2, 1] workers then one more sequential)
    assert xnat_emulator.metrics()["requests"][IMPORT] == 2 * 2 * 2


def test_second_identical_ingest_uploads_nothing(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    generate_study(tmp_path / "src", project="P1", series=2, instances_per_series=4)
    assert uploads.upload_dicom_parallel(tmp_path / "src", "P1", "SUBJ1", "SESS1").uploaded == 8
    assert xnat_emulator.wait_idle(15)
    for method in ("parallel", "gradual"):  # both transports share the destination's records
        xnat_emulator.reset_metrics()
        if method == "parallel":
            again = uploads.upload_dicom_parallel(tmp_path / "src", "P1", "SUBJ1", "SESS1")
        else:
            again = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1")
        assert (again.uploaded, again.skipped, again.failed) == (0, 8, 0)
        assert xnat_emulator.metrics()["bytes_in"].get(IMPORT, 0) == 0


def test_ledger_resends_a_changed_file_only(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=4)
    assert uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1").success
    changed = study.files[2]
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    xnat_emulator.reset_metrics()
    again = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1")
    assert (again.uploaded, again.skipped) == (1, 3)
    assert xnat_emulator.metrics()["bytes_in"][IMPORT] == changed.stat().st_size


def test_ledger_resends_everything_when_the_session_is_gone(
    xnat_emulator: XNATEmulator,
    rest: Any,
    client: XNATClient,
    uploads: UploadService,
    tmp_path: Path,
) -> None:
    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=3)
    assert uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1").success
    assert xnat_emulator.wait_idle(15)
    [experiment] = rest.experiments("P1")
    client.delete(f"/data/projects/P1/subjects/SUBJ1/experiments/{experiment['ID']}",
                  params={"removeFiles": "true"})  # fmt: skip
    xnat_emulator.reset_metrics()
    again = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "SUBJ1", "SESS1")
    assert again.uploaded == 3
    assert xnat_emulator.metrics()["bytes_in"][IMPORT] == study.total_bytes


def test_default_ledger_is_used_by_a_plain_service(
    xnat_emulator: XNATEmulator, rest: Any, client: XNATClient, tmp_path: Path
) -> None:
    rest.project("P1")
    generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=2)
    service = UploadService(client, backoff_base=0.01)
    assert service.ledger is not None
    assert service.ledger.path == tmp_path / "default-ledger" / "transfers.sqlite"
    service.upload_dicom_gradual(tmp_path / "src", "P1", "S1", "E1")
    assert (
        UploadService(client).upload_dicom_gradual(tmp_path / "src", "P1", "S1", "E1").skipped == 2
    )
    assert UploadService(client, ledger=False).ledger is None


# --- the seed's utility functions ---------------------------------------------------------------


def test_is_retryable_status_follows_the_seed() -> None:
    assert [is_retryable_status(s) for s in (400, 429, 500, 502, 503, 504)] == [True] * 6
    assert [is_retryable_status(s) for s in (200, 201, 401, 403, 404, 409)] == [False] * 6


def test_upload_with_retry_with_raw_httpx_responses(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault(r"GET /xapi/siteConfig/buildInfo", "status", status=503, times=2)
    url = f"{xnat_emulator.url}/xapi/siteConfig/buildInfo"
    calls: list[int] = []

    def fetch() -> httpx.Response:
        response = httpx.get(url)
        calls.append(response.status_code)
        return response

    assert upload_with_retry(fetch, backoff_base=0.001, label="probe").status_code == 200
    assert calls == [503, 503, 200]
    xnat_emulator.add_fault(r"GET /xapi/siteConfig/buildInfo", "status", status=403)
    calls.clear()
    assert upload_with_retry(fetch, backoff_base=0.001).status_code == 403
    assert calls == [403]


def test_upload_with_retry_raises_the_last_error(
    client: XNATClient, xnat_emulator: XNATEmulator
) -> None:
    xnat_emulator.add_fault(r"GET /xapi/siteConfig/buildInfo", "status", status=500)
    with pytest.raises(ServerError):
        upload_with_retry(
            lambda: client.get("/xapi/siteConfig/buildInfo", retry=False),
            max_retries=2, backoff_base=0.001,
        )  # fmt: skip
    assert xnat_emulator.metrics()["requests"]["GET /xapi/siteConfig/buildInfo"] == 3
    xnat_emulator.clear_faults()
    xnat_emulator.add_fault(r"GET /xapi/siteConfig/buildInfo", "status", status=403)
    with pytest.raises(PermissionDeniedError):
        upload_with_retry(lambda: client.get("/xapi/siteConfig/buildInfo", retry=False))
    xnat_emulator.clear_faults()
    xnat_emulator.add_fault(
        r"GET /xapi/siteConfig/buildInfo", "status", status=400, body="Unable to parse upload"
    )
    with pytest.raises(BadRequestError):  # a permanent 400: no retry, no backoff wait
        upload_with_retry(lambda: client.get("/xapi/siteConfig/buildInfo", retry=False))


def test_archive_destination_params_and_batching(tmp_path: Path) -> None:
    assert archive_destination_params("P1", True) == {"Direct-Archive": "true"}
    assert archive_destination_params("P1", False) == {"dest": "/prearchive/projects/P1"}
    files = [tmp_path / f"{n}.dcm" for n in range(7)]
    assert [len(b) for b in split_into_batches(files, 3)] == [3, 3, 1]
    assert [len(b) for b in split_into_n_batches(files, 3)] == [3, 2, 2]
    study = generate_study(tmp_path / "s", series=1, instances_per_series=2, extensionless=True)
    write_non_dicom(tmp_path / "s" / "notes.txt")
    assert collect_dicom_files(tmp_path / "s") == sorted(study.files)
    assert collect_dicom_files(tmp_path / "s", include_extensionless=False) == []
    with pytest.raises(ValueError):
        collect_dicom_files(tmp_path / "missing")


@pytest.mark.parametrize("method", ["gradual", "tar"])
def test_an_expired_session_mid_upload_is_renewed_and_the_body_resent(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path, method: str
) -> None:
    """Streamed bodies (open file, generated tar) are rewindable: re-login, then resend."""
    rest.project("P1")
    generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=4)
    xnat_emulator.add_fault(ROUTE, "expire_session", times=1)
    if method == "gradual":
        summary = uploads.upload_dicom_gradual(tmp_path / "src", "P1", "S1", "E1", workers=1)
    else:
        summary = uploads.upload_dicom_parallel(
            tmp_path / "src", "P1", "S1", "E1", upload_workers=1
        )
    assert summary.success and summary.uploaded == 4
    metrics = xnat_emulator.metrics()
    assert metrics["faults"] == {"expire_session": 1}
    assert metrics["statuses"][IMPORT].get("401") == 1


def test_a_broken_progress_callback_does_not_break_the_upload(
    rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=3)

    def broken(progress: Any) -> None:
        raise RuntimeError("callback bug")

    summary = uploads.upload_dicom_gradual(
        tmp_path / "src", "P1", "S1", "E1", progress_callback=broken
    )
    assert summary.success and summary.uploaded == 3


def test_a_zip_source_is_not_resent_by_upload_dicom(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    import zipfile

    rest.project("P1")
    study = generate_study(tmp_path / "src", project="P1", series=1, instances_per_series=3)
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in study.files:
            zf.write(path, path.name)
    assert uploads.upload_dicom("P1", "S1", "E1", archive).uploaded == 3
    xnat_emulator.reset_metrics()
    again = uploads.upload_dicom("P1", "S1", "E1", archive)
    assert (again.total_files, again.uploaded, again.skipped) == (3, 0, 3)
    assert xnat_emulator.metrics()["bytes_in"].get(IMPORT, 0) == 0
