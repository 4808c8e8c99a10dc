"""Suite 4 - XNAT's lies: replies that look fine but are not, and jobs that never end.

Each case must end in a TYPED error naming the ids involved (prearchive ``src``, session,
container or workflow id, study UID), never in a success:

* 200 carrying an error text from archive, move and container launch (``error_body``);
* a container that never leaves Running (``/emulator/containers/outcomes`` ``Hang``);
* a prearchive session stuck in RECEIVING (``rebuild_quiet_seconds=3600``);
* a resource catalog listing 0 files.

A flow that reports instead of raising (``raise_on_failure=False``) still lists the failure.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests._shared import container_outcomes, install_command, session_command
from tests.reliability._support import Inspector, record_figures
from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ArchiveFailed,
    OperationError,
    PipelineFailed,
    PipelineTimedOut,
    SessionNotSettled,
    UnexpectedResponseError,
    VerificationError,
    XNATError,
)
from xnat_prefect.flows.download import download_sessions
from xnat_prefect.flows.ingest import ingest_dicom
from xnat_prefect.flows.pipelines import run_pipeline_and_wait
from xnat_prefect.flows.prearchive import archive_prearchive_sessions
from xnat_prefect.services.prearchive import PrearchiveService

LIE = "There was an error: org.nrg.xnat.archive.ArchiveException: the operation failed"
LABELS = {"project": "P1", "subject": "SUBJ01", "session": "SUBJ01_MR1"}
FAST = {"stall_seconds": 5.0, "max_wait_seconds": 30.0, "poll_interval_seconds": 0.1}
COMMAND = session_command("liar")

OUTCOMES: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _record() -> Any:
    yield
    record_figures("lies", cases=OUTCOMES)


def _note(case: str, error: BaseException) -> None:
    OUTCOMES.append({"case": case, "error": type(error).__name__, "message": str(error)[:300]})


def _ready_prearchive_session(lab: Inspector) -> dict[str, str]:
    """A READY session in the prearchive of manual project P1 (raw REST import)."""
    lab.project("P1", code=0)
    folder, manifest = lab.study(files=8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in manifest.files:
            archive.write(path, path.relative_to(folder).as_posix())
    reply = lab.rest.post(
        "/data/services/import",
        params={"import-handler": "DICOM-zip", **LABELS},
        content=buffer.getvalue(),
        headers={"Content-Type": "application/zip"},
    )
    assert reply.status_code == 200, reply.text
    rows = lab.wait_for(lambda: [r for r in lab.prearchive("P1") if r["status"] == "READY"], 20)
    return rows[0]


def _session(lab: Inspector) -> str:
    lab.project("P1")
    reply = lab.rest.put(
        "/data/projects/P1/subjects/S1/experiments/S1_MR1", params={"xsiType": "xnat:mrSessionData"}
    )
    assert reply.status_code == 201, reply.text
    return reply.text.strip()


def _wrapper(lab: Inspector, outcome: str) -> int:
    _, wrapper_id = install_command(lab.rest, COMMAND)
    container_outcomes(lab.emulator, {"liar-session": outcome})
    return wrapper_id


# --- 200 with an error inside -------------------------------------------------------------------


def test_archive_answering_200_with_an_error_is_archive_failed(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    row = _ready_prearchive_session(lab)
    lab.emulator.add_fault(r"^POST /data/services/archive", "error_body", body=LIE)
    with pytest.raises(ArchiveFailed) as caught:
        archive_prearchive_sessions(creds, "P1", min_age_minutes=0)
    error = caught.value
    assert error.target == f"/prearchive/projects/P1/{row['timestamp']}/{row['folderName']}"
    assert "ArchiveException" in error.message and row["timestamp"] in error.message
    _note("archive 200+error (archive_prearchive_sessions)", error)


def test_archive_lie_is_reported_when_the_flow_does_not_raise(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    row = _ready_prearchive_session(lab)
    lab.emulator.add_fault(r"^POST /data/services/archive", "error_body", body=LIE)
    report = archive_prearchive_sessions(creds, "P1", min_age_minutes=0, raise_on_failure=False)
    assert report.archived == [] and not report.success
    assert [item.folder for item in report.failed] == [row["folderName"]]
    message = report.failed[0].message or ""
    assert "ArchiveException" in message and row["timestamp"] in message


def test_archive_lie_during_ingest_fails_the_ingest(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    lab.project("P1", code=0)
    folder, _ = lab.study(files=8)
    lab.emulator.add_fault(r"^POST /data/services/archive", "error_body", body=LIE)
    with pytest.raises(XNATError) as caught:
        ingest_dicom(creds, str(folder), transport="gradual", **LABELS, **FAST)
    error = caught.value
    assert isinstance(error, ArchiveFailed), repr(error)
    assert error.target and error.target.startswith("/prearchive/projects/P1/")
    assert "ArchiveException" in error.message
    _note("archive 200+error (ingest_dicom)", error)


def test_move_answering_200_with_an_error_is_typed(lab: Inspector) -> None:
    row = _ready_prearchive_session(lab)
    lab.project("P2")
    lab.emulator.add_fault(r"^POST /data/prearchive/projects/", "error_body", body=LIE)
    with (
        XNATClient(lab.emulator.url, "admin", "admin") as client,
        pytest.raises(UnexpectedResponseError) as caught,
    ):
        PrearchiveService(client).move("P1", row["timestamp"], row["folderName"], "P2")
    message = caught.value.message
    assert row["timestamp"] in message and row["folderName"] in message and "P2" in message
    assert "ArchiveException" in message
    _note("move 200+error (PrearchiveService.move)", caught.value)


def test_container_launch_answering_200_with_an_error_is_pipeline_failed(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    session = _session(lab)
    _wrapper(lab, "Complete")
    lab.emulator.add_fault(r"^POST /xapi/.*launch", "error_body", body=LIE)
    with pytest.raises(PipelineFailed) as caught:
        run_pipeline_and_wait(
            creds, "liar-session", [session], max_wait_seconds=10, poll_interval_seconds=0.1
        )
    message = caught.value.message
    assert session in message and "ArchiveException" in message
    _note("container launch 200+error (run_pipeline_and_wait)", caught.value)


# --- jobs and sessions that never settle --------------------------------------------------------


def test_container_that_never_leaves_running_times_out_and_is_killed(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    session = _session(lab)
    _wrapper(lab, "Hang")
    with pytest.raises(PipelineTimedOut) as caught:
        run_pipeline_and_wait(
            # 4 s: on a loaded machine 1.5 s sometimes ended before the sweeper moved the
            # container from Queued to Running (the hang under test)
            creds,
            "liar-session",
            [session],
            max_wait_seconds=4,
            poll_interval_seconds=0.1,
        )
    error = caught.value
    containers = lab.rest.get("/xapi/containers").json()
    assert len(containers) == 1
    container = containers[0]
    assert error.target and str(container["id"]) in error.target
    assert session in error.message and "Running" in (error.status or "")
    assert container["status"] != "Running"  # cancelled in XNAT on timeout
    _note("container hangs in Running (run_pipeline_and_wait)", error)


def test_prearchive_session_stuck_receiving_is_session_not_settled(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    lab.project("P1")
    lab.emulator.set_timing(rebuild_quiet_seconds=3600)
    folder, manifest = lab.study(files=8)
    with pytest.raises(SessionNotSettled) as caught:
        ingest_dicom(
            creds, str(folder), transport="gradual", **LABELS, **{**FAST, "stall_seconds": 1.5}
        )
    error = caught.value
    assert error.status == "RECEIVING"
    assert error.target == manifest.study_uid
    assert "/prearchive/projects/P1/" in error.message
    _note("prearchive stuck in RECEIVING (ingest_dicom)", error)


# --- a catalog listing 0 files ------------------------------------------------------------------


def _empty_listing() -> str:
    return json.dumps({"ResultSet": {"Result": [], "title": "Files", "Columns": []}})


def test_ingest_whose_archived_scan_lists_zero_files_is_not_a_success(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    lab.project("P1")
    folder, _ = lab.study(files=8)
    lab.emulator.add_fault(
        r"^GET /data/experiments/[^/]+/scans/1/resources/DICOM/files$",
        "error_body",
        body=_empty_listing(),
    )
    with pytest.raises(OperationError) as caught:
        ingest_dicom(creds, str(folder), transport="gradual", **LABELS, **FAST)
    error = caught.value
    assert "scan 1" in error.message and (error.target or "").startswith("XNAT_E")
    _note("scan catalog lists 0 files (ingest_dicom)", error)


def test_download_of_a_session_whose_catalog_lists_zero_files_is_not_a_success(
    prefect: None, creds: XNATCredentials, lab: Inspector, tmp_path: Path
) -> None:
    lab.project("P1")
    folder, _ = lab.study(files=8)
    experiment = lab.seed_archive(folder, project="P1", subject="SUBJ01", session="SUBJ01_MR1")
    lab.emulator.add_fault(
        rf"^GET /data/experiments/{experiment}/scans/ALL/files$",
        "error_body",
        body=_empty_listing(),
    )
    with pytest.raises(OperationError) as caught:
        download_sessions(creds, [experiment], str(tmp_path / "out"))
    error = caught.value
    assert isinstance(error, VerificationError), repr(error)
    assert error.target == experiment and error.status == "EMPTY_LISTING"
    assert experiment in error.message and "refresh" in error.message
    _note("session catalog lists 0 files (download_sessions)", error)
