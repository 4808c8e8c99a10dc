"""Job ids, job states and workflow look-ups shared by :class:`PipelineService`.

Job ids say what to poll:

* ``workflow:{wrk_workflowData_id}`` — a workflow (legacy pipeline runs, and Container Service
  launches, whose workflow ``comments`` hold the container id once it exists);
* ``container:{id}`` — a Container Service container (database id or container id);
* ``pending:{engine}:{after}:{experiment}:{pipeline}`` — a launch XNAT had not yet given a
  workflow (``"workflow-id": "To be assigned"``, or a legacy launch whose workflow was not
  written yet). It is resolved on each status read: the first workflow for that experiment and
  pipeline with an id above ``after`` (the highest id seen before the launch).

Workflows are listed with ``GET /data/services/workflows/{pipeline}?experiment=E&display=ALL``
(XNAT's ``WorkflowsRestlet``: a table of every matching workflow). The xpath form
``GET /data/workflows?wrk:workflowData/id=..`` is not used for that: XNAT resolves it with
``getUniqueWorkflow``, which also matches ``launch_time`` (``IS NULL`` when not given) and
returns at most one row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, ResourceNotFoundError, UnexpectedResponseError
from xnat_prefect.models._resultset import parse_item_document, parse_result_set
from xnat_prefect.models.workflow import Workflow

__all__ = [
    "TERMINAL_STATES",
    "JobRef",
    "JobState",
    "find_unique_workflow",
    "job_state",
    "list_workflows",
    "looks_like_container_id",
    "parse_job_id",
    "pipeline_matches",
    "workflow_from_fields",
    "workflow_job_fields",
]

Engine = Literal["workflow", "container"]


class JobState(StrEnum):
    """Where a job is, whatever the engine's own status text says."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    KILLED = "killed"


TERMINAL_STATES = frozenset({JobState.COMPLETE, JobState.FAILED, JobState.KILLED})
_QUEUED = ("queued", "_queued", "staging", "created", "waiting", "_waiting", "to be assigned")


def job_state(status: str | None) -> JobState:
    """Map XNAT's workflow/container status text to a :class:`JobState`.

    ``Complete*`` → COMPLETE; ``Failed*`` (``Failed (Staging)``...) → FAILED; ``Killed*`` →
    KILLED; ``Queued``, ``_Queued``, ``Staging``, ``Created``, ``Waiting`` and an empty status →
    QUEUED; anything else (``Running``, ``In Progress``, ``Finalizing``...) → RUNNING.

    Args:
        status: The status text.

    Returns:
        The state.

    Example:
        ```python
        job_state("Failed (Running)")  # JobState.FAILED
        ```
    """
    text = (status or "").strip().lower()
    for prefix, state in (
        ("complete", JobState.COMPLETE),
        ("failed", JobState.FAILED),
        ("killed", JobState.KILLED),
    ):
        if text.startswith(prefix):
            return state
    if not text or text.startswith(_QUEUED):
        return JobState.QUEUED
    return JobState.RUNNING


@dataclass(frozen=True)
class JobRef:
    """A parsed job id.

    Attributes:
        handle: ``workflow``, ``container`` or ``pending``.
        ident: Workflow id, container id, or "" for pending launches.
        engine: Engine of a pending launch (``workflow`` = legacy, ``container`` = CS).
        after: Highest workflow id seen before a pending launch.
        experiment_id: Experiment of a pending launch.
        pipeline: Pipeline / wrapper name of a pending launch.
    """

    handle: Literal["workflow", "container", "pending"]
    ident: str = ""
    engine: Engine = "workflow"
    after: int = 0
    experiment_id: str = ""
    pipeline: str = ""

    def __str__(self) -> str:
        if self.handle == "pending":
            return f"pending:{self.engine}:{self.after}:{self.experiment_id}:{self.pipeline}"
        return f"{self.handle}:{self.ident}"


_ID_TEXT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def parse_job_id(job_id: Any) -> JobRef:
    """Parse a job id (see the module docstring for the forms).

    Args:
        job_id: The id returned by ``run()`` or ``list_jobs()``.

    Returns:
        The reference.

    Raises:
        InvalidInputError: Not one of the known forms.

    Example:
        ```python
        parse_job_id("workflow:123").ident  # '123'
        ```
    """
    hint = (
        "job ids look like 'workflow:123', 'container:45' or 'pending:...' (as returned by "
        "run() or list_jobs())"
    )
    if not isinstance(job_id, str):
        raise InvalidInputError(f"job_id={job_id!r} is not a string; {hint}")
    kind, _, rest = job_id.strip().partition(":")
    if kind == "workflow" and rest.isdigit():
        return JobRef("workflow", rest)
    if kind == "container" and _ID_TEXT.match(rest):
        return JobRef("container", rest)
    if kind == "pending":
        parts = rest.split(":", 3)
        if len(parts) == 4 and parts[0] in ("workflow", "container") and parts[1].isdigit():
            engine: Engine = "container" if parts[0] == "container" else "workflow"
            if parts[2] and parts[3]:
                return JobRef("pending", "", engine, int(parts[1]), parts[2], parts[3])
    raise InvalidInputError(f"job_id={job_id!r} is not valid; {hint}")


_CONTAINER_ID = re.compile(r"^(?:[0-9a-f]{12}|[0-9a-f]{64}|[0-9a-z]{25})$")


def looks_like_container_id(text: str | None) -> bool:
    """Whether a workflow's ``comments`` hold a Docker container / Swarm service id.

    Args:
        text: The comments.

    Returns:
        True for 12/64 hex characters or a 25-character Swarm id.
    """
    return bool(text) and _CONTAINER_ID.match(str(text).strip()) is not None


_KEYS = {
    key.lower(): key
    for key in (
        "wrk_workflowData_id",
        "ID",
        "data_type",
        "externalID",
        "pipeline_name",
        "launch_time",
        "status",
        "current_step_id",
        "step_description",
        "percentageComplete",
        "comments",
        "details",
        "jobID",
        "justification",
        "create_user",
    )
}


def workflow_from_fields(fields: Mapping[str, Any]) -> Workflow:
    """A :class:`Workflow` from item fields or a table row, whatever the key case.

    XNAT spells the same fields ``externalID``/``ExternalID``/``externalid`` and
    ``wrk_workflowData_id``/``wrk_workflowdata_id`` depending on the route.

    Args:
        fields: Flattened item or table row.

    Returns:
        The workflow.
    """
    normalized: dict[str, Any] = {}
    for key, value in fields.items():
        canonical = _KEYS.get(str(key).lower())
        if canonical is not None and (canonical not in normalized or value not in ("", None)):
            normalized[canonical] = value
    return Workflow.model_validate(normalized)


def pipeline_matches(stored: str | None, wanted: str) -> bool:
    """Whether a workflow's ``pipeline_name`` is the pipeline asked for.

    Legacy workflows may store the descriptor path (``/pipelines/catalog/X/DicomToNifti.xml``).

    Args:
        stored: The workflow's ``pipeline_name``.
        wanted: The pipeline / wrapper name.

    Returns:
        True for the same name (case-insensitive), or the same file name without ``.xml``.
    """
    if not stored:
        return False
    name = stored.strip().rsplit("/", 1)[-1]
    name = name[:-4] if name.lower().endswith(".xml") else name
    return wanted.lower() in (stored.strip().lower(), name.lower())


def list_workflows(
    client: XNATClient,
    pipeline: str,
    *,
    experiment: str | None = None,
    project: str | None = None,
) -> list[Workflow]:
    """The workflows of one pipeline (``GET /data/services/workflows/{pipeline}``).

    Args:
        client: The client.
        pipeline: Pipeline / wrapper name (matched again client-side; XNAT matches ``LIKE``).
        experiment: Experiment accession ID.
        project: Project ID.

    Returns:
        The matching workflows. Rows without a workflow id (XNAT's table without
        ``experiment=`` lacks it) are completed with :func:`find_unique_workflow`, else dropped.
    """
    params = {"experiment": experiment, "project": project, "display": "ALL", "format": "json"}
    path = f"/data/services/workflows/{quote(pipeline, safe='')}"
    try:
        payload = client.get_json(path, params)
    except ResourceNotFoundError:
        return []
    if isinstance(payload, dict) and isinstance(payload.get("items"), list):
        rows: list[Mapping[str, Any]] = [parse_item_document(payload)] if payload["items"] else []
    else:
        rows = list(parse_result_set(payload))
    found = []
    for row in rows:
        workflow = workflow_from_fields(row)
        if not pipeline_matches(workflow.pipeline_name, pipeline):
            continue
        if not workflow.workflow_id:
            workflow = find_unique_workflow(client, row) or workflow
        if workflow.workflow_id:
            found.append(workflow)
    return found


def find_unique_workflow(client: XNATClient, row: Mapping[str, Any]) -> Workflow | None:
    """Look one workflow up by item ID, pipeline name and launch time (XNAT's unique key).

    ``GET /data/workflows?format=json&wrk:workflowData/id=..&.../pipeline_name=..&
    .../launch_time=..`` (``WorkflowUtils.getUniqueWorkflow``); the launch time is sent exactly
    as XNAT printed it.

    Args:
        client: The client.
        row: A workflow row with ``id``, ``pipeline_name`` and ``launch_time`` (any key case).

    Returns:
        The workflow, or None when the row lacks a key or XNAT finds nothing.
    """
    raw = {str(k).lower(): v for k, v in row.items()}
    keys = ("id", "pipeline_name", "launch_time")
    if not all(raw.get(k) for k in keys):
        return None
    params = {f"wrk:workflowData/{k}": str(raw[k]) for k in keys}
    try:
        document = client.get_item("/data/workflows", params)
    except (ResourceNotFoundError, UnexpectedResponseError):
        return None
    try:
        return workflow_from_fields(parse_item_document(document))
    except ValueError:
        return None


def workflow_job_fields(workflow: Workflow) -> dict[str, Any]:
    """Job fields of a workflow (``PipelineJob`` keys).

    Args:
        workflow: The workflow.

    Returns:
        Keys ``job_id``, ``kind``, ``pipeline``... ready for ``PipelineJob.model_validate``.
    """
    container = workflow.comments if looks_like_container_id(workflow.comments) else None
    return {
        "job_id": f"workflow:{workflow.workflow_id}",
        "kind": "container" if container else "workflow",
        "pipeline": workflow.pipeline_name,
        "experiment_id": workflow.data_id,
        "project": workflow.external_id,
        "status": workflow.status,
        "launch_time": workflow.launch_time,
        "container_id": container,
        "workflow_id": workflow.workflow_id,
        "details": workflow.details or workflow.step_description,
        "state": job_state(workflow.status),
    }
