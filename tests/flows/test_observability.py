"""What the flows leave in Prefect: redacted logs, artifacts and events without patient data."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from pydantic import SecretStr

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.flows import EVENT_SESSION_ARCHIVED, ingest_dicom
from xnat_prefect.flows._common import artifact_key, run_logger
from xnat_prefect.tasks._common import xnat_client

SECRET = "Up-S3cret-9!"


@task
def leak_in_task(credentials: XNATCredentials) -> None:
    assert credentials.password is not None
    run_logger().info("task: password is %s", credentials.password.get_secret_value())


@flow
def leaky(credentials: XNATCredentials) -> None:
    assert credentials.password is not None
    with xnat_client(credentials) as client:  # logging in registers the secrets
        client.get("/data/projects")
    run_logger().info("flow: password is %s", credentials.password.get_secret_value())
    leak_in_task(credentials)


def _api_logs(flow_run_id: UUID, expected: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    messages: list[str] = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        messages = [log.message for log in logs]
        if sum("password is" in m for m in messages) >= expected:
            return messages
        time.sleep(0.2)
    return messages


def test_secrets_never_reach_the_prefect_api(lab: Any) -> None:
    lab.emulator.add_user("uploader", SECRET, admin=True)
    creds = XNATCredentials(url=lab.emulator.url, username="uploader", password=SecretStr(SECRET))
    state = leaky(creds, return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    messages = _api_logs(flow_run_id, expected=2)
    leaks = [m for m in messages if "password is" in m]
    assert len(leaks) == 2 and all(m.endswith("password is ***") for m in leaks)
    encoded = base64.b64encode(f"uploader:{SECRET}".encode()).decode()
    assert not [m for m in messages if SECRET in m or encoded in m]


def test_ingest_artifacts_and_event_carry_no_patient_data(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study(subject="SUBJ05", session="SUBJ05_MR1")
    result = ingest_dicom(
        creds,
        str(folder),
        transport="gradual",
        project="P1",
        subject="SUBJ05",
        session="SUBJ05_MR1",
        batches=1,
        **fast,
    )
    assert result.experiment_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(
                    any_=[
                        artifact_key("xnat-ingest", "P1", "SUBJ05_MR1"),
                        artifact_key("xnat-ingest-report", "P1", "SUBJ05_MR1"),
                    ]
                )
            )
        )
    kinds = {a.type: a for a in artifacts}
    assert kinds["progress"].data == 100.0
    table = str(kinds["table"].data)
    rows = json.loads(table)
    assert {(r["experiment"], r["scan"], r["archived_files"], r["ok"]) for r in rows} == {
        (result.experiment_id, "1", 3, True),
        (result.experiment_id, "2", 3, True),
    }
    # the synthetic study's Patient Name is SYNTH^SUBJ05 and its Patient ID PID_SUBJ05_MR1
    resource = f"xnat.session.{creds.server_key}.{result.experiment_id}"
    deadline, events = time.monotonic() + 15, list[Any]()
    while not events and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            events = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[EVENT_SESSION_ARCHIVED]),
                    resource=EventResourceFilter(id=[resource]),
                ),
                limit=5,
            ).events
        time.sleep(0.2)
    assert len(events) == 1
    payload = events[0].payload
    assert payload["session_label"] == "SUBJ05_MR1" and payload["subject_id"] == result.subject_id
    for text in (table, str(payload), str(events[0].resource)):
        assert "SYNTH" not in text and "PID_" not in text
