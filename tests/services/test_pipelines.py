"""PipelineService against the emulator: legacy pipelines and Container Service wrappers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    InvalidInputError,
    OperationError,
    PipelineFailed,
    PipelineKilled,
    PipelineTimedOut,
    ResourceNotFoundError,
)
from xnat_prefect.models import Pipeline, PipelineJob
from xnat_prefect.services._pipeline_jobs import (
    JobState,
    find_unique_workflow,
    job_state,
    parse_job_id,
)
from xnat_prefect.services.pipelines import PipelineService
from xnat_prefect.testing.server import XNATEmulator

WRAPPER = "dcm2niix-session"
COMMAND: dict[str, Any] = {
    "name": "dcm2niix",
    "version": "1.0",
    "image": "xnat/dcm2niix:1.0",
    "command-line": "dcm2niix -o /out #SESSION#",
    "inputs": [{"name": "session", "replacement-key": "#SESSION#"}],
    "xnat": [
        {
            "name": WRAPPER,
            "description": "Convert a session to NIfTI",
            "contexts": ["xnat:imageSessionData"],
            "external-inputs": [{"name": "session", "type": "Session", "required": True}],
        },
        {
            "name": "qc-session",
            "contexts": ["xnat:imageSessionData"],
            "external-inputs": [{"name": "sess", "type": "Session", "required": True}],
        },
    ],
}


def _legacy(client: XNATClient, name: str, outcome: str = "Complete", **extra: Any) -> None:
    body = {"project": "P1", "name": name, "outcome": outcome, "datatype": "xnat:mrSessionData"}
    reply = client.post("/emulator/pipelines", json={**body, **extra})
    assert reply.status_code == 201, reply.text


def _install(client: XNATClient, *, enable_qc: bool = False) -> dict[str, int]:
    command_id = client.post("/xapi/commands", json=COMMAND).json()
    wrappers = {
        w["name"]: int(w["id"]) for w in client.get_json(f"/xapi/commands/{command_id}")["xnat"]
    }
    for name, wrapper_id in wrappers.items():
        client.put(f"/xapi/wrappers/{wrapper_id}/enabled")
        if name == WRAPPER or enable_qc:
            client.put(f"/xapi/projects/P1/wrappers/{wrapper_id}/enabled")
    return {"command": int(command_id), **wrappers}


def _outcomes(client: XNATClient, **outcomes: str) -> None:
    client.post("/emulator/containers/outcomes", json=outcomes)


@pytest.fixture
def experiment(mr_session: Callable[..., str]) -> str:
    return mr_session()


@pytest.fixture
def service(client: XNATClient) -> PipelineService:
    return PipelineService(client, correlation_timeout=1.0, correlation_interval=0.05)


def _wait_for_status(service: PipelineService, job_id: str, status: str) -> PipelineJob:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = service.status(job_id)
        if job.status == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {status}")


def test_list_and_get(client: XNATClient, service: PipelineService, experiment: str) -> None:
    _legacy(client, "DicomToNifti", description="Legacy converter")
    ids = _install(client)
    listed = service.list("P1")
    assert all(isinstance(p, Pipeline) for p in listed)
    assert [(p.kind, p.name) for p in listed] == [
        ("legacy", "DicomToNifti"),
        ("container", WRAPPER),
    ]
    legacy, wrapper = listed
    assert legacy.description == "Legacy converter" and legacy.datatype == "xnat:mrSessionData"
    assert wrapper.wrapper_id == ids[WRAPPER] and wrapper.command_id == ids["command"]
    assert wrapper["root_input"] == "session" and wrapper["image"] == "xnat/dcm2niix:1.0"
    site = service.list()
    assert {p.name: p["enabled"] for p in site} == {WRAPPER: True, "qc-session": True}
    assert service.get("DicomToNifti", "P1").kind == "legacy"
    assert service.get(WRAPPER, "P1").wrapper_id == ids[WRAPPER]
    with pytest.raises(ResourceNotFoundError, match="not enabled for project P1"):
        service.get("qc-session", "P1")
    with pytest.raises(ResourceNotFoundError, match="'nope'"):
        service.get("nope", "P1")
    with pytest.raises(ResourceNotFoundError):
        service.list("NOPE")


def test_ambiguous_names_need_a_kind(client: XNATClient, service: PipelineService) -> None:
    client.put("/data/projects/P1")
    _install(client)
    _legacy(client, WRAPPER)
    with pytest.raises(InvalidInputError, match="legacy:"):
        service.get(WRAPPER, "P1")
    assert service.get(f"legacy:{WRAPPER}", "P1").kind == "legacy"
    assert service.get(f"container:{WRAPPER}", "P1").kind == "container"


def test_legacy_run_complete(client: XNATClient, service: PipelineService, experiment: str) -> None:
    _legacy(client, "DicomToNifti")
    job = service.run("DicomToNifti", "SUB1_MR1", project="P1", params={"overwrite": True})
    assert job.job_id.startswith("workflow:") and job.kind == "workflow"
    assert (job.pipeline, job.experiment_id, job.project) == ("DicomToNifti", experiment, "P1")
    seen: list[PipelineJob] = []
    final = service.wait(job.job_id, timeout=10, poll_interval=0.05, progress_callback=seen.append)
    assert final.status == "Complete" and final.is_terminal and final["state"] is JobState.COMPLETE
    assert seen and seen[-1].status == "Complete"
    assert service.status(job.job_id).status == "Complete"


@pytest.mark.parametrize(
    ("outcome", "error", "status"),
    [("Failed", PipelineFailed, "Failed"), ("Killed", PipelineKilled, "Killed")],
)
def test_legacy_bad_endings(
    client: XNATClient,
    service: PipelineService,
    experiment: str,
    outcome: str,
    error: type[Exception],
    status: str,
) -> None:
    _legacy(client, "Broken", outcome)
    job = service.run("Broken", experiment)
    with pytest.raises(error) as caught:
        service.wait(job.job_id, timeout=10, poll_interval=0.05)
    assert getattr(caught.value, "target", None) == job.job_id
    assert getattr(caught.value, "status", None) == status
    assert f"ended {status} after" in str(caught.value) and "Broken on" in str(caught.value)
    if outcome == "Failed":
        assert "emulated failure" in str(caught.value)


def test_timeout_then_cancel_a_legacy_workflow(
    client: XNATClient, service: PipelineService, experiment: str
) -> None:
    _legacy(client, "Forever", "Hang")
    job = service.run("Forever", experiment, project="P1")
    started = time.monotonic()
    with pytest.raises(PipelineTimedOut) as caught:
        service.wait(job.job_id, timeout=0.5, poll_interval=0.1)
    assert 0.5 <= time.monotonic() - started < 5
    assert caught.value.target == job.job_id and caught.value.status == "Running"
    assert "after 0." in str(caught.value)
    assert service.cancel(job.job_id) is True
    assert service.status(job.job_id).status == "Killed"
    with pytest.raises(PipelineKilled):
        service.wait(job.job_id, timeout=5, poll_interval=0.05)
    assert service.cancel(job.job_id) is False


def test_container_run_complete(
    client: XNATClient, service: PipelineService, experiment: str
) -> None:
    ids = _install(client)
    job = service.run(WRAPPER, experiment, params={"extra": {"a": 1}})
    assert job.kind == "container" and job.job_id.startswith("workflow:")
    final = service.wait(job.job_id, timeout=10, poll_interval=0.05)
    assert final.status == "Complete" and final.container_id
    containers = client.get_json("/xapi/containers")
    assert len(containers) == 1 and containers[0]["wrapper-id"] == ids[WRAPPER]
    inputs = {i["name"]: i["value"] for i in containers[0]["inputs"]}
    assert inputs["session"] == f"/archive/experiments/{experiment}"
    assert inputs["extra"] == '{"a": 1}'
    as_container = service.status(f"container:{containers[0]['id']}")
    assert as_container.kind == "container" and as_container.pipeline == WRAPPER
    assert as_container.experiment_id == experiment and as_container.status == "Complete"


def test_container_failure(client: XNATClient, service: PipelineService, experiment: str) -> None:
    _install(client)
    _outcomes(client, **{WRAPPER: "Failed"})
    job = service.run(WRAPPER, experiment)
    with pytest.raises(PipelineFailed, match=r"ended Failed \(Running\)") as caught:
        service.wait(job.job_id, timeout=10, poll_interval=0.05)
    assert caught.value.status == "Failed (Running)"


def test_cancel_kills_the_container(
    client: XNATClient, service: PipelineService, experiment: str
) -> None:
    _install(client)
    _outcomes(client, **{WRAPPER: "Hang"})
    job = service.run(WRAPPER, experiment)
    running = _wait_for_status(service, job.job_id, "Running")
    assert running.container_id
    assert service.cancel(job.job_id) is True
    container = client.get_json("/xapi/containers")[0]
    assert container["status"] == "Killed"
    with pytest.raises(PipelineKilled):
        service.wait(job.job_id, timeout=5, poll_interval=0.05)
    assert service.cancel(f"container:{container['id']}") is False
    second = service.run(WRAPPER, experiment)
    _wait_for_status(service, second.job_id, "Running")
    container_id = client.get_json("/xapi/containers")[-1]["id"]
    assert service.cancel(f"container:{container_id}") is True
    assert service.status(second.job_id).status == "Killed"


def test_to_be_assigned_launch_is_correlated(
    client: XNATClient, service: PipelineService, experiment: str
) -> None:
    ids = _install(client)
    first = service.run(WRAPPER, experiment)
    service.wait(first.job_id, timeout=10, poll_interval=0.05)
    after = int(parse_job_id(first.job_id).ident)
    reply = client.post(
        f"/xapi/projects/P1/commands/{ids['command']}/wrappers/{WRAPPER}/launch",
        params={"session": experiment},
    ).json()
    assert reply["workflow-id"] == "To be assigned"
    pending = f"pending:container:{after}:{experiment}:{WRAPPER}"
    final = service.wait(pending, timeout=10, poll_interval=0.05)
    assert final.status == "Complete" and final.job_id != first.job_id
    assert int(parse_job_id(final.job_id).ident) > after
    never = f"pending:container:{after + 100}:{experiment}:{WRAPPER}"
    status = service.status(never)
    assert status.status == "To be assigned" and status["state"] is JobState.QUEUED
    with pytest.raises(PipelineTimedOut) as caught:
        service.wait(never, timeout=0.3, poll_interval=0.1)
    assert caught.value.status == "To be assigned"
    with pytest.raises(OperationError, match="no workflow yet"):
        service.cancel(never)


def test_refused_launches(
    xnat_emulator: XNATEmulator, client: XNATClient, service: PipelineService, experiment: str
) -> None:
    _install(client)
    _legacy(client, "DicomToNifti")
    launch = r"^POST /xapi/projects/P1/wrappers/\d+/root/session/launch$"
    body = '{"status": "failure", "message": "no backend"}'
    xnat_emulator.add_fault(launch, "error_body", body=body, times=1)
    with pytest.raises(PipelineFailed, match="no backend"):
        service.run(WRAPPER, experiment)
    xnat_emulator.add_fault(launch, "status", status=500, body="There was an error", times=1)
    with pytest.raises(PipelineFailed, match="refused"):
        service.run(WRAPPER, experiment)
    legacy = r"^POST /data/projects/P1/pipelines/DicomToNifti/experiments/"
    xnat_emulator.add_fault(legacy, "error_body", body="Error: engine missing", times=1)
    with pytest.raises(PipelineFailed, match="engine missing"):
        service.run("DicomToNifti", experiment)


def test_lost_launch_reply_is_not_resent(
    xnat_emulator: XNATEmulator, client: XNATClient, service: PipelineService, experiment: str
) -> None:
    _legacy(client, "DicomToNifti")
    legacy = r"^POST /data/projects/P1/pipelines/DicomToNifti/experiments/"
    rule = xnat_emulator.add_fault(legacy, "truncate", times=1)
    job = service.run("DicomToNifti", experiment)
    assert rule.fired == 1 and job.job_id.startswith("workflow:")
    jobs = service.list_jobs(experiment_id=experiment)
    assert [j.job_id for j in jobs] == [job.job_id]


def test_list_jobs(client: XNATClient, service: PipelineService, experiment: str) -> None:
    _legacy(client, "DicomToNifti")
    _legacy(client, "Broken", "Failed")
    _install(client)
    done = service.run("DicomToNifti", experiment)
    broken = service.run("Broken", experiment)
    boxed = service.run(WRAPPER, experiment)
    for job in (done, boxed):
        service.wait(job.job_id, timeout=10, poll_interval=0.05)
    with pytest.raises(PipelineFailed):
        service.wait(broken.job_id, timeout=10, poll_interval=0.05)
    jobs = service.list_jobs(experiment_id=experiment)
    kinds = {(j.kind, j.pipeline, j.status) for j in jobs}
    assert kinds == {
        ("workflow", "DicomToNifti", "Complete"),
        ("workflow", "Broken", "Failed"),
        ("container", WRAPPER, "Complete"),
    }
    container_job = next(j for j in jobs if j.kind == "container")
    assert container_job.job_id.startswith("container:")
    assert container_job.workflow_id == parse_job_id(boxed.job_id).ident
    assert [j.pipeline for j in service.list_jobs(experiment_id=experiment, status="failed")] == [
        "Broken"
    ]
    assert len(service.list_jobs(project="P1", status="Complete")) == 2
    assert len(service.list_jobs(experiment_id="SUB1_MR1", project="P1", limit=1)) == 1
    assert len(service.list_jobs()) >= 1
    with pytest.raises(InvalidInputError):
        service.list_jobs(limit=0)


def test_bad_inputs(client: XNATClient, service: PipelineService, experiment: str) -> None:
    for bad in ("nope", "workflow:abc", "pending:x:1:E:P", 5):
        with pytest.raises(InvalidInputError):
            service.status(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="timeout"):
        service.wait("workflow:1", timeout=0)
    with pytest.raises(InvalidInputError, match="params"):
        service.run("x", experiment, params="a=b")  # type: ignore[arg-type]
    with pytest.raises(ResourceNotFoundError):
        service.run("x", "XNAT_E99999")
    with pytest.raises(ResourceNotFoundError):
        service.status("workflow:999999")
    with pytest.raises(InvalidInputError):
        PipelineService(client, correlation_interval=0)


def test_job_states() -> None:
    assert job_state("Failed (Staging)") is JobState.FAILED
    assert job_state("_Queued") is JobState.QUEUED
    assert job_state("Finalizing") is JobState.RUNNING
    assert job_state("Complete") is JobState.COMPLETE
    assert job_state("Killed") is JobState.KILLED
    assert job_state(None) is JobState.QUEUED
    ref = parse_job_id("pending:workflow:12:XNAT_E00001:my:pipe")
    assert (ref.after, ref.experiment_id, ref.pipeline) == (12, "XNAT_E00001", "my:pipe")
    assert str(ref) == "pending:workflow:12:XNAT_E00001:my:pipe"


def test_unique_workflow_lookup(
    client: XNATClient, service: PipelineService, experiment: str
) -> None:
    _legacy(client, "DicomToNifti")
    job = service.run("DicomToNifti", experiment)
    workflow_id = parse_job_id(job.job_id).ident
    fields = client.get_item(f"/data/workflows/{workflow_id}")["items"][0]["data_fields"]
    row = {"id": experiment, "PIPELINE_NAME": "DicomToNifti", "launch_time": fields["launch_time"]}
    found = find_unique_workflow(client, row)
    assert found is not None and found.workflow_id == workflow_id
    assert find_unique_workflow(client, {**row, "launch_time": "2001-01-01 00:00:00.0"}) is None
    assert find_unique_workflow(client, {"id": experiment}) is None
