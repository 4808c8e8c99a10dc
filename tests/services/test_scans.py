"""ScanService against the emulator (real sockets)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import BatchSummary, Resource, Scan
from xnat_prefect.services import ScanService
from xnat_prefect.services.scans import ScansWouldBeDeletedError
from xnat_prefect.testing.server import XNATEmulator

if TYPE_CHECKING:
    from tests.services.conftest import Seeder


def _scan_ids(client: XNATClient, session_id: str) -> list[str]:
    return [r["ID"] for r in client.get_result_set(f"/data/experiments/{session_id}/scans")]


def _scan_fields(client: XNATClient, session_id: str, scan_id: str) -> dict[str, str]:
    document = client.get_item(f"/data/experiments/{session_id}/scans/{scan_id}")
    return dict(document["items"][0]["data_fields"])


def test_list_by_id_and_label(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ScanService(client)
    scans = service.list(session_id)
    assert all(isinstance(s, Scan) for s in scans)
    assert [(s.scan_id, s.type, s.xsi_type) for s in scans] == [
        ("1", "T1w", "xnat:mrScanData"),
        ("2", "T1w", "xnat:mrScanData"),
    ]
    assert scans[0].uri == f"/data/experiments/{session_id}/scans/1"
    by_label = service.list("SUB1_MR1", project="P1")
    assert [s.scan_id for s in by_label] == ["1", "2"]


def test_list_columns_and_not_found(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ScanService(client)
    rows = service.list(session_id, columns=["type", "quality"])
    assert [r.scan_id for r in rows] == ["1", "2"]
    with pytest.raises(ResourceNotFoundError, match="pass project="):
        service.list("SUB1_MR1")
    with pytest.raises(ResourceNotFoundError):
        service.list("NOPE", project="P1")


def test_get(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ScanService(client)
    scan = service.get(session_id, "2")
    assert (scan.scan_id, scan.type, scan.xsi_type) == ("2", "T1w", "xnat:mrScanData")
    assert service.get("SUB1_MR1", "1", project="P1").scan_id == "1"
    with pytest.raises(ResourceNotFoundError, match="scan '9'"):
        service.get(session_id, "9")
    with pytest.raises(InvalidInputError, match="scan_id"):
        service.get(session_id, "1,2")
    with pytest.raises(InvalidInputError, match="scan_id"):
        service.get(session_id, "*")


def test_get_in_private_project_is_not_found_for_non_member(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str]
) -> None:
    session_id = mr_session()
    with pytest.raises(ResourceNotFoundError):
        ScanService(bob).get(session_id, "1")


def test_delete(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session(scans=("1", "2", "3"))
    service = ScanService(client)
    assert service.delete(session_id, "1") is True
    assert service.delete("SUB1_MR1", "2", project="P1", remove_files=True) is True
    assert _scan_ids(client, session_id) == ["3"]
    with pytest.raises(ResourceNotFoundError, match="scan '1'"):
        service.delete(session_id, "1")


def test_delete_by_member_is_forbidden(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str]
) -> None:
    session_id = mr_session()
    client.put("/data/projects/P1/users/member/bob")
    with pytest.raises(PermissionDeniedError):
        ScanService(bob).delete(session_id, "1")
    assert _scan_ids(client, session_id) == ["1", "2"]


@pytest.mark.parametrize("parallel", [True, False])
def test_delete_multiple(
    client: XNATClient, mr_session: Callable[..., str], parallel: bool
) -> None:
    session_id = mr_session(scans=("1", "2", "3", "4"))
    calls: list[tuple[int, int, str]] = []
    threads: set[str] = set()

    def progress(current: int, total: int, scan_id: str) -> None:
        calls.append((current, total, scan_id))
        threads.add(threading.current_thread().name)

    summary = ScanService(client).delete_multiple(
        session_id,
        ["1", "3", "9", "3"],
        parallel=parallel,
        workers=3,
        progress_callback=progress,
    )
    assert isinstance(summary, BatchSummary)
    assert summary["deleted"] == ["1", "3"]
    assert summary.total == 3
    assert list(summary.failed) == ["9"]
    assert len(summary.errors) == 1 and summary.errors[0].startswith("9:")
    assert not summary.success
    assert sorted(c[2] for c in calls) == ["1", "3", "9"]
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert threads == {threading.current_thread().name}
    assert _scan_ids(client, session_id) == ["2", "4"]


def test_delete_multiple_all_scans_logs_a_warning(
    client: XNATClient, mr_session: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    mr_session(scans=("1", "2", "3"))
    with caplog.at_level(logging.WARNING, logger="xnat_prefect.services.scans"):
        summary = ScanService(client).delete_multiple("SUB1_MR1", ["*"], project="P1", force=True)
    assert sorted(summary.succeeded) == ["1", "2", "3"]
    assert summary.success
    assert any("ALL 3 scan" in r.getMessage() for r in caplog.records)
    assert ScanService(client).list("SUB1_MR1", project="P1") == []


def test_delete_multiple_all_scans_without_force_is_refused_and_logged(
    client: XNATClient, mr_session: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    session_id = mr_session(scans=("1", "2", "3"))
    service = ScanService(client)
    with (
        caplog.at_level(logging.WARNING, logger="xnat_prefect.services.scans"),
        pytest.raises(ScansWouldBeDeletedError) as caught,
    ):
        service.delete_multiple("SUB1_MR1", ["*"], project="P1")
    error = caught.value
    assert isinstance(error, ConflictError) and isinstance(error, RuntimeError)
    assert error.status_code == 409 and sorted(error.scans) == ["1", "2", "3"]
    message = str(error)
    assert "'SUB1_MR1'" in message and session_id in message and "force=True" in message
    assert "1, 2, 3" in message
    assert any("Refused to delete ALL 3 scan" in r.getMessage() for r in caplog.records)
    assert _scan_ids(client, session_id) == ["1", "2", "3"]
    assert service.delete_multiple(session_id, ["2"]).success  # listed IDs need no force


def test_delete_multiple_runs_in_parallel(
    xnat_emulator: XNATEmulator, client: XNATClient, mr_session: Callable[..., str]
) -> None:
    session_id = mr_session(scans=tuple(str(i) for i in range(1, 9)))
    xnat_emulator.add_fault(r"DELETE /data/experiments/.*/scans/", "latency", latency_ms=(150, 150))
    xnat_emulator.reset_metrics()
    summary = ScanService(client).delete_multiple(session_id, ["*"], workers=4, force=True)
    assert len(summary.succeeded) == 8
    peaks = [n for key, n in xnat_emulator.metrics()["max_in_flight"].items() if "DELETE" in key]
    assert max(peaks) >= 2


def test_delete_multiple_bad_input(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ScanService(client)
    with pytest.raises(InvalidInputError, match="list"):
        service.delete_multiple(session_id, "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="alone"):
        service.delete_multiple(session_id, ["*", "1"])
    with pytest.raises(InvalidInputError, match="workers"):
        service.delete_multiple(session_id, ["1"], workers=0)
    with pytest.raises(InvalidInputError, match="scan_ids"):
        service.delete_multiple(session_id, ["1/2"])
    assert _scan_ids(client, session_id) == ["1", "2"]
    with pytest.raises(ResourceNotFoundError):
        service.delete_multiple("NOPE", ["1"], project="P1")
    assert service.delete_multiple(session_id, []).total == 0


def test_get_resources(client: XNATClient, mr_session: Callable[..., str], seed: Seeder) -> None:
    session_id = mr_session()
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", "1.dcm")
    seed.file(f"/data/experiments/{session_id}/scans/1", "NIFTI", "t1.nii")
    resources = ScanService(client).get_resources("SUB1_MR1", "1", project="P1")
    assert all(isinstance(r, Resource) for r in resources)
    assert sorted(r["label"] for r in resources) == ["DICOM", "NIFTI"]
    assert ScanService(client).get_resources(session_id, "2") == []


def test_set_quality_and_note(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ScanService(client)
    assert service.set_quality(session_id, "1", "Unusable") is True
    assert service.set_note("SUB1_MR1", "1", "motion", project="P1") is True
    fields = _scan_fields(client, session_id, "1")
    assert (fields["quality"], fields["note"]) == ("unusable", "motion")
    assert service.get(session_id, "1").quality == "unusable"
    assert _scan_fields(client, session_id, "2").get("quality", "") != "unusable"


def test_set_quality_and_note_errors(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str]
) -> None:
    session_id = mr_session()
    service = ScanService(client)
    with pytest.raises(InvalidInputError, match="usable, questionable, unusable"):
        service.set_quality(session_id, "1", "great")
    with pytest.raises(ResourceNotFoundError, match="scan '9'"):
        service.set_quality(session_id, "9", "usable")
    with pytest.raises(ResourceNotFoundError, match="scan '9'"):
        service.set_note(session_id, "9", "x")
    assert _scan_ids(client, session_id) == ["1", "2"]  # nothing created
    with pytest.raises(InvalidInputError, match="note"):
        service.set_note(session_id, "1", None)  # type: ignore[arg-type]
    client.put("/data/projects/P1/users/collaborator/bob")
    with pytest.raises(PermissionDeniedError):
        ScanService(bob).set_quality(session_id, "1", "usable")
