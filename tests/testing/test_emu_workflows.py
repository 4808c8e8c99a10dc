"""Workflow routes (wrk:workflowData) and the workflow engine of the emulator."""

from __future__ import annotations

import time

from tests.testing._support import logged_in, make_experiment
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes import workflows

LAUNCH = "2013-05-20 13:51:25.089"


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
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
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
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        experiment = make_experiment(admin)
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


def _run(
    emu: XNATEmulator, experiment: str, name: str, status: str, launched: str, project: str = "P1"
) -> int:
    """A finished workflow with a fixed launch time."""
    state = emu.state
    assert state is not None
    wf_id = workflows.create_workflow(
        state,
        data_id=experiment,
        data_type="xnat:mrSessionData",
        pipeline_name=name,
        project=project,
        login="admin",
        status=status,
        planned_outcome=None,
    )
    state.store.execute(
        "UPDATE workflows SET launch_time=? WHERE wrk_workflowData_id=?", (launched, wf_id)
    )
    return wf_id


def test_unique_lookup_needs_all_three_keys_and_returns_one(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        first = _run(xnat_emulator, experiment, "WF", "Complete", "2024-01-02 03:04:05.100")
        _run(xnat_emulator, experiment, "WF", "Failed", "2024-01-02 03:04:06.200")
        keys = {"wrk:workflowData/id": experiment, "wrk:workflowData/pipeline_name": "WF"}
        # without launch_time XNAT queries "launch_time IS NULL": nothing matches
        assert admin.get("/data/workflows", params={"format": "json", **keys}).status_code == 404
        when = {"wrk:workflowData/launch_time": "2024-01-02 03:04:05.1"}
        found = admin.get("/data/workflows", params={"format": "json", **keys, **when}).json()
        assert len(found["items"]) == 1
        assert found["items"][0]["data_fields"]["wrk_workflowData_id"] == first
        iso = {"wrk:workflowData/launch_time": "2024-01-02T03:04:05.100"}
        ignored = {"wrk:workflowData/status": "Bogus"}  # not part of XNAT's unique key
        again = admin.get("/data/workflows", params={"format": "json", **keys, **iso, **ignored})
        assert again.json()["items"][0]["data_fields"]["status"] == "Complete"
        off = {"wrk:workflowData/launch_time": "2024-01-02 03:04:05.101"}
        assert admin.get("/data/workflows", params={**keys, **off}).status_code == 404
        bad = {"wrk:workflowData/launch_time": "yesterday"}
        assert admin.get("/data/workflows", params={**keys, **bad}).status_code == 404
        xml = admin.get("/data/workflows", params={**keys, **when})  # no format: XML
        assert xml.headers["content-type"].startswith("text/xml") and "<wrk:Workflow" in xml.text
        doc = admin.get(f"/data/workflows/{first}")
        assert doc.headers["content-type"].startswith("text/xml")
        page = admin.get(f"/data/workflows/{first}", params={"format": "html"})
        assert page.headers["content-type"].startswith("text/html")


def test_service_listing_for_one_experiment(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        old = _run(xnat_emulator, experiment, "Recon", "Complete", "2024-01-01 10:00:00.000")
        new = _run(xnat_emulator, experiment, "Recon", "Failed", "2024-01-01 11:00:00.000")
        full = _run(xnat_emulator, experiment, "ReconAll", "Complete", "2024-01-01 09:00:00.000")
        _run(xnat_emulator, experiment, "Other", "Complete", "2024-01-01 12:00:00.000")
        base = {"experiment": experiment, "format": "json"}
        latest = admin.get("/data/services/workflows/Recon", params=base).json()
        assert [i["data_fields"]["wrk_workflowData_id"] for i in latest["items"]] == [new]
        done = admin.get("/data/services/workflows/Recon", params={**base, "status": "Complete"})
        assert done.json()["items"][0]["data_fields"]["wrk_workflowData_id"] == old
        by_label = {"experiment": "E1", "project": "P1", "format": "json"}
        assert admin.get("/data/services/workflows/Recon", params=by_label).status_code == 200
        as_xml = admin.get("/data/services/workflows/Recon", params={"experiment": experiment})
        assert as_xml.headers["content-type"].startswith("text/xml")
        assert 'status="Failed"' in as_xml.text
        every = admin.get("/data/services/workflows/recon", params={**base, "display": "ALL"})
        result = every.json()["ResultSet"]
        assert result["title"] == "All workflows"  # case-insensitive substring match:
        assert {r["wrk_workflowData_id"] for r in result["Result"]} == {
            str(old),
            str(new),
            str(full),
        }
        missing = admin.get("/data/services/workflows/Nothing", params=base)
        assert missing.status_code == 404 and experiment in missing.text
        # no "every pipeline" wildcard in XNAT: ALL is a substring like any other name
        by_all = admin.get("/data/services/workflows/ALL", params=base).json()
        assert by_all["items"][0]["data_fields"]["wrk_workflowData_id"] == full  # ReconAll
        assert admin.get("/data/services/workflows/*", params=base).status_code == 404
        assert admin.get("/data/services/workflows", params=base).status_code == 404


def test_service_listing_without_experiment(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        first = make_experiment(admin)
        reply = admin.put(
            "/data/projects/P1/subjects/S2/experiments/E2", params={"xsiType": "xnat:mrSessionData"}
        )
        second = reply.text.strip()
        _run(xnat_emulator, first, "Recon", "Complete", "2024-01-01 10:00:00.000")
        _run(xnat_emulator, first, "Recon", "Failed", "2024-01-01 11:00:00.000")
        _run(xnat_emulator, second, "Recon", "Complete", "2024-01-01 10:30:00.000")
        _run(xnat_emulator, second, "Other", "Complete", "2024-01-01 12:00:00.000")
        table = admin.get("/data/services/workflows/Recon", params={"format": "json"}).json()
        rows = table["ResultSet"]["Result"]
        assert [(r["id"], r["status"], r["label"]) for r in rows] == [
            (first, "Failed", "E1"),
            (second, "Complete", "E2"),
        ]  # the latest run per experiment, and no workflow id column
        assert "wrk_workflowData_id" not in rows[0]
        assert table["ResultSet"]["title"] == "All null workflows"
        done = admin.get(
            "/data/services/workflows/Recon", params={"status": "Complete", "format": "json"}
        )
        assert [r["id"] for r in done.json()["ResultSet"]["Result"]] == [second]
        both = admin.get("/data/services/workflows/Recon,Other", params={"format": "json"}).json()
        assert {(r["id"], r["pipeline_name"]) for r in both["ResultSet"]["Result"]} == {
            (first, "Recon"),
            (second, "Other"),
        }
        cased = admin.get("/data/services/workflows/recon", params={"format": "json"}).json()
        assert cased["ResultSet"]["Result"] == []  # plain SQL LIKE is case-sensitive
        wildcard = admin.get("/data/services/workflows/ALL", params={"format": "json"}).json()
        assert wildcard["ResultSet"]["Result"] == []
        other_project = {"project": "P2", "format": "json"}
        scoped = admin.get("/data/services/workflows/Recon", params=other_project).json()
        assert scoped["ResultSet"]["Result"] == []
        unknown = {"experiment": "XNAT_E99999", "format": "json"}
        fallback = admin.get("/data/services/workflows/Recon", params=unknown).json()
        assert len(fallback["ResultSet"]["Result"]) == 2  # an unknown experiment is ignored
        as_bob = bob.get(
            "/data/services/workflows/Recon", params={"experiment": first, "format": "json"}
        )
        assert len(as_bob.json()["ResultSet"]["Result"]) == 2  # XNAT's raw SQL is not filtered
        csv = admin.get("/data/services/workflows/Recon")
        assert csv.headers["content-type"].startswith("application/vnd.ms-excel")
        assert csv.text.splitlines()[0].startswith("label,id,externalid,pipeline_name")
        params_filter = {"param_sessionId": "x", "format": "json"}
        assert (
            admin.get("/data/services/workflows/Recon", params=params_filter).json()["ResultSet"][
                "Result"
            ]
            == []
        )
        assert admin.get("/data/services/workflows").status_code == 404


def test_workflow_by_primary_key_service(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        wf_id = _run(xnat_emulator, experiment, "Recon", "Complete", "2024-01-01 10:00:00.000")
        xml = admin.get(f"/data/services/workflows/workflowid/{wf_id}")
        assert xml.status_code == 200 and "<wrk:Workflow" in xml.text
        doc = admin.get(f"/data/services/workflows/workflowid/{wf_id}", params={"format": "json"})
        assert doc.json()["items"][0]["data_fields"]["pipeline_name"] == "Recon"
        assert admin.get("/data/services/workflows/workflowid/999").status_code == 500
        assert admin.get("/data/services/workflows/workflowid/abc").status_code == 500


def test_module_functions_drive_a_workflow(xnat_emulator: XNATEmulator) -> None:
    state = xnat_emulator.state
    assert state is not None
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
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
