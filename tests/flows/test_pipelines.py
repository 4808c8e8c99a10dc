"""``run_pipeline_and_wait``: Complete, Failed, timeout, and cancellation killing remote jobs."""

from __future__ import annotations

import threading
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Cancelling
from prefect.variables import Variable

from tests._shared import container_outcomes, install_command, session_command
from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import PipelineFailed, PipelineTimedOut
from xnat_prefect.flows import run_pipeline_and_wait
from xnat_prefect.flows._jobs import cancel_launched_jobs, registry_variable

COMMAND = session_command("dcm2niix", command_line="dcm2niix -o /out #SESSION#")
FAST = {"max_wait_seconds": 20.0, "poll_interval_seconds": 0.1}


def _sessions(lab: Any, count: int) -> list[str]:
    lab.project("P1")
    ids = []
    for n in range(1, count + 1):
        reply = lab.rest.put(
            f"/data/projects/P1/subjects/S{n}/experiments/S{n}_MR1",
            params={"xsiType": "xnat:mrSessionData"},
        )
        assert reply.status_code == 201, reply.text
        ids.append(reply.text.strip())
    return ids


def _wrapper(lab: Any, outcome: str) -> int:
    _, wrapper_id = install_command(lab.rest, COMMAND)
    container_outcomes(lab.emulator, {"default": outcome})
    return wrapper_id


def _legacy(lab: Any, outcome: str) -> None:
    body = {"project": "P1", "name": "DicomToNifti", "outcome": outcome}
    reply = httpx.post(f"{lab.emulator.url}/emulator/pipelines", json=body)
    assert reply.status_code == 201, reply.text


def _containers(lab: Any) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = lab.rest.get("/xapi/containers").json()
    return containers


def test_container_wrapper_completes_on_every_session(creds: XNATCredentials, lab: Any) -> None:
    sessions = _sessions(lab, 2)
    _wrapper(lab, "Complete")
    run = run_pipeline_and_wait(creds, "dcm2niix-session", sessions, **FAST)
    assert run.succeeded == sessions and run.failed == []
    assert [r.experiment_id for r in run.results] == sessions
    assert all(r.container_id and r.status == "Complete" for r in run.results)
    assert sorted(c["status"] for c in _containers(lab)) == ["Complete", "Complete"]


def test_failed_legacy_pipeline_is_pipeline_failed(creds: XNATCredentials, lab: Any) -> None:
    sessions = _sessions(lab, 1)
    _legacy(lab, "Failed")
    with pytest.raises(PipelineFailed) as caught:
        run_pipeline_and_wait(creds, "DicomToNifti", sessions, kind="legacy", **FAST)
    assert caught.value.status and caught.value.status.startswith("Failed")
    assert caught.value.target and caught.value.target.startswith("workflow:")


def test_hanging_job_times_out_and_is_cancelled(creds: XNATCredentials, lab: Any) -> None:
    sessions = _sessions(lab, 1)
    _legacy(lab, "Hang")
    with pytest.raises(PipelineTimedOut) as caught:
        run_pipeline_and_wait(
            creds, "DicomToNifti", sessions, max_wait_seconds=1.0, poll_interval_seconds=0.1
        )
    assert "cancelled in XNAT" in caught.value.message
    workflow = caught.value.target.split(":", 1)[1]  # type: ignore[union-attr]
    doc = lab.rest.get(f"/data/workflows/{workflow}", params={"format": "json"}).json()
    assert doc["items"][0]["data_fields"]["status"] == "Killed"


def _running_flow_run(name: str) -> FlowRun:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
            flow_run_filter=FlowRunFilter(),
        )
    running = [r for r in runs if r.state is not None and r.state.is_running()]
    assert running, "no running flow run"
    return running[0]


def test_cancelling_the_flow_run_kills_the_remote_container(
    creds: XNATCredentials, lab: Any
) -> None:
    sessions = _sessions(lab, 1)
    _wrapper(lab, "Hang")
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["state"] = run_pipeline_and_wait(
            creds, "dcm2niix-session", sessions, return_state=True, **FAST
        )

    worker = threading.Thread(target=run)
    worker.start()
    try:
        lab.wait_for(lambda: [c for c in _containers(lab) if c["status"] == "Running"], 20)
        flow_run = _running_flow_run("xnat-run-pipeline-and-wait")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
    finally:
        worker.join(30)
    state: State[Any] = outcome["state"]
    assert state.type == StateType.CANCELLED
    assert [c["status"] for c in _containers(lab)] == ["Killed"]
    assert Variable.get(registry_variable(flow_run.id), default=None) is None


def test_cancellation_hook_kills_jobs_recorded_by_another_process(
    creds: XNATCredentials, lab: Any
) -> None:
    sessions = _sessions(lab, 1)
    wrapper_id = _wrapper(lab, "Hang")
    creds.save("xnat-flows-cancel-test", overwrite=True)
    report = lab.rest.post(
        f"/xapi/projects/P1/wrappers/{wrapper_id}/root/session/launch",
        json={"session": sessions[0]},
    ).json()
    lab.wait_for(lambda: [c for c in _containers(lab) if c["status"] == "Running"], 20)
    flow_run = FlowRun(
        id=uuid4(),
        flow_id=uuid4(),
        name="cancelled-elsewhere",
        parameters={"credentials": "xnat-flows-cancel-test", "sessions": sessions},
    )
    job = f"workflow:{report['workflow-id']}"
    Variable.set(
        registry_variable(flow_run.id),
        {"credentials": "xnat-flows-cancel-test", "jobs": {job: sessions[0]}},
        overwrite=True,
    )
    cancel_launched_jobs(run_pipeline_and_wait, flow_run, Cancelling())
    assert [c["status"] for c in _containers(lab)] == ["Killed"]
    assert Variable.get(registry_variable(flow_run.id), default=None) is None
