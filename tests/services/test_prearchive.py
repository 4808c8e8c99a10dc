"""PrearchiveService against the emulator (real sockets, real DICOM uploads)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._shared import small_study
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ArchiveFailed,
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import PrearchiveScan, PrearchiveSession, PrearchiveStatus
from xnat_prefect.services._prearchive_archive import archive_uri, prearchive_src
from xnat_prefect.services.prearchive import ArchiveResult, PrearchiveService
from xnat_prefect.testing.server import XNATEmulator

if TYPE_CHECKING:
    from tests.services.conftest import Seeder

ARCHIVE_ROUTE = r"^POST /data/services/archive$"


def _project(client: XNATClient, project: str, code: int = 0) -> None:
    client.put(f"/data/projects/{project}")
    client.put(f"/data/projects/{project}/prearchive_code/{code}")


def _upload(
    emulator: XNATEmulator,
    client: XNATClient,
    tmp_path: Path,
    project: str | None,
    *,
    session: str = "SESS001",
    subject: str = "SUBJ001",
    seed: int = 0,
    status: PrearchiveStatus = PrearchiveStatus.READY,
    **params: str,
) -> PrearchiveSession:
    """Send a 2-series study file by file (gradual-DICOM) and return its prearchive session."""
    root = tmp_path / f"{session}-{seed}-{project}"
    study = small_study(root, project=project, subject=subject, session=session, seed=seed)
    for path in study.files:
        reply = client.post(
            "/data/services/import",
            params={"import-handler": "gradual-DICOM", **params},
            content=path.read_bytes(),
            headers={"Content-Type": "application/dicom"},
        )
        assert reply.status_code == 200, reply.text
    assert emulator.wait_idle(15)
    rows = client.get_result_set(f"/data/prearchive/projects/{project or 'Unassigned'}")
    matches = [r for r in rows if r["name"] == session and r["tag"] == study.study_uid]
    assert len(matches) == 1, rows
    found = PrearchiveSession.model_validate(matches[0])
    assert found.status == status
    return found


Upload = Callable[..., PrearchiveSession]


@pytest.fixture
def p1(client: XNATClient) -> str:
    """Project P1 with prearchive code 0 (sessions stay in the prearchive)."""
    _project(client, "P1")
    return "P1"


@pytest.fixture
def upload(xnat_emulator: XNATEmulator, client: XNATClient, tmp_path: Path) -> Upload:
    """``_upload`` bound to this test's emulator, admin client and folder."""
    return partial(_upload, xnat_emulator, client, tmp_path)


def _experiments(client: XNATClient, project: str) -> dict[str, str]:
    rows = client.get_result_set(f"/data/projects/{project}/experiments")
    return {r["label"]: r["ID"] for r in rows}


def _key(session: PrearchiveSession) -> tuple[str, str, str]:
    assert session.project and session.timestamp and session.folder_name
    return session.project, session.timestamp, session.folder_name


def test_list_get_and_scans(client: XNATClient, p1: str, upload: Upload) -> None:
    uploaded = upload(p1)
    service = PrearchiveService(client)
    listed = service.list("P1")
    assert len(listed) == 1 and isinstance(listed[0], PrearchiveSession)
    session = listed[0]
    assert session.status is PrearchiveStatus.READY and session.is_ready
    assert (session.project, session.name, session.subject) == ("P1", "SESS001", "SUBJ001")
    assert session.url == f"/prearchive/projects/P1/{session.timestamp}/{session.folder_name}"
    assert session.src == session.url and session.uri == "/data" + session.url
    assert session.upload_date is not None
    assert session["folderName"] == session.folder_name  # reads like the seed's dict
    assert [s.tag for s in service.list()] == [uploaded.tag]
    got = service.get(*_key(session))
    assert got.tag == uploaded.tag and got.status is PrearchiveStatus.READY
    scans = service.get_scans(*_key(session))
    assert all(isinstance(s, PrearchiveScan) for s in scans)
    assert [s.scan_id for s in scans] == ["1", "2"]
    assert all(s.series_description for s in scans)


def test_reads_of_missing_things(
    client: XNATClient, bob: XNATClient, xnat_emulator: XNATEmulator
) -> None:
    _project(client, "P1")
    service = PrearchiveService(client)
    assert service.list("P1") == []
    with pytest.raises(ResourceNotFoundError, match="'NOPE'"):
        service.list("NOPE")
    with pytest.raises(ResourceNotFoundError, match="archived, moved or deleted"):
        service.get("P1", "20240101_000000000", "GONE")
    with pytest.raises(ResourceNotFoundError):
        service.get_scans("P1", "20240101_000000000", "GONE")
    with pytest.raises(PermissionDeniedError):
        PrearchiveService(bob).list("P1")
    with pytest.raises(InvalidInputError, match="timestamp"):
        service.get("P1", "a/b", "X")


def test_archive_a_ready_session(client: XNATClient, p1: str, upload: Upload) -> None:
    session = upload(p1)
    result = PrearchiveService(client).archive(*_key(session))
    assert isinstance(result, ArchiveResult)
    assert result.uri == "/data/archive/projects/P1/subjects/SUBJ001/experiments/SESS001"
    ids = _experiments(client, "P1")
    assert result.experiment_id == ids["SESS001"] and result.experiment_id.startswith("XNAT_E")
    assert (result.project, result.subject, result.experiment_label) == ("P1", "SUBJ001", "SESS001")
    assert result.subject_id and result.subject_id.startswith("XNAT_S")
    assert result.src == session.src and result.overwrite == "none" and not result.reconciled
    assert result["session"] == "SESS001" and result["ID"] == result.experiment_id
    with pytest.raises(ResourceNotFoundError):
        PrearchiveService(client).get(*_key(session))
    scans = client.get_result_set(f"/data/experiments/{result.experiment_id}/scans")
    assert sorted(r["ID"] for r in scans) == ["1", "2"]


def test_archive_with_new_labels(client: XNATClient, p1: str, upload: Upload) -> None:
    session = upload(p1)
    result = PrearchiveService(client).archive(
        *_key(session), subject="SUBX", experiment_label="SUBX_MR1"
    )
    assert result.uri == "/data/archive/projects/P1/subjects/SUBX/experiments/SUBX_MR1"
    assert list(_experiments(client, "P1")) == ["SUBX_MR1"]


def test_conflict_on_re_archive_then_append(client: XNATClient, p1: str, upload: Upload) -> None:
    service = PrearchiveService(client)
    first = upload(p1)
    service.archive(*_key(first))
    again = upload(p1, seed=0)
    with pytest.raises(ArchiveFailed) as caught:
        service.archive(*_key(again))
    error = caught.value
    assert error.target == again.src and error.status == "CONFLICT"
    assert isinstance(error.__cause__, ConflictError)
    for part in ("'SESS001'", "project P1", again.timestamp or "", "overwrite=none"):
        assert part in str(error)
    assert "retry with overwrite" in str(error)
    assert service.get(*_key(again)).status is PrearchiveStatus.CONFLICT
    merged = service.archive(*_key(again), overwrite=True)
    assert merged.overwrite == "append"
    assert list(_experiments(client, "P1")) == ["SESS001"]
    third = upload(p1, seed=0)
    replaced = service.archive(*_key(third), overwrite="delete")
    assert replaced.overwrite == "delete" and replaced.experiment_id == merged.experiment_id


def test_archive_input_checks(
    xnat_emulator: XNATEmulator, client: XNATClient, tmp_path: Path
) -> None:
    _project(client, "P1")
    service = PrearchiveService(client)
    with pytest.raises(InvalidInputError, match="overwrite"):
        service.archive("P1", "TS", "F", overwrite="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="experiment_label"):
        service.archive("P1", "TS", "F", experiment_label="bad label!")
    with pytest.raises(ResourceNotFoundError):
        service.archive("P1", "20240101_000000000", "GONE")


def test_lost_archive_reply_is_read_from_server_state(
    xnat_emulator: XNATEmulator, client: XNATClient, p1: str, upload: Upload
) -> None:
    session = upload(p1)
    rule = xnat_emulator.add_fault(ARCHIVE_ROUTE, "truncate", times=1)
    result = PrearchiveService(client).archive(*_key(session), experiment_label="LOST_1")
    assert rule.fired == 1
    assert result.reconciled
    assert result.uri == "/data/archive/projects/P1/subjects/SUBJ001/experiments/LOST_1"
    assert result.experiment_id == _experiments(client, "P1")["LOST_1"]


def test_dropped_archive_request_is_sent_once_more(
    xnat_emulator: XNATEmulator, client: XNATClient, p1: str, upload: Upload
) -> None:
    session = upload(p1)
    rule = xnat_emulator.add_fault(ARCHIVE_ROUTE, "drop", times=1)
    result = PrearchiveService(client).archive(*_key(session))
    assert rule.fired == 1 and not result.reconciled
    assert list(_experiments(client, "P1")) == ["SESS001"]


def test_server_error_and_error_body_fail_the_archive(
    xnat_emulator: XNATEmulator, client: XNATClient, p1: str, upload: Upload
) -> None:
    session = upload(p1)
    service = PrearchiveService(client)
    xnat_emulator.add_fault(ARCHIVE_ROUTE, "status", status=500, body="Boom", times=1)
    with pytest.raises(ArchiveFailed, match="did not happen") as caught:
        service.archive(*_key(session))
    assert caught.value.status == "READY"
    assert _experiments(client, "P1") == {}
    xnat_emulator.add_fault(ARCHIVE_ROUTE, "error_body", body="Error: archive failed", times=1)
    with pytest.raises(ArchiveFailed, match="Error: archive failed"):
        service.archive(*_key(session))


def test_delete(
    xnat_emulator: XNATEmulator, client: XNATClient, bob: XNATClient, p1: str, upload: Upload
) -> None:
    service = PrearchiveService(client)
    first = upload(p1)
    with pytest.raises(PermissionDeniedError):
        PrearchiveService(bob).delete(*_key(first))
    assert service.delete(*_key(first)) is True
    assert service.list("P1") == []
    with pytest.raises(ResourceNotFoundError):
        service.delete(*_key(first))
    second = upload(p1, session="SESS002", seed=2)
    rule = xnat_emulator.add_fault(r"^DELETE /data/prearchive/", "truncate", times=1)
    assert service.delete(*_key(second)) is True
    assert rule.fired == 1 and service.list("P1") == []


def test_rebuild_uses_build(
    xnat_emulator: XNATEmulator, client: XNATClient, p1: str, upload: Upload
) -> None:
    session = upload(p1)
    xnat_emulator.reset_metrics()
    rebuilt = PrearchiveService(client).rebuild(*_key(session))
    assert isinstance(rebuilt, PrearchiveSession)
    assert rebuilt.status is PrearchiveStatus.READY and rebuilt.tag == session.tag
    with pytest.raises(ResourceNotFoundError):
        PrearchiveService(client).rebuild("P1", "20240101_000000000", "GONE")


def test_move_between_projects_and_from_unassigned(
    client: XNATClient, p1: str, upload: Upload
) -> None:
    _project(client, "P2")
    service = PrearchiveService(client)
    session = upload(p1)
    moved = service.move(*_key(session), "P2")
    assert moved.project == "P2" and moved.tag == session.tag
    assert moved.url == f"/prearchive/projects/P2/{moved.timestamp}/{moved.folder_name}"
    assert service.list("P1") == [] and [s.tag for s in service.list("P2")] == [session.tag]
    same = service.move(*_key(moved), "P2")
    assert same.url == moved.url
    with pytest.raises(ResourceNotFoundError):
        service.move(*_key(moved), "NOPE")
    loose = upload(None, session="LOOSE", seed=5)
    assert loose.project == "Unassigned"
    placed = service.move(*_key(loose), "P1")
    assert placed.project == "P1" and placed.name == "LOOSE"
    result = service.archive(*_key(placed))
    assert result.uri.startswith("/data/archive/projects/P1/")


def test_reply_parsers() -> None:
    assert (
        archive_uri("https://xnat.example.org/ctx/data/archive/projects/P/subjects/S/experiments/E")
        == "/data/archive/projects/P/subjects/S/experiments/E"
    )
    assert archive_uri("/data/archive/projects/P/subjects/S/experiments/E\r\n") is not None
    assert archive_uri("<html>Error</html>") is None
    assert prearchive_src("/data/prearchive/projects/Q/20240101_1/F%201\r\n") == (
        "Q",
        "20240101_1",
        "F 1",
    )
    assert prearchive_src("nothing here") is None


def test_seeded_archive_goes_only_to_its_project(
    client: XNATClient, seed: Seeder, p1: str, upload: Upload
) -> None:
    seed.project("OTHER")
    session = upload(p1)
    PrearchiveService(client).archive(*_key(session))
    assert _experiments(client, "OTHER") == {}


def test_rebuild_then_archive_on_an_auto_archive_project(
    xnat_emulator: XNATEmulator, client: XNATClient, tmp_path: Path
) -> None:
    _project(client, "AA", code=4)
    held = _upload(
        xnat_emulator,
        client,
        tmp_path,
        "AA",
        status=PrearchiveStatus.RECEIVING,
        prevent_auto_commit="true",
    )
    service = PrearchiveService(client)
    rebuilt = service.rebuild(*_key(held))
    assert rebuilt.status is PrearchiveStatus.READY and rebuilt.prevent_auto_commit is True
    result = service.archive(*_key(held))
    assert result.uri == "/data/archive/projects/AA/subjects/SUBJ001/experiments/SESS001"
    assert result.experiment_id == _experiments(client, "AA")["SESS001"]
