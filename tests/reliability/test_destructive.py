"""Suite 7 - destructive operations: refused without an explicit ``force``, and logged.

Deleting a subject that has experiments, every scan of a session (``["*"]``) and a project that
holds data must be refused (typed error naming what would be lost, nothing deleted) unless the
caller passes ``force=True``; a forced deletion is logged at WARNING with what it removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.reliability._support import Inspector
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import ConflictError
from xnat_prefect.services import ProjectService, ScanService, SubjectService
from xnat_prefect.services.projects import ProjectNotEmptyError
from xnat_prefect.services.scans import ScansWouldBeDeletedError
from xnat_prefect.services.subjects import SubjectHasExperimentsError


@pytest.fixture
def client(lab: Inspector) -> Iterator[XNATClient]:
    with XNATClient(lab.emulator.url, "admin", "admin") as xnat:
        yield xnat


def _session_with_scans(lab: Inspector) -> str:
    lab.project("P1")
    folder, _ = lab.study(files=8)
    return lab.seed_archive(folder, project="P1", subject="SUBJ01", session="SUBJ01_MR1")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_subject_with_experiments_is_kept_without_force(
    lab: Inspector, client: XNATClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xnat_prefect")
    experiment = _session_with_scans(lab)
    service = SubjectService(client)
    with pytest.raises(SubjectHasExperimentsError) as caught:
        service.delete("SUBJ01", project="P1", remove_files=True)
    assert isinstance(caught.value, ConflictError)
    assert experiment in caught.value.message and "force=True" in caught.value.message
    assert [e["ID"] for e in lab.experiments("P1")] == [experiment]  # nothing deleted
    assert service.delete("SUBJ01", project="P1", remove_files=True, force=True)
    assert lab.experiments("P1") == []
    assert any("Force-deleting subject" in m and "1 experiment" in m for m in _warnings(caplog))


def test_project_with_data_is_kept_without_force(
    lab: Inspector, client: XNATClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xnat_prefect")
    experiment = _session_with_scans(lab)
    service = ProjectService(client)
    with pytest.raises(ProjectNotEmptyError) as caught:
        service.delete("P1", remove_files=True)
    error = caught.value
    assert isinstance(error, ConflictError)
    assert error.contents["subjects"] == 1 and error.contents["experiments"] == 1
    assert "'P1'" in error.message and "force=True" in error.message
    assert [e["ID"] for e in lab.experiments("P1")] == [experiment]
    assert any("Refused to delete project P1" in m for m in _warnings(caplog))
    assert service.delete("P1", remove_files=True, force=True)
    assert lab.rest.get("/data/projects/P1", params={"format": "json"}).status_code in (403, 404)
    assert any("Deleted project P1" in m and "forced" in m for m in _warnings(caplog))


def test_empty_project_needs_no_force(lab: Inspector, client: XNATClient) -> None:
    lab.project("EMPTY")
    assert ProjectService(client).delete("EMPTY")


class AllScansDeletedError(AssertionError):
    """``delete_multiple(["*"])`` deleted every scan without ``force`` (BUG-12, fixed)."""


def test_all_scans_are_kept_without_force(
    lab: Inspector, client: XNATClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xnat_prefect")
    experiment = _session_with_scans(lab)
    before = lab.rows(f"/data/experiments/{experiment}/scans")
    assert len(before) == 4
    refused: ConflictError | None = None
    try:
        ScanService(client).delete_multiple(experiment, ["*"])
    except ConflictError as exc:  # the guard: refused, typed, names the session
        refused = exc
    after = lab.rows(f"/data/experiments/{experiment}/scans")
    if len(after) != len(before):
        raise AllScansDeletedError(f"{len(before) - len(after)} scan(s) deleted without force")
    assert isinstance(refused, ScansWouldBeDeletedError), "refused without the typed error"
    assert experiment in str(refused) and "force=True" in str(refused)
    assert sorted(refused.scans) == sorted(row["ID"] for row in before)
    assert any("Refused to delete ALL 4 scan(s)" in m for m in _warnings(caplog))
    summary = ScanService(client).delete_multiple(experiment, ["*"], force=True)
    assert summary.success and len(summary.succeeded) == 4
    assert lab.rows(f"/data/experiments/{experiment}/scans") == []
    assert any("Deleting ALL 4 scan(s)" in m and "forced" in m for m in _warnings(caplog))
