"""Legacy pipeline engine of the emulator: listing, definitions, launches and their outcomes."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.testing._support import logged_in, make_experiment, wait_for, workflow_fields
from xnat_prefect.testing import XNATEmulator


def _seed(emu: XNATEmulator, **pipeline: Any) -> None:
    body = {"project": "P1", "name": "DicomToNifti", "description": "Convert", **pipeline}
    reply = httpx.post(f"{emu.url}/emulator/pipelines", json=body)
    assert reply.status_code == 201, reply.text


def _workflow(client: httpx.Client, pipeline: str = "DicomToNifti") -> dict[str, Any]:
    """The experiment's latest run of a pipeline, polled through its own document."""
    latest = client.get(
        f"/data/services/workflows/{pipeline}",
        params={"experiment": "E1", "project": "P1", "format": "json"},
    )
    assert latest.status_code == 200, f"no workflow for {pipeline}"
    return workflow_fields(client, latest.json()["items"][0]["data_fields"]["wrk_workflowData_id"])


def _launch(client: httpx.Client, step: str = "DicomToNifti", exp: str = "E1") -> httpx.Response:
    return client.post(f"/data/projects/P1/pipelines/{step}/experiments/{exp}")


def test_pipeline_listing_and_definitions(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        make_experiment(admin)
        admin.put("/data/projects/P1/users/member/bob")
        _seed(xnat_emulator, datatype="xnat:mrSessionData", path="/pipes/dcm2nii.xml")
        table = admin.get("/data/projects/P1/pipelines", params={"format": "json"}).json()
        row = table["ResultSet"]["Result"][0]
        assert row == {
            "Applies To": "MR Session",
            "Generates": "",
            "Name": "DicomToNifti",
            "Description": "Convert",
            "Path": "/pipes/dcm2nii.xml",
            "Datatype": "xnat:mrSessionData",
        }
        spec = admin.get("/data/projects/P1/pipelines", params={"format": "xml"}).text
        assert "<arc:project" in spec and "/pipes/dcm2nii.xml" in spec
        assert bob.get("/data/projects/P1/pipelines").status_code == 403
        definition = admin.get("/data/projects/P1/pipelines/DicomToNifti")
        assert (
            definition.status_code == 200 and "<arc:name>DicomToNifti</arc:name>" in definition.text
        )
        for_exp = admin.get("/data/projects/P1/pipelines/DicomToNifti/experiments/E1")
        assert for_exp.status_code == 200
        assert admin.get("/data/projects/P1/pipelines/Nope").status_code == 404
        assert admin.delete("/data/projects/P1/pipelines").status_code == 417
        removed = admin.delete(
            "/data/projects/P1/pipelines",
            params={"path": "/pipes/dcm2nii.xml", "datatype": "xnat:mrSessionData"},
        )
        assert removed.status_code == 200 and removed.json()["ResultSet"]["Result"] == []


def test_launch_runs_to_complete(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        _seed(xnat_emulator, run_seconds=1.0)
        reply = _launch(admin)
        assert reply.status_code == 200 and reply.text == ""
        first = _workflow(admin)
        assert first["status"] in ("Queued", "Running") and first["ID"] == experiment
        assert first["externalID"] == "P1" and first["data_type"] == "xnat:mrSessionData"
        wait_for(lambda: _workflow(admin)["status"] == "Complete")
        assert _workflow(admin)["percentageComplete"] == "100.0"


def test_failed_outcome_sets_details(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        make_experiment(admin)
        _seed(xnat_emulator, outcome="Failed", run_seconds=0.1)
        _launch(admin)
        wait_for(lambda: _workflow(admin)["status"] == "Failed")
        assert "exited with status 1" in _workflow(admin)["details"]


def test_killed_and_hung_outcomes(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        make_experiment(admin)
        _seed(xnat_emulator, name="Killer", outcome="Killed", run_seconds=0.1)
        _seed(xnat_emulator, name="Hanger", outcome="Hang", run_seconds=0.1)
        _launch(admin, "Killer")
        _launch(admin, "Hanger")
        wait_for(lambda: _workflow(admin, "Killer")["status"] == "Killed")
        wait_for(lambda: _workflow(admin, "Hanger")["status"] == "Running")
        assert xnat_emulator.wait_idle(timeout=2)  # a hung run is not pending work
        time.sleep(0.5)
        assert _workflow(admin, "Hanger")["status"] == "Running"


def test_completion_after_n_polls(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.set_timing(job_polls=3, job_run_seconds=600)
    with logged_in(xnat_emulator) as admin:
        make_experiment(admin)
        _seed(xnat_emulator)
        _launch(admin)
        listed = admin.get(
            "/data/services/workflows/DicomToNifti",
            params={"experiment": "E1", "project": "P1", "display": "ALL", "format": "json"},
        )
        wf_id = listed.json()["ResultSet"]["Result"][0]["wrk_workflowData_id"]

        def poll() -> str:
            return str(workflow_fields(admin, wf_id)["status"])

        time.sleep(0.5)  # time alone does not finish it
        assert [poll(), poll(), poll(), poll()] == ["Running", "Running", "Complete", "Complete"]


def test_launch_errors(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("carl", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "carl", "pw") as carl:
        make_experiment(admin)
        _seed(xnat_emulator)
        admin.put("/data/projects/P1/users/collaborator/carl")
        assert (
            admin.post("/data/projects/NOPE/pipelines/DicomToNifti/experiments/E1").status_code
            == 400
        )
        assert _launch(admin, exp="NOPE").status_code == 400
        unknown_step = _launch(admin, step="Nope")  # XNAT only logs the failed launch
        assert unknown_step.status_code == 200 and unknown_step.text == ""
        state = xnat_emulator.state
        assert state is not None
        assert state.store.query("SELECT * FROM workflows") == []  # nothing runs
        assert _launch(carl).status_code == 403
        assert _launch(carl, step="triggerPipelines").status_code == 200  # silently skipped
        assert _launch(carl, step="fixScanTypes").status_code == 403
        assert state.store.query("SELECT * FROM workflows") == []
        inline = _launch(admin, step="triggerPipelines")
        assert inline.status_code == 200
        assert _workflow(admin, "Triggered Pipelines")["status"] == "Complete"
        _launch(admin, step="pullDataFromHeaders")
        assert _workflow(admin, "Pulled Data from DICOM")["status"] == "Complete"
