"""``run_pipeline_and_wait``: launch a pipeline on sessions and wait for each to end.

A legacy pipeline or a Container Service wrapper (``PipelineService`` picks the engine; force
one with ``kind``) runs on each session, one Prefect task per session holding one slot of the
server's ``pipelines`` limit from launch to end. Each task polls its job until a terminal state
(monotonic deadline ``max_wait_seconds``, pause ``poll_interval_seconds``) and ends in one typed
way: Complete, :class:`~xnat_prefect.errors.PipelineFailed`,
:class:`~xnat_prefect.errors.PipelineKilled` or :class:`~xnat_prefect.errors.PipelineTimedOut`
(the remote job is cancelled on timeout unless ``cancel_on_timeout=False``).

Cancelling the flow run kills the remote jobs: launched job ids are recorded per flow run
(:mod:`._jobs`); the ``on_cancellation`` hook cancels them when a worker's runner cancels the
run, and the waiting tasks cancel them when they see the run Cancelling (runs started in a
plain Python process), after which the run ends Cancelled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.states import Cancelled
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import (
    InvalidInputError,
    OperationError,
    PipelineFailed,
    PipelineKilled,
    PipelineTimedOut,
    XNATError,
    is_transient,
)
from xnat_prefect.flows._common import (
    artifact_key,
    current_flow_run_id,
    flow_task_runner,
    resolve_credentials,
    run_logger,
)
from xnat_prefect.flows._jobs import (
    cancel_jobs,
    cancel_launched_jobs,
    credentials_ref,
    forget_run,
    record_job,
    remove_job,
)
from xnat_prefect.flows.results import PipelineRunResult, PipelineSessionResult
from xnat_prefect.models.pipeline import PipelineJob
from xnat_prefect.services.pipelines import PipelineService
from xnat_prefect.tasks._common import xnat_client
from xnat_prefect.tasks.limits import xnat_slot

__all__ = ["RunCancelled", "run_pipeline_and_wait"]

CANCEL_CHECK_SECONDS = 2.0


class RunCancelled(OperationError):  # noqa: N818 - an outcome, like PipelineKilled
    """The flow run was cancelled while the job ran; the job was cancelled in XNAT.

    Example:
        ```python
        try:
            run_pipeline_on_session(credentials, "dcm2niix-session", "XNAT_E00001", settings)
        except RunCancelled as exc:
            print(exc.target)
        ```
    """


@dataclass(frozen=True)
class WaitSettings:
    """What every session task of one run shares.

    Attributes:
        project: Project ID (None: each experiment's own).
        params: Pipeline parameters / wrapper inputs.
        max_wait_seconds: Deadline per job.
        poll_interval_seconds: Pause between status reads.
        cancel_on_timeout: Cancel the remote job when the deadline passes.
        flow_run_id: The flow run (for the job registry and cancellation checks).
        credentials_ref: How another process loads the credentials.

    Example:
        ```python
        WaitSettings(None, None, 3600, 15, True, None, "BLOCK_NAME")
        ```
    """

    project: str | None
    params: dict[str, Any] | None
    max_wait_seconds: float
    poll_interval_seconds: float
    cancel_on_timeout: bool
    flow_run_id: UUID | None
    credentials_ref: Any


def _run_cancelling(flow_run_id: UUID | None) -> bool:
    if flow_run_id is None:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:  # an API hiccup must not fail the wait
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def _outcome(job: PipelineJob) -> str | None:
    status = (job.status or "").strip()
    for prefix, outcome in (("Complete", "complete"), ("Failed", "failed"), ("Killed", "killed")):
        if status.startswith(prefix):
            return outcome
    return None


def _result(
    session: str, job: PipelineJob | None, outcome: str, **extra: Any
) -> PipelineSessionResult:
    return PipelineSessionResult.model_validate(
        {
            "session": session,
            "experiment_id": job.experiment_id if job else None,
            "job_id": job.job_id if job else None,
            "workflow_id": job.workflow_id if job else None,
            "container_id": job.container_id if job else None,
            "status": job.status if job else None,
            "outcome": outcome,
            **extra,
        }
    )


def _fail(error: XNATError, result: PipelineSessionResult) -> XNATError:
    error.session_result = result  # type: ignore[attr-defined]
    return error


@task(
    name="Run a pipeline and wait",
    task_run_name="pipeline-{pipeline}-{session}",
    cache_policy=NO_CACHE,
)
def run_pipeline_on_session(
    credentials: XNATCredentials, pipeline: str, session: str, settings: WaitSettings
) -> PipelineSessionResult:
    """Launch ``pipeline`` on one session and wait for its end (never retried: launches).

    Args:
        credentials: The XNAT credentials block.
        pipeline: Pipeline / wrapper name (``legacy:``/``container:`` prefix allowed).
        session: Session ID (or label with ``settings.project``).
        settings: Deadline, polling, parameters.

    Returns:
        The Complete result.

    Raises:
        PipelineFailed: Refused launch or a Failed job.
        PipelineKilled: The job was killed.
        PipelineTimedOut: No terminal state before the deadline.
        RunCancelled: The flow run was cancelled (the job was cancelled in XNAT).

    Example:
        ```python
        run_pipeline_on_session(XNATCredentials.load("BLOCK_NAME"), "dcm2niix-session",
                                "XNAT_E00001", settings)
        ```
    """
    logger = run_logger()
    started = time.monotonic()
    with xnat_slot(credentials.server_key, "pipelines"), xnat_client(credentials) as client:
        service = PipelineService(client)
        try:
            job = service.run(pipeline, session, settings.project, settings.params)
        except XNATError as exc:
            result = _result(session, None, "launch-failed", message=str(exc))
            raise _fail(exc, result) from None
        logger.info("launched %s on %s: job %s (%s)", pipeline, session, job.job_id, job.status)
        if settings.flow_run_id is not None:
            record_job(
                settings.flow_run_id, credentials, settings.credentials_ref, job.job_id, session
            )
        try:
            return _wait(service, job, session, settings, started)
        finally:
            if settings.flow_run_id is not None:
                remove_job(settings.flow_run_id, job.job_id)


def _wait(
    service: PipelineService,
    job: PipelineJob,
    session: str,
    settings: WaitSettings,
    started: float,
) -> PipelineSessionResult:
    logger = run_logger()
    deadline = started + settings.max_wait_seconds
    next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
    last_status = job.status
    while True:
        try:
            job = service.status(job.job_id)
        except XNATError as exc:
            if not is_transient(exc):
                raise
            logger.warning("reading job %s failed (%s); trying again", job.job_id, exc)
        if job.status != last_status:
            logger.info("job %s on %s: %s", job.job_id, session, job.status)
            last_status = job.status
        elapsed = round(time.monotonic() - started, 3)
        outcome = _outcome(job)
        if outcome == "complete":
            return _result(session, job, "complete", duration_seconds=elapsed)
        if outcome is not None:
            message = f"job {job.job_id} on {session} ended {job.status}: {job.details or ''}"
            result = _result(session, job, outcome, message=message, duration_seconds=elapsed)
            error_type = PipelineKilled if outcome == "killed" else PipelineFailed
            raise _fail(error_type(message, target=job.job_id, status=job.status), result)
        now = time.monotonic()
        if now >= next_cancel_check:
            next_cancel_check = now + CANCEL_CHECK_SECONDS
            if _run_cancelling(settings.flow_run_id):
                service.cancel(job.job_id)
                message = f"flow run cancelled; job {job.job_id} on {session} was cancelled"
                result = _result(
                    session, job, "cancelled", message=message, duration_seconds=elapsed
                )
                raise _fail(RunCancelled(message, target=job.job_id, status=job.status), result)
        if now >= deadline:
            cancelled = settings.cancel_on_timeout and service.cancel(job.job_id)
            message = (
                f"job {job.job_id} on {session} was still {job.status} after {elapsed:.1f} s "
                f"(max_wait_seconds={settings.max_wait_seconds:g})"
                + ("; it was cancelled in XNAT" if cancelled else "")
            )
            result = _result(session, job, "timed-out", message=message, duration_seconds=elapsed)
            raise _fail(PipelineTimedOut(message, target=job.job_id, status=job.status), result)
        time.sleep(min(settings.poll_interval_seconds, max(0.0, deadline - now)))


def _collect(
    sessions: list[str], futures: list[Any]
) -> tuple[list[PipelineSessionResult], list[BaseException]]:
    results: list[PipelineSessionResult] = []
    errors: list[BaseException] = []
    for session, future in zip(sessions, futures, strict=True):
        try:
            results.append(PipelineSessionResult.model_validate(future.result()))
        except Exception as exc:
            found = getattr(exc, "session_result", None)
            if not isinstance(found, PipelineSessionResult):
                found = PipelineSessionResult(
                    session=session, outcome="launch-failed", message=str(exc)
                )
            results.append(found)
            errors.append(exc)
    return results, errors


@flow(
    name="xnat-run-pipeline-and-wait",
    task_runner=flow_task_runner(4),
    on_cancellation=[cancel_launched_jobs],
    validate_parameters=True,
)
def run_pipeline_and_wait(
    credentials: XNATCredentials | str,
    pipeline: str,
    sessions: list[str],
    *,
    project: str | None = None,
    kind: Literal["auto", "legacy", "container"] = "auto",
    params: dict[str, Any] | None = None,
    max_wait_seconds: float = 3600.0,
    poll_interval_seconds: float = 15.0,
    max_workers: int = 4,
    cancel_on_timeout: bool = True,
    raise_on_failure: bool = True,
) -> PipelineRunResult:
    """Run a pipeline on one or many sessions and wait until every job has ended.

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        pipeline: Legacy pipeline or Container Service wrapper name.
        sessions: Session IDs (or labels, with ``project``).
        project: Project ID (default: each session's own project).
        kind: ``legacy`` or ``container`` when a project has both with this name.
        params: Pipeline parameters (container: wrapper inputs).
        max_wait_seconds: Deadline of each job.
        poll_interval_seconds: Pause between status reads.
        max_workers: Sessions handled at once by this run (the ``pipelines`` limit applies
            on top, server-wide).
        cancel_on_timeout: Cancel a job in XNAT when its deadline passes.
        raise_on_failure: Raise the first bad end's typed error (after recording every
            session's result in the run's artifact); else return all results.

    Returns:
        :class:`~xnat_prefect.flows.results.PipelineRunResult` (one result per session). A run
        that was cancelled ends Cancelled after cancelling its jobs.

    Raises:
        PipelineFailed: A refused launch or a Failed job (``raise_on_failure``).
        PipelineKilled: A killed job.
        PipelineTimedOut: A job past its deadline.
        InvalidInputError: Bad parameters.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import run_pipeline_and_wait

        run = run_pipeline_and_wait(XNATCredentials.load("BLOCK_NAME"), "dcm2niix-session",
                                    ["XNAT_E00001", "XNAT_E00002"], max_wait_seconds=1800)
        print(run.succeeded)
        ```
    """
    started = time.monotonic()
    logger = run_logger()
    creds = resolve_credentials(credentials)
    targets = [sessions] if isinstance(sessions, str) else list(sessions)
    if not targets or isinstance(max_workers, bool) or max_workers < 1:
        raise InvalidInputError("pass at least one session and max_workers >= 1")
    if not (max_wait_seconds > 0 and poll_interval_seconds > 0):
        raise InvalidInputError("max_wait_seconds and poll_interval_seconds must be > 0")
    name = pipeline if kind == "auto" else f"{kind}:{pipeline}"
    flow_run_id = current_flow_run_id()
    settings = WaitSettings(
        project=project,
        params=params,
        max_wait_seconds=max_wait_seconds,
        poll_interval_seconds=poll_interval_seconds,
        cancel_on_timeout=cancel_on_timeout,
        flow_run_id=flow_run_id,
        credentials_ref=credentials_ref(credentials),
    )
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
        max_workers=min(max_workers, len(targets))
    )
    try:
        with runner:
            futures = runner.map(
                run_pipeline_on_session,
                {
                    "credentials": unmapped(creds),
                    "pipeline": unmapped(name),
                    "session": targets,
                    "settings": unmapped(settings),
                },
            )
            results, errors = _collect(targets, list(futures))
    finally:
        if flow_run_id is not None and _run_cancelling(flow_run_id):
            cancel_jobs(flow_run_id)
        elif flow_run_id is not None:
            forget_run(flow_run_id)
    run = PipelineRunResult(
        pipeline=pipeline,
        project=project,
        results=results,
        duration_seconds=round(time.monotonic() - started, 3),
    )
    _artifact(run)
    logger.info("%s: %d complete, %d not", pipeline, len(run.succeeded), len(run.failed))
    if any(isinstance(e, RunCancelled) for e in errors):
        return Cancelled(message="flow run cancelled; remote jobs cancelled")  # type: ignore[return-value]
    if errors and raise_on_failure:
        raise errors[0]
    return run


def _artifact(run: PipelineRunResult) -> None:
    create_table_artifact(
        [
            {
                "session": r.session,
                "experiment": r.experiment_id or "-",
                "job": r.job_id or "-",
                "container": r.container_id or "-",
                "status": r.status or "-",
                "outcome": r.outcome,
                "seconds": r.duration_seconds,
            }
            for r in run.results
        ],
        key=artifact_key("xnat-pipeline", run.pipeline),
        description=(
            f"**{run.pipeline}**: {len(run.succeeded)} complete, {len(run.failed)} not "
            f"({run.duration_seconds:.0f} s)"
        ),
    )
