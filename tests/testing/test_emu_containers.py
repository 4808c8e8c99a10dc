"""Container Service emulation: commands, enablement, launches, container life cycles."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import httpx

from tests._shared import container_outcomes, install_command, session_command
from tests.testing._support import logged_in, make_experiment, wait_for, workflow_fields
from xnat_prefect.testing import XNATEmulator

COMMAND = session_command("dcm2niix", command_line="dcm2niix -o /out #SESSION#")


def _launch(client: httpx.Client, wrapper_id: int, session: str) -> dict[str, Any]:
    reply = client.post(
        f"/xapi/projects/P1/wrappers/{wrapper_id}/root/session/launch", json={"session": session}
    )
    assert reply.status_code == 200, reply.text
    report: dict[str, Any] = reply.json()
    return report


def test_command_crud(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        created = admin.post("/xapi/commands", json=COMMAND)
        assert created.status_code == 201 and isinstance(created.json(), int)
        command_id = created.json()
        listed = admin.get("/xapi/commands").json()
        assert [c["name"] for c in listed] == ["dcm2niix"]
        wrapper = listed[0]["xnat"][0]
        assert wrapper["name"] == "dcm2niix-session" and isinstance(wrapper["id"], int)
        assert admin.get(f"/xapi/commands/{command_id}").json()["image"] == "xnat/dcm2niix:1.0"
        assert admin.get("/xapi/commands/999").status_code == 404
        assert admin.post("/xapi/commands", json=COMMAND).status_code == 400  # duplicate
        assert admin.post("/xapi/commands", json={"name": "x"}).status_code == 400  # no image
        assert bob.post("/xapi/commands", json={**COMMAND, "name": "b"}).status_code == 403
        assert admin.put(f"/xapi/commands/{command_id}", json=COMMAND).status_code == 405
        assert admin.get(f"/xapi/commands/{command_id}/wrappers").status_code == 405
        assert admin.get("/xapi/wrappers").status_code == 404
        added = admin.post(f"/xapi/commands/{command_id}/wrappers", json={"name": "second"})
        assert added.status_code == 201
        assert len(admin.get(f"/xapi/commands/{command_id}").json()["xnat"]) == 2
        replaced = {k: v for k, v in COMMAND.items() if k != "xnat"}
        assert admin.post(f"/xapi/commands/{command_id}", json=replaced).status_code == 200
        assert admin.get(f"/xapi/commands/{command_id}").json()["xnat"] == []
        assert admin.post("/xapi/commands/999", json=COMMAND).status_code == 500
        assert admin.delete(f"/xapi/commands/{command_id}").status_code == 204
        assert admin.delete("/xapi/commands/999").status_code == 204
        assert admin.get("/xapi/commands").json() == []


def test_enablement_site_and_project(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        command_id = admin.post("/xapi/commands", json=COMMAND).json()
        site = f"/xapi/commands/{command_id}/wrappers/dcm2niix-session"
        project = f"/xapi/projects/P1/commands/{command_id}/wrappers/dcm2niix-session"
        assert admin.get(f"{site}/enabled").json() is False
        failure = admin.post(f"{project}/root/session/launch", json={"session": experiment})
        assert failure.status_code == 500 and failure.json()["status"] == "failure"
        assert "not enabled" in failure.json()["message"]
        failed_wf = admin.get(
            "/data/services/workflows/dcm2niix-session",
            params={"experiment": experiment, "format": "json"},
        ).json()
        assert failed_wf["items"][0]["data_fields"]["status"] == "Failed (Staging)"
        assert admin.put(f"{site}/enabled").status_code == 200
        assert admin.get(f"{site}/enabled").json() is True
        report = admin.get(f"{project}/enabled").json()
        assert report == {"enabled-for-site": True, "enabled-for-project": False, "project": "P1"}
        admin.put(f"{project}/enabled")
        assert admin.get(f"{project}/enabled").json()["enabled-for-project"] is True
        admin.put(f"{project}/disabled")
        assert admin.get(f"{project}/enabled").json()["enabled-for-project"] is False
        assert admin.get(f"/xapi/commands/{command_id}/wrappers/nope/enabled").status_code == 404
        config = admin.get(f"{project}/config").json()
        assert config["inputs"]["session"]["required"] is True


def test_launch_runs_to_complete_with_history_and_logs(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        _, wrapper_id = install_command(admin, COMMAND)
        report = _launch(admin, wrapper_id, experiment)
        assert report["status"] == "success" and report["wrapper-id"] == wrapper_id
        assert report["command-id"] == 0 and report["params"] == {"session": experiment}
        wf_id = report["workflow-id"]
        assert wf_id.isdigit() and report["id"] is None
        wait_for(lambda: workflow_fields(admin, wf_id)["status"] == "Complete")
        fields = workflow_fields(admin, wf_id)
        assert fields["pipeline_name"] == "dcm2niix-session" and fields["ID"] == experiment
        container = admin.get(f"/xapi/containers/{fields['comments']}").json()
        assert container["status"] == "Complete" and container["workflow-id"] == wf_id
        assert container["command-line"] == f"dcm2niix -o /out {experiment}"
        statuses = [h["status"] for h in container["history"]]
        assert statuses == ["Created", "Running", "Finalizing", "Complete"]
        assert admin.get(f"/xapi/containers/{container['id']}").json()["id"] == container["id"]
        assert [c["id"] for c in admin.get("/xapi/projects/P1/containers").json()] == [
            container["id"]
        ]
        stdout = admin.get(f"/xapi/containers/{container['id']}/logs/stdout")
        assert stdout.status_code == 200 and "Done." in stdout.text
        assert admin.get(f"/xapi/containers/{container['id']}/logs/stderr").status_code == 204
        logs = zipfile.ZipFile(
            io.BytesIO(admin.get(f"/xapi/containers/{container['id']}/logs").content)
        )
        assert sorted(logs.namelist()) == ["stderr.log", "stdout.log"]
        batch = admin.get(f"/xapi/workflows/{wf_id}").json()
        assert batch["status"] == "Complete" and batch["comments"] == container["container-id"]


def test_failed_outcome(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        _, wrapper_id = install_command(admin, COMMAND)
        container_outcomes(xnat_emulator, {"dcm2niix-session": "Failed"})
        wf_id = _launch(admin, wrapper_id, experiment)["workflow-id"]
        wait_for(lambda: workflow_fields(admin, wf_id)["status"].startswith("Failed"))
        fields = workflow_fields(admin, wf_id)
        assert fields["status"] == "Failed (Running)" and "status 1" in fields["details"]
        container = admin.get(f"/xapi/containers/{fields['comments']}").json()
        assert container["status"] == "Failed" and container["history"][-1]["exitCode"] == "1"
        assert (
            "Emulated failure" in admin.get(f"/xapi/containers/{container['id']}/logs/stderr").text
        )


def test_hang_then_kill(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        experiment = make_experiment(admin)
        admin.put("/data/projects/P1/users/member/bob")
        _, wrapper_id = install_command(admin, COMMAND)
        container_outcomes(xnat_emulator, {str(wrapper_id): "Hang"})
        wf_id = _launch(admin, wrapper_id, experiment)["workflow-id"]
        wait_for(lambda: workflow_fields(admin, wf_id)["status"] == "Running")
        time.sleep(0.6)  # twice job_run_seconds: still running
        fields = workflow_fields(admin, wf_id)
        assert fields["status"] == "Running"
        container_id = fields["comments"]
        assert bob.post(f"/xapi/containers/{container_id}/kill").status_code == 403
        killed = admin.post(f"/xapi/projects/P1/containers/{container_id}/kill")
        assert killed.status_code == 200 and killed.text == container_id
        assert workflow_fields(admin, wf_id)["status"] == "Killed"
        assert admin.get(f"/xapi/containers/{container_id}").json()["status"] == "Killed"
        assert admin.post("/xapi/containers/999/kill").status_code == 404
        assert admin.get(f"/xapi/containers/{container_id}/kill").status_code == 405
        assert admin.delete(f"/xapi/containers/{container_id}").status_code == 204
        missing = admin.get(f"/xapi/containers/{container_id}")
        assert missing.status_code == 404 and missing.text == f"No container with ID {container_id}"
        assert admin.get("/xapi/containers/999/logs/stdout").status_code == 500


def test_completion_after_n_polls(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.set_timing(job_polls=4, job_run_seconds=600)
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        _, wrapper_id = install_command(admin, COMMAND)
        wf_id = _launch(admin, wrapper_id, experiment)["workflow-id"]
        time.sleep(0.4)
        seen = [workflow_fields(admin, wf_id)["status"] for _ in range(5)]
        assert seen == ["Running", "Running", "Running", "Complete", "Complete"]


def test_deprecated_and_odd_launches(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        experiment = make_experiment(admin)
        command_id, wrapper_id = install_command(admin, COMMAND)
        old = admin.post(
            f"/xapi/projects/P1/commands/{command_id}/wrappers/dcm2niix-session/launch",
            params={"session": experiment},
        )
        assert old.status_code == 200
        assert old.json()["workflow-id"] == "To be assigned"
        assert old.json()["command-id"] == command_id and old.json()["wrapper-id"] == 0
        wait_for(
            lambda: any(c["status"] == "Complete" for c in admin.get("/xapi/containers").json())
        )
        unknown = admin.post(
            "/xapi/projects/P1/wrappers/999/root/session/launch", json={"session": "x"}
        )
        assert unknown.status_code == 200 and unknown.json()["workflow-id"] == "To be assigned"
        bad_project = admin.post(
            f"/xapi/projects/NOPE/wrappers/{wrapper_id}/root/session/launch", json={"session": "x"}
        )
        assert bad_project.status_code == 500
        assert bad_project.text == "There was an error in the request : null"
        missing = _launch(admin, wrapper_id, "XNAT_E99999")
        wait_for(
            lambda: workflow_fields(admin, missing["workflow-id"])["status"] == "Failed (Staging)"
        )
        assert "XNAT_E99999" in workflow_fields(admin, missing["workflow-id"])["details"]
        assert len(admin.get("/xapi/containers").json()) == 1  # no container for those


def test_bulk_launch_and_visibility(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        experiment = make_experiment(admin)
        admin.put("/data/projects/P1/users/member/bob")
        _, wrapper_id = install_command(admin, COMMAND)
        bulk = admin.post(
            f"/xapi/projects/P1/wrappers/{wrapper_id}/root/session/bulklaunch",
            json={"session": f'["{experiment}", "E1"]'},
        ).json()
        assert bulk["pipeline-name"] == "dcm2niix-session" and len(bulk["successes"]) == 2
        assert bulk["bulk-launch-id"].startswith("bulk-admin")
        assert _launch(bob, wrapper_id, experiment)["status"] == "success"
        wait_for(lambda: len(admin.get("/xapi/containers").json()) == 3)
        assert [c["user-id"] for c in bob.get("/xapi/containers").json()] == ["bob"]
