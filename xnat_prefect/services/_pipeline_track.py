"""Reading and steering pipeline jobs for :class:`PipelineService`.

:class:`JobTracker` turns job ids (see :mod:`._pipeline_jobs`) into :class:`PipelineJob`
models, finds the workflow a launch created (launches without a workflow id), finds the
container of a Container Service workflow and kills containers.
"""

from __future__ import annotations

import time
from datetime import datetime

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    PipelineFailed,
    PipelineKilled,
    ResourceNotFoundError,
)
from xnat_prefect.models._resultset import parse_item_document
from xnat_prefect.models.container import Container
from xnat_prefect.models.pipeline import PipelineJob
from xnat_prefect.models.workflow import Workflow
from xnat_prefect.services import _pipeline_cs as cs
from xnat_prefect.services._pipeline_jobs import (
    JobRef,
    JobState,
    job_state,
    list_workflows,
    workflow_from_fields,
    workflow_job_fields,
)
from xnat_prefect.services._validation import segment
from xnat_prefect.services.base import not_found

__all__ = ["UNASSIGNED", "JobTracker", "final_job", "launch_sort_key", "status_matches"]

logger = get_logger(__name__)

UNASSIGNED = "To be assigned"


class JobTracker:
    """Status reads, launch correlation and kills over one client.

    Args:
        client: The client.
        correlation_timeout: Seconds to keep looking for the workflow of a launch.
        correlation_interval: Pause between look-ups.
    """

    def __init__(
        self, client: XNATClient, correlation_timeout: float, correlation_interval: float
    ) -> None:
        self.client = client
        self.correlation_timeout = correlation_timeout
        self.correlation_interval = correlation_interval
        self.wrapper_names: dict[int, str] | None = None

    def load_wrappers(self) -> list[cs.Wrapper]:
        """The site's wrappers (and remember their names by id).

        Returns:
            ``(command, wrapper)`` pairs (empty without the Container Service).
        """
        found = cs.list_wrappers(self.client) or []
        self.wrapper_names = {int(w["id"]): str(w["name"]) for _, w in found if w.get("id")}
        return found

    def wrapper_name(self, wrapper_id: int | None) -> str | None:
        """The name of a wrapper (one ``/xapi/commands`` read per tracker).

        Args:
            wrapper_id: Wrapper id.

        Returns:
            The name, or None.
        """
        if self.wrapper_names is None:
            self.load_wrappers()
        return (self.wrapper_names or {}).get(wrapper_id if wrapper_id is not None else -1)

    # --- workflows of a launch ------------------------------------------------------------------

    def last_workflow_id(self, experiment: str, name: str) -> int:
        """The highest workflow id of a pipeline on an experiment (0 when none).

        Args:
            experiment: Experiment accession ID.
            name: Pipeline / wrapper name.

        Returns:
            The id.
        """
        found = list_workflows(self.client, name, experiment=experiment)
        return max((int(w.workflow_id or 0) for w in found), default=0)

    def first_new_workflow(self, experiment: str, name: str, after: int) -> Workflow | None:
        """The oldest workflow of a pipeline on an experiment with an id above ``after``.

        Args:
            experiment: Experiment accession ID.
            name: Pipeline / wrapper name.
            after: Highest id seen before the launch.

        Returns:
            The workflow, or None.
        """
        found = list_workflows(self.client, name, experiment=experiment)
        fresh = [w for w in found if int(w.workflow_id or 0) > after]
        return min(fresh, key=lambda w: int(w.workflow_id or 0), default=None)

    def correlate(self, experiment: str, name: str, after: int) -> Workflow | None:
        """Look for the workflow of a launch until found or ``correlation_timeout`` passes.

        Args:
            experiment: Experiment accession ID.
            name: Pipeline / wrapper name.
            after: Highest id seen before the launch.

        Returns:
            The workflow, or None.
        """
        deadline = time.monotonic() + self.correlation_timeout
        while True:
            found = self.first_new_workflow(experiment, name, after)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(self.correlation_interval)

    # --- status ---------------------------------------------------------------------------------

    def workflow_job(self, workflow_id: str, *, engine: str | None = None) -> PipelineJob:
        """The job view of a workflow (``GET /data/workflows/{id}?format=json``).

        Args:
            workflow_id: ``wrk_workflowData_id``.
            engine: ``container`` when the caller knows it is a Container Service launch.

        Returns:
            The job.

        Raises:
            ResourceNotFoundError: Unknown or invisible workflow.
        """
        path = f"/data/workflows/{segment(workflow_id, 'job_id')}"
        try:
            document = self.client.get_item(path)
        except ResourceNotFoundError as exc:
            message = f"workflow {workflow_id} was not found (or is not visible)"
            raise not_found(message, exc) from exc
        fields = workflow_job_fields(workflow_from_fields(parse_item_document(document)))
        if engine == "container":
            fields["kind"] = "container"
        return PipelineJob.model_validate(fields)

    def container_job(self, container_id: str) -> PipelineJob:
        """The job view of a container (``GET /xapi/containers/{id}``).

        Args:
            container_id: Database id or container id.

        Returns:
            The job.

        Raises:
            ResourceNotFoundError: Unknown container.
        """
        path = f"/xapi/containers/{segment(container_id, 'job_id')}"
        try:
            payload = self.client.get_json(path)
        except ResourceNotFoundError as exc:
            raise not_found(f"container {container_id} was not found", exc) from exc
        container = Container.model_validate(payload)
        name = self.wrapper_name(container.wrapper_id)
        return PipelineJob.model_validate(cs.container_job_fields(container, pipeline=name))

    def pending_job(self, ref: JobRef) -> PipelineJob:
        """The job of a launch without a workflow id: its workflow once it exists.

        Args:
            ref: A ``pending`` job reference.

        Returns:
            The workflow's job, or a queued placeholder (status ``To be assigned``).
        """
        found = self.first_new_workflow(ref.experiment_id, ref.pipeline, ref.after)
        if found is not None and found.workflow_id:
            return self.workflow_job(found.workflow_id, engine=ref.engine)
        return PipelineJob.model_validate(
            {
                "job_id": str(ref),
                "kind": ref.engine,
                "pipeline": ref.pipeline,
                "experiment_id": ref.experiment_id,
                "status": UNASSIGNED,
                "details": "XNAT has not created a workflow for this launch yet",
                "state": JobState.QUEUED,
            }
        )

    # --- containers -----------------------------------------------------------------------------

    def container_of(self, workflow_id: str, project: str | None) -> str | None:
        """The container (database id) tracked by a workflow, from the container list.

        Args:
            workflow_id: Workflow id.
            project: Project whose containers to read (None: the site's).

        Returns:
            The id, or None.
        """
        for container in cs.list_containers(self.client, project) or []:
            if container.workflow_id == workflow_id and container.id:
                return container.id
        return None

    def kill(self, container_id: str) -> None:
        """``POST /xapi/containers/{id}/kill`` (idempotent: a kill is safe to resend).

        Args:
            container_id: Database id or container id.

        Raises:
            ResourceNotFoundError: Unknown container.
        """
        path = f"/xapi/containers/{segment(container_id, 'container id')}/kill"
        try:
            self.client.post(path, retry=True)
        except ResourceNotFoundError as exc:
            raise not_found(f"container {container_id} was not found", exc) from exc
        logger.info("Killed container %s", container_id)


def describe(job: PipelineJob | None) -> str:
    """`` (pipeline on experiment)`` for messages.

    Args:
        job: The job, if any.

    Returns:
        The text (empty when nothing is known).
    """
    if job is None or not (job.pipeline or job.experiment_id):
        return ""
    return f" ({job.pipeline or 'pipeline'} on {job.experiment_id or 'an experiment'})"


def final_job(job_id: str, job: PipelineJob, state: JobState, elapsed: float) -> PipelineJob:
    """Return a Complete job; raise the typed error of any other terminal state.

    Args:
        job_id: The id waited on.
        job: Its last status.
        state: Its (terminal) state.
        elapsed: Seconds waited.

    Returns:
        The job, when Complete.

    Raises:
        PipelineKilled: Killed.
        PipelineFailed: Failed.
    """
    if state == JobState.COMPLETE:
        return job
    details = f": {job.details}" if job.details else ""
    message = (
        f"pipeline job {job_id}{describe(job)} ended {job.status} after {elapsed:.1f} s{details}"
    )
    if state == JobState.KILLED:
        raise PipelineKilled(message, target=job_id, status=job.status)
    raise PipelineFailed(message, target=job_id, status=job.status)


def status_matches(status: str | None, wanted: str | None) -> bool:
    """Whether a job status passes a ``status=`` filter (a state name or a text prefix).

    Args:
        status: The job's status text.
        wanted: The filter.

    Returns:
        The truth value.
    """
    if wanted is None:
        return True
    try:
        return job_state(status) == JobState(wanted.strip().lower())
    except ValueError:
        return (status or "").lower().startswith(wanted.strip().lower())


def launch_sort_key(job: PipelineJob) -> float:
    """Epoch seconds of a job's launch (naive times are XNAT server-local; None sorts last).

    Args:
        job: The job.

    Returns:
        The key.
    """
    moment: datetime | None = job.launch_time
    return moment.timestamp() if moment is not None else 0.0
