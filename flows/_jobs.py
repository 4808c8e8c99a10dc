"""Remote pipeline jobs launched by a flow run, so a cancelled run can kill them.

Each launch is recorded twice, keyed by the flow run id:

* in memory, with the live credentials (used when the cancellation is seen in the process that
  launched the jobs);
* in a Prefect Variable ``xnat_jobs_<flow run id>`` holding the job ids and how to load the
  credentials (a saved block's name or id), because a worker's runner executes
  ``on_cancellation`` hooks in its own process after killing the flow's process.

:func:`cancel_launched_jobs` is the flow's ``on_cancellation`` hook; :func:`cancel_jobs` does
the work for both paths. The Variable is deleted when the run ends normally.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.variables import Variable

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import XNATError
from xnat_prefect.flows._common import variable_name
from xnat_prefect.services.pipelines import PipelineService
from xnat_prefect.tasks._common import xnat_client

__all__ = [
    "JobRecord",
    "cancel_jobs",
    "cancel_launched_jobs",
    "credentials_ref",
    "forget_run",
    "jobs_of",
    "record_job",
    "registry_variable",
    "remove_job",
]

LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()


@dataclass
class JobRecord:
    """A flow run's launched jobs and the credentials to reach them.

    Attributes:
        credentials: Live credentials (in the launching process only).
        ref: How to load them elsewhere: a block name, or ``{"$ref": ...}``; None if unsaved.
        jobs: Job id -> session.

    Example:
        ```python
        JobRecord(credentials, "BLOCK_NAME", {"workflow:12": "XNAT_E00001"})
        ```
    """

    credentials: XNATCredentials | None
    ref: Any
    jobs: dict[str, str] = field(default_factory=dict)


_RUNS: dict[UUID, JobRecord] = {}


def registry_variable(flow_run_id: UUID) -> str:
    """Name of the Prefect Variable holding a flow run's launched jobs.

    Args:
        flow_run_id: The flow run.

    Returns:
        ``xnat_jobs_<hex id>``.

    Example:
        ```python
        registry_variable(flow_run_id)  # 'xnat_jobs_3f2a...'
        ```
    """
    return variable_name("xnat_jobs", flow_run_id.hex)


def credentials_ref(credentials: XNATCredentials | str) -> Any:
    """How another process can load these credentials (None for an unsaved block).

    Args:
        credentials: The flow's ``credentials`` parameter.

    Returns:
        The block name, ``{"$ref": {"block_document_id": ...}}``, or None.

    Example:
        ```python
        credentials_ref(XNATCredentials.load("BLOCK_NAME"))  # {"$ref": {...}}
        ```
    """
    if isinstance(credentials, str):
        return credentials
    document_id = getattr(credentials, "_block_document_id", None)
    return {"$ref": {"block_document_id": str(document_id)}} if document_id else None


def _persist(flow_run_id: UUID, record: JobRecord) -> None:
    value: dict[str, Any] = {"credentials": record.ref, "jobs": record.jobs}
    try:
        Variable.set(registry_variable(flow_run_id), value, overwrite=True)
    except Exception as exc:  # the in-memory record still lets this process cancel
        LOG.warning("could not record launched jobs in a Prefect Variable: %s", exc)


def record_job(
    flow_run_id: UUID,
    credentials: XNATCredentials,
    ref: Any,
    job_id: str,
    session: str,
) -> None:
    """Remember a launched job of a flow run (memory and Prefect Variable).

    Args:
        flow_run_id: The flow run.
        credentials: Live credentials.
        ref: See :func:`credentials_ref`.
        job_id: The job id (``workflow:N``...).
        session: The session it runs on.

    Example:
        ```python
        record_job(run_id, credentials, "BLOCK_NAME", "workflow:12", "XNAT_E00001")
        ```
    """
    with _LOCK:
        record = _RUNS.setdefault(flow_run_id, JobRecord(credentials, ref))
        record.jobs[job_id] = session
        _persist(flow_run_id, record)


def remove_job(flow_run_id: UUID, job_id: str) -> None:
    """Forget a job that ended.

    Args:
        flow_run_id: The flow run.
        job_id: The job id.

    Example:
        ```python
        remove_job(run_id, "workflow:12")
        ```
    """
    with _LOCK:
        record = _RUNS.get(flow_run_id)
        if record is not None and record.jobs.pop(job_id, None) is not None:
            _persist(flow_run_id, record)


def jobs_of(flow_run_id: UUID) -> dict[str, str]:
    """Jobs still recorded for a flow run (memory, else the Prefect Variable).

    Args:
        flow_run_id: The flow run.

    Returns:
        Job id -> session.

    Example:
        ```python
        jobs_of(run_id)  # {"workflow:12": "XNAT_E00001"}
        ```
    """
    with _LOCK:
        record = _RUNS.get(flow_run_id)
        if record is not None:
            return dict(record.jobs)
    stored = Variable.get(registry_variable(flow_run_id), default=None)
    jobs = stored.get("jobs") if isinstance(stored, dict) else None
    return {str(k): str(v) for k, v in jobs.items()} if isinstance(jobs, dict) else {}


def forget_run(flow_run_id: UUID) -> None:
    """Drop a flow run's record and delete its Variable (the run ended).

    Args:
        flow_run_id: The flow run.

    Example:
        ```python
        forget_run(run_id)
        ```
    """
    with _LOCK:
        _RUNS.pop(flow_run_id, None)
    try:
        with get_client(sync_client=True) as client:
            client.delete_variable_by_name(registry_variable(flow_run_id))
    except Exception as exc:  # nothing left to cancel either way
        LOG.debug("no job registry to delete for %s: %s", flow_run_id, exc)


def _load_credentials(flow_run_id: UUID, parameters: dict[str, Any]) -> XNATCredentials | None:
    with _LOCK:
        record = _RUNS.get(flow_run_id)
        if record is not None and record.credentials is not None:
            return record.credentials
    stored = Variable.get(registry_variable(flow_run_id), default=None)
    ref = stored.get("credentials") if isinstance(stored, dict) else None
    ref = ref or parameters.get("credentials")
    if isinstance(ref, XNATCredentials):
        return ref
    if isinstance(ref, str) and ref:
        return cast(XNATCredentials, XNATCredentials.load(ref))
    if isinstance(ref, dict) and isinstance(ref.get("$ref"), dict):
        return cast(XNATCredentials, XNATCredentials.load_from_ref(ref["$ref"]))
    return None


def cancel_jobs(flow_run_id: UUID, parameters: dict[str, Any] | None = None) -> list[str]:
    """Cancel every job still recorded for a flow run, then forget them.

    Args:
        flow_run_id: The flow run.
        parameters: The run's parameters (to find saved credentials in another process).

    Returns:
        Job ids XNAT confirmed cancelled (jobs already ended are skipped).

    Example:
        ```python
        cancel_jobs(run_id, {"credentials": "BLOCK_NAME"})
        ```
    """
    jobs = jobs_of(flow_run_id)
    if not jobs:
        forget_run(flow_run_id)
        return []
    credentials = _load_credentials(flow_run_id, parameters or {})
    if credentials is None:
        LOG.error(
            "flow run %s launched jobs %s but its credentials are not a saved block; cancel "
            "them in XNAT by hand",
            flow_run_id,
            ", ".join(jobs),
        )
        return []
    cancelled = []
    with xnat_client(credentials) as client:
        service = PipelineService(client)
        for job_id, session in jobs.items():
            try:
                if service.cancel(job_id):
                    cancelled.append(job_id)
                    LOG.warning("cancelled pipeline job %s on %s", job_id, session)
            except XNATError as exc:
                LOG.error("could not cancel pipeline job %s on %s: %s", job_id, session, exc)
    forget_run(flow_run_id)
    return cancelled


def cancel_launched_jobs(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """``on_cancellation`` hook: kill the remote jobs the cancelled run launched.

    Args:
        flow: The flow.
        flow_run: The cancelled run.
        state: Its Cancelling state.

    Example:
        ```python
        @flow(on_cancellation=[cancel_launched_jobs])
        def my_flow() -> None: ...
        ```
    """
    cancelled = cancel_jobs(flow_run.id, dict(flow_run.parameters or {}))
    LOG.warning("flow run %s cancelled; %d remote job(s) killed", flow_run.id, len(cancelled))
