"""Workflow routes (wrk:workflowData) and the workflow engine of the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes import workflows
from xnat_prefect.testing.store import now_text

LAUNCH = "2013-05-20 13:51:25.089"


@contextmanager
def _client(
    emu: XNATEmulator, login: str = "admin", password: str = "admin"
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, auth=(login, password), timeout=10) as client:
        yield client


def _experiment(emu: XNATEmulator, client: httpx.Client, project: str = "P1") -> str:
    """An MR session to hang workflows on (REST when available, else straight into the store)."""
    client.put(f"/data/projects/{project}")
    reply = client.put(
        f"/data/projects/{project}/subjects/S1/experiments/E1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    if reply.status_code in (200, 201) and reply.text.strip():
        return reply.text.strip()
    state = emu.state
    assert state is not None
    subject_id, experiment_id = state.accession_id("S"), state.accession_id("E")
    state.store.execute(
        "INSERT INTO subjects(id, project, label, insert_date) VALUES(?,?,?,?)",
        (subject_id, project, "S1", now_text()),
    )
    state.store.execute(
        "INSERT INTO experiments(id, project, subject_id, label, xsi_type, insert_date) "
        "VALUES(?,?,?,?,?,?)",
        (experiment_id, project, subject_id, "E1", "xnat:mrSessionData", now_text()),
    )
    return experiment_id


def _params(experiment: str, status: str, data_type: bool = True) -> dict[str, str]:
    params = {
        "wrk:workflowData/id": experiment,
        "wrk:workflowData/pipeline_name": "WORKFLOW_TEST",
        "wrk:workflowData/launch_time": LAUNCH,
        "wrk:workflowData/status": status,
    }
    if data_type:
        params["wrk:workflowData/data_type"] = "xnat:mrSessionData"
    return params


def test_put_then_find_then_update_a_workflow(xnat_emulator: XNATEmulator) -> None:
    with _client(xnat_emulator) as admin:
        experiment = _experiment(xnat_emulator, admin)
        assert admin.put("/data/workflows", params=_params(experiment, "Queued")).status_code == 200
        lookup = {k: v for k, v in _params(experiment, "").items() if not k.endswith("status")}
        lookup.pop("wrk:workflowData/data_type")
        found = admin.get("/data/workflows", params={"format": "json", **lookup}).json()
        fields = found["items"][0]["data_fields"]
        assert fields["status"] == "Queued" and fields["externalID"] == "P1"
        assert fields["ID"] == experiment and fields["create_user"] == "admin"
        wf_id = fields["wrk_workflowData_id"]
        update = admin.put("/data/workflows", params=_params(experiment, "Complete", False))
        assert update.status_code == 200
        one = admin.get(f"/data/workflows/{wf_id}", params={"format": "json"}).json()
        assert one["items"][0]["data_fields"]["status"] == "Complete"
        assert one["items"][0]["meta"]["xsi:type"] == "wrk:workflowData"
        xml = admin.get(f"/data/workflows/{wf_id}", params={"format": "xml"})
        assert xml.headers["content-type"].startswith("text/xml")
        assert "<wrk:Workflow" in xml.text and 'status="Complete"' in xml.text
        assert (
            len(admin.get("/data/workflows", params={"format": "json", **lookup}).json()["items"])
            == 1
        )


def test_workflow_validation_and_permissions(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with _client(xnat_emulator) as admin, _client(xnat_emulator, "bob", "pw") as bob:
        experiment = _experiment(xnat_emulator, admin)
        admin.put("/data/projects/P1/users/member/bob")
        incomplete = {"wrk:workflowData/id": experiment, "wrk:workflowData/status": "Queued"}
        missing = admin.put("/data/workflows", params=incomplete)
        assert missing.status_code == 400 and "launch_time" in missing.text
        assert admin.put("/data/workflows", params=_params(experiment, "Queued")).status_code == 200
        denied = bob.put("/data/workflows", params=_params(experiment, "Complete", False))
        assert denied.status_code == 403
        assert admin.get("/data/workflows/999", params={"format": "json"}).status_code == 404
        assert admin.put("/data/workflows/999", params={"status": "Complete"}).status_code == 404
        nothing = admin.get("/data/workflows", params={"wrk:workflowData/id": "XNAT_E99999"})
        assert nothing.status_code == 404


def test_workflow_service_listing_filters(xnat_emulator: XNATEmulator) -> None:
    with _client(xnat_emulator) as admin:
        experiment = _experiment(xnat_emulator, admin)
        state = xnat_emulator.state
        assert state is not None
        for name, status in (("A", "Complete"), ("A", "Failed"), ("B", "Complete")):
            workflows.create_workflow(
                state,
                data_id=experiment,
                data_type="xnat:mrSessionData",
                pipeline_name=name,
                project="P1",
                login="admin",
                status=status,
                planned_outcome=None,
            )
        table = admin.get("/data/services/workflows/A", params={"format": "json"}).json()
        assert {r["status"] for r in table["ResultSet"]["Result"]} == {"Complete", "Failed"}
        done = admin.get(
            "/data/services/workflows/ALL", params={"status": "Complete", "project": "P1"}
        ).json()["ResultSet"]
        assert done["totalRecords"] == "2"
        other = admin.get("/data/services/workflows/A", params={"experiment": "XNAT_E99999"})
        assert other.json()["ResultSet"]["Result"] == []


def test_module_functions_drive_a_workflow(xnat_emulator: XNATEmulator) -> None:
    state = xnat_emulator.state
    assert state is not None
    with _client(xnat_emulator) as admin:
        experiment = _experiment(xnat_emulator, admin)
        wf_id = workflows.create_workflow(
            state,
            data_id=experiment,
            data_type="xnat:mrSessionData",
            pipeline_name="Manual",
            project="P1",
            login="admin",
            planned_outcome=None,
        )
        time.sleep(0.3)
        status = admin.get(f"/data/workflows/{wf_id}", params={"format": "json"})
        assert status.json()["items"][0]["data_fields"]["status"] == "Queued"  # caller-driven
        workflows.set_workflow_status(state, wf_id, "Failed (Upload)", details="disk full")
        fields = admin.get(f"/data/workflows/{wf_id}", params={"format": "json"}).json()
        assert fields["items"][0]["data_fields"]["details"] == "disk full"
        assert workflows.is_terminal("Failed (Upload)") and not workflows.is_terminal("Running")
        try:
            workflows.set_workflow_status(state, wf_id, "Complete", bogus="x")
        except ValueError as exc:
            assert "bogus" in str(exc)
        else:
            raise AssertionError("unknown column accepted")
