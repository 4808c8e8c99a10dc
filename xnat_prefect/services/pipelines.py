"""``PipelineService``: list, launch, watch and cancel processing on what XNAT really serves.

Two engines (``xnat-rest.md`` §12):

* **Legacy pipelines** (the pipeline engine, a plugin since 1.8, rare on 1.9): listed per
  project by ``GET /data/projects/{P}/pipelines``; launched by
  ``POST /data/projects/{P}/pipelines/{STEP}/experiments/{E}`` (200, empty body, no id). Each run
  is tracked by a workflow (``wrk:workflowData``), found after the launch.
* **Container Service** wrappers (``GET /xapi/commands``, enabled for the site and project):
  launched by ``POST /xapi/projects/{P}/wrappers/{id}/root/{input}/launch``; the LaunchReport
  gives a ``workflow-id`` (or ``"To be assigned"``, correlated later); the workflow's
  ``comments`` then hold the container id.

Job ids (see :mod:`._pipeline_jobs`): ``workflow:{id}``, ``container:{id}`` and
``pending:...`` for launches XNAT had not yet given a workflow. ``/data/pipelines/jobs`` (used by
other toolkits) does not exist in core XNAT and is not called.

Launches are not idempotent: a launch whose reply was lost is never resent; the service looks
for the workflow it created instead, and re-raises the transport error if none shows up.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

import httpx

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient, check_body_for_error
from xnat_prefect.errors import (
    BadRequestError,
    InvalidInputError,
    OperationError,
    PermissionDeniedError,
    PipelineFailed,
    PipelineTimedOut,
    ResourceNotFoundError,
    ServerError,
    UnexpectedResponseError,
    XNATError,
    XNATRequestError,
    is_transient,
)
from xnat_prefect.models.container import LaunchReport
from xnat_prefect.models.pipeline import Pipeline, PipelineJob
from xnat_prefect.services import _pipeline_cs as cs
from xnat_prefect.services._pipeline_jobs import (
    TERMINAL_STATES,
    JobState,
    job_state,
    list_workflows,
    parse_job_id,
    workflow_job_fields,
)
from xnat_prefect.services._pipeline_track import (
    UNASSIGNED,
    JobTracker,
    describe,
    final_job,
    launch_sort_key,
    status_matches,
)
from xnat_prefect.services.base import BaseService, check_limit, check_ref, segment

__all__ = ["JobState", "PipelineService"]

logger = get_logger(__name__)

ProgressCallback = Callable[[PipelineJob], None]
KIND_PREFIXES = ("legacy", "container")


class PipelineService(BaseService):
    """Service for XNAT pipeline (legacy engine and Container Service) operations.

    Args:
        client: The client.
        correlation_timeout: Seconds ``run()`` keeps looking for the workflow of a launch that
            came back without one (after that the job id is ``pending:...`` and is resolved on
            each status read).
        correlation_interval: Pause between those look-ups.

    Example:
        ```python
        service = PipelineService(client)
        job = service.run("dcm2niix-session", "XNAT_E00001", project="P1")
        final = service.wait(job.job_id, timeout=1800, poll_interval=15)
        print(final.status)
        ```
    """

    def __init__(
        self,
        client: XNATClient,
        *,
        correlation_timeout: float = 10.0,
        correlation_interval: float = 0.5,
    ) -> None:
        super().__init__(client)
        if correlation_timeout < 0 or correlation_interval <= 0:
            raise InvalidInputError(
                "correlation_timeout must be >= 0 and correlation_interval > 0 seconds"
            )
        self.tracker = JobTracker(client, correlation_timeout, correlation_interval)

    # --- catalogue ------------------------------------------------------------------------------

    def _legacy(self, project: str) -> builtins.list[Pipeline]:
        path = f"{self.project_path(project)}/pipelines"
        try:
            rows = self.client.get_result_set(path)
        except PermissionDeniedError:
            logger.info("Not allowed to list the legacy pipelines of %s (owners only)", project)
            return []
        except ResourceNotFoundError as exc:
            self.get_item_fields(self.project_path(project), what=f"project {project!r}")
            logger.debug("No legacy pipeline engine on this server (%s)", exc.message)
            return []
        pipelines = [r for r in rows if r.get("Name") or r.get("name")]
        return [Pipeline.model_validate({**r, "kind": "legacy"}) for r in pipelines]

    def _wrappers(self, project: str | None, name: str | None = None) -> builtins.list[Pipeline]:
        pipelines = []
        for wrapper in self.tracker.load_wrappers():
            if name is not None and str(wrapper[1]["name"]).lower() != name.lower():
                continue
            enabled = cs.wrapper_enabled(self.client, int(wrapper[1]["id"]), project)
            pipelines.append(cs.wrapper_pipeline(wrapper, enabled=enabled))
        return pipelines

    def list(self, project: str | None = None) -> builtins.list[Pipeline]:
        """List available pipelines.

        With ``project``: the project's legacy pipelines plus the Container Service wrappers
        enabled for the site and the project (a wrapper whose enablement this user may not read
        is listed with ``enabled=None``). Without it: every wrapper of the site (legacy
        pipelines exist per project only), with ``enabled`` = site enablement when readable.

        Args:
            project: Filter by project ID.

        Returns:
            :class:`Pipeline` models (``kind`` = ``legacy`` or ``container``).

        Raises:
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            [(p.kind, p.name) for p in PipelineService(client).list("P1")]
            ```
        """
        if project is None:
            return self._wrappers(None)
        check_ref(project, "project")
        containers = [p for p in self._wrappers(project) if p.get("enabled") is not False]
        return [*self._legacy(project), *containers]

    def get(self, pipeline_name: str, project: str | None = None) -> Pipeline:
        """Get pipeline details.

        Prefix the name with ``legacy:`` or ``container:`` when a project has both kinds.

        Args:
            pipeline_name: Pipeline name.
            project: Project ID.

        Returns:
            The pipeline.

        Raises:
            ResourceNotFoundError: If pipeline not found (or not enabled for the project).
            InvalidInputError: The name is ambiguous.

        Example:
            ```python
            PipelineService(client).get("dcm2niix-session", project="P1").wrapper_id
            ```
        """
        kind, name = _split_kind(pipeline_name)
        found: builtins.list[Pipeline] = []
        if kind != "container" and project is not None:
            found += [p for p in self._legacy(project) if p.name.lower() == name.lower()]
        disabled: builtins.list[Pipeline] = []
        if kind != "legacy":
            for pipeline in self._wrappers(project, name):
                (disabled if pipeline.get("enabled") is False else found).append(pipeline)
        exact = [p for p in found if p.name == name] or found
        if not exact:
            where = f" for project {project}" if project else ""
            hint = ""
            if disabled:
                hint = (
                    f"; wrapper {disabled[0].wrapper_id} is not enabled{where} (PUT "
                    f"/xapi/projects/{project}/wrappers/{disabled[0].wrapper_id}/enabled)"
                )
            raise ResourceNotFoundError(404, f"pipeline {name!r} is not available{where}{hint}")
        if len({p.kind for p in exact}) > 1:
            raise InvalidInputError(
                f"pipeline {name!r} exists as a legacy pipeline and a container wrapper; pass "
                f"'legacy:{name}' or 'container:{name}'"
            )
        if len(exact) > 1:
            logger.warning("%d wrappers are named %r; using wrapper %s", len(exact), name, exact[0])
        return exact[0]

    # --- launch ---------------------------------------------------------------------------------

    def run(
        self,
        pipeline_name: str,
        experiment_id: str,
        project: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> PipelineJob:
        """Run a pipeline on an experiment (legacy launch or container launch).

        Args:
            pipeline_name: Pipeline name (``legacy:``/``container:`` prefix to disambiguate).
            experiment_id: Experiment/session ID (or label with ``project``).
            project: Project ID (default: the experiment's project).
            params: Additional pipeline parameters (container: wrapper inputs; legacy: pipeline
                parameters).

        Returns:
            The job; ``job_id`` is ``workflow:N`` (or ``pending:...`` when XNAT answered
            ``"To be assigned"`` and no workflow showed up within ``correlation_timeout``).

        Raises:
            PipelineFailed: XNAT refused the launch (failure LaunchReport, 200 with error text,
                400/500).
            ResourceNotFoundError: Unknown experiment or pipeline.
            PermissionDeniedError: Not allowed to launch in the project.
            XNATRequestError: The reply was lost and no workflow of this launch was found (the
                launch may still have happened: check ``list_jobs`` before launching again).

        Example:
            ```python
            job = PipelineService(client).run("dcm2niix-session", "SUBJ01_MR1", project="P1")
            ```
        """
        values = _check_params(params)
        ref = self.resolve_session(experiment_id, project)
        target = project or ref.project
        if not target:
            raise InvalidInputError(f"cannot tell the project of {experiment_id!r}; pass project=")
        pipeline = self.get(pipeline_name, target)
        engine = pipeline.kind
        after = self.tracker.last_workflow_id(ref.id, pipeline.name)
        if engine == "legacy":
            path = (
                f"{self.project_path(target)}/pipelines/{segment(pipeline.name, 'pipeline_name')}"
                f"/experiments/{segment(ref.id, 'experiment_id')}"
            )
            options: dict[str, Any] = {"params": values or None}
        else:
            root = str(pipeline.get("root_input") or "session")
            body = {root: f"/archive/experiments/{ref.id}"}
            if values.get(root, body[root]) not in (body[root], ref.id, ref.label):
                raise InvalidInputError(f"params[{root!r}] conflicts with experiment_id")
            path = (
                f"/xapi/projects/{segment(target, 'project')}/wrappers/{pipeline.wrapper_id}"
                f"/root/{segment(root, 'root input')}/launch"
            )
            options = {"json": {**values, **body}}
        what = f"{engine} pipeline {pipeline.name!r} on {ref.id} in {target}"
        try:
            response = self.client.post(path, **options)
        except (BadRequestError, ServerError) as exc:
            if exc.status_code in (502, 503, 504):
                return self._after_lost_launch(exc, engine, ref.id, pipeline.name, after)
            raise PipelineFailed(f"XNAT refused to launch {what}: {exc.message}") from exc
        except XNATRequestError as exc:
            if not exc.request_sent:
                raise
            return self._after_lost_launch(exc, engine, ref.id, pipeline.name, after)
        error = check_body_for_error(response.text)
        if error:
            raise PipelineFailed(f"XNAT refused to launch {what}: {error}")
        reported = None
        if engine == "container":
            report = _launch_report(response)
            if not report.succeeded:
                reason = report.message or f"status {report.status or 'missing'}"
                raise PipelineFailed(f"XNAT refused to launch {what}: {reason}")
            reported = report.workflow_id if report.workflow_assigned else None
            logger.info("Launched %s (workflow-id %s)", what, report.workflow_id or UNASSIGNED)
        if reported is None:
            found = self.tracker.correlate(ref.id, pipeline.name, after)
            reported = found.workflow_id if found is not None else None
        if reported is None:
            pending = f"pending:{_engine(engine)}:{after}:{ref.id}:{pipeline.name}"
            return self.status(pending)
        return self.tracker.workflow_job(reported, engine=_engine(engine))

    def _after_lost_launch(
        self, error: XNATError, engine: str, experiment: str, name: str, after: int
    ) -> PipelineJob:
        logger.warning(
            "Launch reply of %s on %s was lost (%s); looking for it", name, experiment, error
        )
        found = self.tracker.correlate(experiment, name, after)
        if found is None or not found.workflow_id:
            raise error
        return self.tracker.workflow_job(found.workflow_id, engine=_engine(engine))

    # --- status ---------------------------------------------------------------------------------

    def status(self, job_id: str) -> PipelineJob:
        """Get pipeline job status.

        Args:
            job_id: Job ID (``workflow:N``, ``container:N`` or ``pending:...``).

        Returns:
            The job; ``status`` is XNAT's text, the extra key ``state`` a :class:`JobState`
            (``job.is_terminal`` tells whether it ended).

        Raises:
            InvalidInputError: Malformed job id.
            ResourceNotFoundError: The workflow or container does not exist.

        Example:
            ```python
            PipelineService(client).status("workflow:123")["state"]
            ```
        """
        ref = parse_job_id(job_id)
        if ref.handle == "container":
            return self.tracker.container_job(ref.ident)
        if ref.handle == "workflow":
            return self.tracker.workflow_job(ref.ident)
        return self.tracker.pending_job(ref)

    def wait(
        self,
        job_id: str,
        timeout: int = 3600,
        poll_interval: int = 30,
        progress_callback: ProgressCallback | None = None,
    ) -> PipelineJob:
        """Wait for a pipeline job to complete (monotonic deadline).

        Transient errors while polling (timeouts, 502/503/504, 429) are logged and polling goes
        on until the deadline.

        Args:
            job_id: Job ID.
            timeout: Maximum wait time in seconds.
            poll_interval: Seconds between status checks.
            progress_callback: Called with the job (a dict-like model) on each poll.

        Returns:
            Final job status (Complete).

        Raises:
            PipelineFailed: The job ended Failed (``target`` = job id, ``status`` = last status;
                the message has the elapsed time and XNAT's details).
            PipelineKilled: The job was killed.
            PipelineTimedOut: No terminal state before the deadline.
            InvalidInputError: Bad job id, timeout or interval.

        Example:
            ```python
            PipelineService(client).wait(job.job_id, timeout=600, poll_interval=10,
                                         progress_callback=lambda j: print(j.status))
            ```
        """
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidInputError(f"{name}={value!r} must be a positive number of seconds")
        parse_job_id(job_id)
        start = time.monotonic()
        deadline = start + timeout
        last: PipelineJob | None = None
        while True:
            try:
                job = self.status(job_id)
            except XNATError as exc:
                if not is_transient(exc):
                    raise
                logger.warning("Polling %s failed (%s); will retry", job_id, exc)
            else:
                last = job
                if progress_callback is not None:
                    progress_callback(job)
                state = job_state(job.status)
                if state in TERMINAL_STATES:
                    return final_job(job_id, job, state, time.monotonic() - start)
            now = time.monotonic()
            if now >= deadline:
                status = last.status if last is not None else None
                raise PipelineTimedOut(
                    f"pipeline job {job_id}{describe(last)} was still {status or 'unknown'} after "
                    f"{now - start:.1f} s (timeout {timeout} s)",
                    target=job_id,
                    status=status,
                )
            time.sleep(min(float(poll_interval), deadline - now))

    # --- cancel and listing ---------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a running pipeline job.

        Container jobs are killed (``POST /xapi/containers/{id}/kill``; for ``workflow:N`` the
        container comes from the workflow's ``comments`` or the container list). Legacy workflows
        cannot be stopped through REST: their workflow is set to ``Killed`` with
        ``PUT /data/workflows/{id}`` (XNAT allows that to the workflow's creator and site
        admins; the pipeline process itself may keep running on the server).

        Args:
            job_id: Job ID.

        Returns:
            True if cancelled successfully; False when the job had already ended.

        Raises:
            OperationError: A container launch that has no container yet (retry shortly).
            PermissionDeniedError: Not allowed to kill it / edit the workflow.
            ResourceNotFoundError: Unknown job.

        Example:
            ```python
            PipelineService(client).cancel("workflow:123")
            ```
        """
        ref = parse_job_id(job_id)
        job = self.status(job_id)
        if job_state(job.status) in TERMINAL_STATES:
            return False
        if ref.handle == "container":
            self.tracker.kill(ref.ident)
            return True
        if not job.workflow_id:
            raise OperationError(
                f"pipeline job {job_id} has no workflow yet; cancel it again shortly",
                target=job_id,
                status=job.status,
            )
        container = job.container_id or self.tracker.container_of(job.workflow_id, job.project)
        if container is None and job.kind == "container":
            time.sleep(self.tracker.correlation_interval)
            container = self.tracker.container_of(job.workflow_id, job.project)
            if container is None:
                raise OperationError(
                    f"container launch {job_id} has no container yet (status {job.status}); "
                    "cancel it again once it is running",
                    target=job_id,
                    status=job.status,
                )
        if container is not None:
            self.tracker.kill(container)
            return True
        self.client.put(
            f"/data/workflows/{segment(job.workflow_id, 'job_id')}",
            params={
                "wrk:workflowData/status": "Killed",
                "wrk:workflowData/details": "Cancelled through the REST API (xnat-prefect)",
            },
        )
        return True

    def list_jobs(
        self,
        experiment_id: str | None = None,
        project: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[PipelineJob]:
        """List pipeline jobs, newest first.

        Sources: containers (``GET /xapi/[projects/{P}/]containers``) and the workflows of every
        pipeline name known for the project (its legacy pipelines and the site's wrappers), read
        with ``GET /data/services/workflows/{name}?experiment=&project=&display=ALL``. Workflows
        already shown as a container are not repeated. Without ``experiment_id`` and
        ``project`` only the site's wrappers are looked at (legacy pipelines are per project).

        Args:
            experiment_id: Filter by experiment (ID, or label with ``project``).
            project: Filter by project.
            status: Filter by status: a state (``queued``, ``running``, ``complete``,
                ``failed``, ``killed``) or a prefix of XNAT's text (``Failed (Staging)``).
            limit: Maximum results.

        Returns:
            The jobs.

        Raises:
            ResourceNotFoundError: Unknown experiment or project.

        Example:
            ```python
            failed = PipelineService(client).list_jobs(project="P1", status="failed")
            ```
        """
        limit_value = check_limit(limit)
        experiment = None
        labels: set[str] = set()
        scope = project
        if experiment_id is not None:
            ref = self.resolve_session(experiment_id, project)
            experiment, scope = ref.id, project or ref.project
            labels = {ref.id, *([ref.label] if ref.label else [])}
        jobs: dict[str, PipelineJob] = {}
        covered: set[str] = set()
        wrappers = self.tracker.load_wrappers()
        for container in cs.list_containers(self.client, project) or []:
            fields = cs.container_job_fields(
                container, pipeline=self.tracker.wrapper_name(container.wrapper_id)
            )
            if experiment is not None and fields["experiment_id"] not in labels:
                continue
            fields["experiment_id"] = experiment or fields["experiment_id"]
            jobs[fields["job_id"]] = PipelineJob.model_validate(fields)
            covered.add(container.workflow_id or "")
        names = {str(w["name"]) for _, w in wrappers}
        if scope is not None:
            names |= {p.name for p in self._legacy(scope)}
        for name in sorted(names):
            server_project = None if experiment else project
            for workflow in list_workflows(
                self.client, name, experiment=experiment, project=server_project
            ):
                if workflow.workflow_id in covered:
                    continue
                if project and workflow.external_id and workflow.external_id != project:
                    continue
                fields = workflow_job_fields(workflow)
                jobs.setdefault(fields["job_id"], PipelineJob.model_validate(fields))
        selected = [j for j in jobs.values() if status_matches(j.status, status)]
        selected.sort(key=launch_sort_key, reverse=True)
        return selected if limit_value is None else selected[:limit_value]


def _engine(kind: str) -> str:
    return "container" if kind == "container" else "workflow"


def _split_kind(pipeline_name: Any) -> tuple[str | None, str]:
    if not isinstance(pipeline_name, str) or not pipeline_name.strip():
        raise InvalidInputError(f"pipeline_name={pipeline_name!r} must be a non-empty string")
    prefix, sep, rest = pipeline_name.partition(":")
    if sep and prefix in KIND_PREFIXES and rest:
        return prefix, check_ref(rest, "pipeline_name")
    return None, check_ref(pipeline_name, "pipeline_name")


def _check_params(params: Any) -> dict[str, str]:
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and k for k in params):
        raise InvalidInputError(
            f"params must be a dict of parameter name to value, got {type(params).__name__}"
        )
    return {key: cs.param_text(value) for key, value in params.items()}


def _launch_report(response: httpx.Response) -> LaunchReport:
    try:
        payload = response.json() if response.content else {}
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UnexpectedResponseError(
            f"container launch answered {response.status_code} {response.text[:200]!r}, not a "
            "LaunchReport",
            status_code=response.status_code,
        )
    return LaunchReport.model_validate(payload)
