"""What every composite flow shares: credentials, redacting run loggers, artifacts and events.

* :func:`resolve_credentials` accepts an :class:`XNATCredentials` block or the name of a saved
  one (deployments pass names).
* :func:`run_logger` is Prefect's run logger with the secret-redaction filter installed on it
  and on Prefect's flow/task run loggers, so passwords, tokens and session ids never reach the
  Prefect API (Prefect masks ``SecretStr`` fields in the UI, not inside log text).
* :func:`fanout_runner` builds the task runner of a flow's per-batch / per-session fan-out:
  a capped ``ThreadPoolTaskRunner``, or a ``DaskTaskRunner`` (optional ``prefect-dask``) on a
  Dask cluster at an address or on a LocalCluster sized from ``max_workers``.
* :class:`ProgressReporter` keeps one progress artifact up to date from many worker threads
  (throttled: at most one API call per ``min_interval`` seconds).
* :func:`emit_session_archived` sends the ``xnat.session.archived`` event that downstream
  deployments trigger on: ids and labels only, never patient names or patient IDs.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, TypeVar, cast
from uuid import UUID

from prefect import Task, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.logging.loggers import LoggingAdapter
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from xnat_prefect._redact import install_redaction
from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.errors import InvalidInputError

__all__ = [
    "DASK_EXTRA_HINT",
    "EVENT_SESSION_ARCHIVED",
    "FANOUT_EXECUTORS",
    "FanoutExecutor",
    "FanoutRunner",
    "MissingExtraError",
    "ProgressReporter",
    "RunLogger",
    "artifact_key",
    "check_fanout",
    "current_flow_run_id",
    "emit_session_archived",
    "fanout_runner",
    "flow_task_runner",
    "resolve_credentials",
    "resolve_dicom_node",
    "run_logger",
    "variable_name",
]

EVENT_SESSION_ARCHIVED = "xnat.session.archived"
"""Name of the event emitted once per newly archived session."""

RunLogger = logging.Logger | LoggingAdapter
FanoutExecutor = Literal["threads", "dask"]
_R = TypeVar("_R")
_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flows", "prefect")
_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")
_VARIABLE_UNSAFE = re.compile(r"[^a-z0-9_-]+")
FANOUT_EXECUTORS: tuple[FanoutExecutor, ...] = ("threads", "dask")
"""Where a composite flow's fan-out can run: its own threads, or a Dask cluster."""
DASK_EXTRA_HINT = "pip install 'xnat-prefect[dask]'"
"""How to install what ``executor='dask'`` needs (``prefect-dask``)."""


class MissingExtraError(InvalidInputError, ImportError):
    """An option needs an optional dependency that is not installed; the message says how."""


class FanoutRunner(Protocol):
    """What a flow uses of its fan-out runner (a thread pool or a Dask task runner)."""

    def __enter__(self) -> Any:
        """Start the runner (a Dask runner connects, or starts its LocalCluster, on first use)."""

    def __exit__(self, *exc_info: object) -> None:
        """Wait for nothing more; shut the threads or the LocalCluster down."""

    def map(
        self,
        task: Task[Any, _R],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[PrefectFuture[_R]]:
        """One task run per item of the mapped parameters (``unmapped(...)`` for shared ones)."""


def resolve_credentials(credentials: XNATCredentials | str) -> XNATCredentials:
    """Return the block itself, or load the saved block of that name.

    Args:
        credentials: An ``XNATCredentials`` block, or the name of a saved one.

    Returns:
        The block.

    Raises:
        InvalidInputError: ``credentials`` is neither (an empty name, another type).
        ValueError: No saved block has that name (Prefect's own error).

    Example:
        ```python
        credentials = resolve_credentials("BLOCK_NAME")  # XNATCredentials.load("BLOCK_NAME")
        ```
    """
    if isinstance(credentials, XNATCredentials):
        return credentials
    if isinstance(credentials, str) and credentials.strip():
        loaded = cast(XNATCredentials, XNATCredentials.load(credentials.strip()))
        return loaded
    raise InvalidInputError(
        "credentials must be an XNATCredentials block or the name of a saved one "
        f"(XNATCredentials.load('BLOCK_NAME')); got {type(credentials).__name__}"
    )


def resolve_dicom_node(node: DicomNode | str | None) -> DicomNode | None:
    """Return the block, load a saved one by name, or pass None through.

    Args:
        node: A ``DicomNode`` block, its saved name, or None.

    Returns:
        The block or None.

    Example:
        ```python
        node = resolve_dicom_node("BLOCK_NAME")  # DicomNode.load("BLOCK_NAME")
        ```
    """
    if node is None or isinstance(node, DicomNode):
        return node
    loaded = cast(DicomNode, DicomNode.load(node.strip()))
    return loaded


def flow_task_runner(max_workers: int) -> TaskRunner[PrefectFuture[Any]]:
    """A ``ThreadPoolTaskRunner`` with a worker cap, typed for ``@flow(task_runner=...)``.

    ``ThreadPoolTaskRunner()`` has no cap by default; every flow here sets one.

    Args:
        max_workers: Threads.

    Returns:
        The runner.

    Example:
        ```python
        from prefect import flow

        @flow(task_runner=flow_task_runner(4))
        def my_flow() -> None: ...
        ```
    """
    return cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=max_workers))


def check_fanout(executor: str, dask_address: str | None = None) -> str | None:
    """Check the fan-out parameters of a flow before it does any work.

    Args:
        executor: ``threads`` or ``dask``.
        dask_address: Scheduler address of a Dask cluster (``dask`` only), or None.

    Returns:
        The address, stripped (None for none or an empty string).

    Raises:
        InvalidInputError: Unknown executor, or an address with ``executor='threads'``.
        MissingExtraError: ``executor='dask'`` without ``prefect-dask`` installed.

    Example:
        ```python
        check_fanout("dask", "tcp://dask-scheduler:8786")  # 'tcp://dask-scheduler:8786'
        ```
    """
    if executor not in FANOUT_EXECUTORS:
        raise InvalidInputError(f"executor must be one of {FANOUT_EXECUTORS}, got {executor!r}")
    address = dask_address.strip() if isinstance(dask_address, str) else dask_address
    if address is not None and not isinstance(address, str):
        raise InvalidInputError(f"dask_address must be a string, got {type(address).__name__}")
    address = address or None
    if address is not None and executor != "dask":
        raise InvalidInputError(
            f"dask_address={address!r} needs executor='dask' (the fan-out runs on threads "
            "otherwise); pass both, or neither"
        )
    if executor == "dask":
        _dask_task_runner_class()
    return address


def _dask_task_runner_class() -> Any:
    # Imported by name at run time: prefect-dask is an optional extra, and the package must
    # import (and type-check) without it.
    try:
        module = importlib.import_module("prefect_dask")
    except ImportError as exc:
        raise MissingExtraError(
            f"executor='dask' needs the optional prefect-dask package: {DASK_EXTRA_HINT} "
            "(or use executor='threads')"
        ) from exc
    return module.DaskTaskRunner


def _local_cluster_kwargs(max_workers: int) -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    processes = max(1, min(max_workers, cpus or 1))
    return {
        "n_workers": processes,
        "threads_per_worker": math.ceil(max_workers / processes),
        "processes": True,
        "dashboard_address": None,  # a cluster per flow run: no web server, no port to clash
    }


def fanout_runner(
    max_workers: int,
    *,
    executor: FanoutExecutor = "threads",
    dask_address: str | None = None,
) -> FanoutRunner:
    """The task runner of a flow's fan-out (one task per batch or session).

    ``threads``: a ``ThreadPoolTaskRunner`` with ``max_workers`` threads in the flow's process.
    ``dask``: a ``DaskTaskRunner`` (optional ``prefect-dask``) on the cluster at
    ``dask_address``, or, without one, on a LocalCluster of its own (started on first use,
    closed on exit) with one worker process per CPU up to ``max_workers`` and enough threads
    per process for ``max_workers`` tasks at once (rounded up). On a cluster at an address its
    size sets the parallelism. Either way the XNAT concurrency limits the tasks take
    (:func:`~xnat_prefect.tasks.limits.xnat_slot`) hold server-wide, in every Dask worker.

    Args:
        max_workers: Tasks at once (threads; LocalCluster size).
        executor: ``threads`` or ``dask``.
        dask_address: Scheduler address (``tcp://host:8786``) of an existing Dask cluster.

    Returns:
        The runner; use it as a context manager around ``runner.map(...)``.

    Raises:
        InvalidInputError: Bad ``max_workers``, ``executor`` or ``dask_address``.
        MissingExtraError: ``executor='dask'`` without ``prefect-dask`` (install the ``dask``
            extra: ``pip install 'xnat-prefect[dask]'``).

    Example:
        ```python
        with fanout_runner(4, executor="dask") as runner:
            futures = runner.map(my_task, {"item": items})
            results = [f.result() for f in futures]
        ```
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidInputError(f"max_workers must be an integer >= 1, got {max_workers!r}")
    address = check_fanout(executor, dask_address)
    if executor == "threads":
        return cast(FanoutRunner, flow_task_runner(max_workers))
    runner_class = _dask_task_runner_class()
    if address is not None:
        return cast(FanoutRunner, runner_class(address=address))
    return cast(FanoutRunner, runner_class(cluster_kwargs=_local_cluster_kwargs(max_workers)))


def run_logger() -> RunLogger:
    """Prefect's run logger for the current flow or task run, with secret redaction installed.

    Returns:
        The logger (a ``LoggerAdapter``; a plain logger outside a run).

    Example:
        ```python
        logger = run_logger()
        logger.info("uploaded %d files", 12)
        ```
    """
    for name in _PREFECT_RUN_LOGGERS:
        install_redaction(logging.getLogger(name))
    logger = get_run_logger()
    install_redaction(logger)
    return logger


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from free text (lower-case letters, digits and dashes).

    Args:
        *parts: Words to join.

    Returns:
        The key (at most 120 characters).

    Example:
        ```python
        artifact_key("xnat-ingest", "P1", "SUBJ_01")  # 'xnat-ingest-p1-subj-01'
        ```
    """
    text = "-".join(p for p in parts if p)
    return _KEY_UNSAFE.sub("-", text.lower()).strip("-")[:120] or "xnat"


def variable_name(*parts: str) -> str:
    """A Prefect Variable name from free text (lower-case letters, digits, ``_`` and ``-``).

    Args:
        *parts: Words to join with ``_``.

    Returns:
        The name (at most 200 characters).

    Example:
        ```python
        variable_name("xnat_watermark", "127.0.0.1:8080", "P1")
        ```
    """
    text = "_".join(p for p in parts if p)
    return _VARIABLE_UNSAFE.sub("_", text.lower()).strip("_")[:200] or "xnat"


def current_flow_run_id() -> UUID | None:
    """Id of the flow run this code runs in (from a task too), or None outside a run.

    Returns:
        The flow run id.

    Example:
        ```python
        run_id = current_flow_run_id()  # None outside a flow run
        ```
    """
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        return flow_context.flow_run.id
    task_context = TaskRunContext.get()
    if task_context is not None and task_context.task_run.flow_run_id is not None:
        return task_context.task_run.flow_run_id
    return None


class ProgressReporter:
    """One progress artifact, advanced from many threads, updated at most every few seconds.

    It pickles (tasks on a Dask cluster receive a copy in another process). A copy counts its
    own units but never updates the artifact: it cannot know what the other copies did, and a
    copy's percentage would move the bar backwards. The flow's own reporter sets 100 % when
    the fan-out is done (:meth:`finish`), so with ``executor='dask'`` the bar goes from 0 to
    100 % at once, and each task's progress is in its logs.

    Args:
        key: Artifact key (see :func:`artifact_key`).
        total: Units of work in all (files, sessions...); 0 means "unknown".
        description: Markdown description (no patient names).
        min_interval: Seconds between two API updates.

    Example:
        ```python
        progress = ProgressReporter("xnat-ingest-p1", total=120, description="Ingest into P1")
        progress.advance(10)
        progress.finish()
        ```
    """

    def __init__(
        self, key: str, *, total: int, description: str, min_interval: float = 1.0
    ) -> None:
        self.key = key
        self.total = max(0, total)
        self.description = description
        self.min_interval = min_interval
        self._done = 0
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._last_value = 0.0
        self._detached = False
        # sync call (flows here are sync): async_dispatch returns the UUID itself
        self.artifact_id = cast(
            UUID, create_progress_artifact(0.0, key=key, description=description)
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # a lock does not pickle; each copy gets its own
        state["_detached"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        """Units completed so far (by this copy, for a copy in a Dask worker)."""
        return self._done

    @property
    def detached(self) -> bool:
        """True for a copy made by pickling (it does not update the artifact)."""
        return self._detached

    def _percent(self) -> float:
        if self.total <= 0:
            return 0.0
        return min(100.0, 100.0 * self._done / self.total)

    def advance(self, units: int = 1) -> None:
        """Count finished units; update the artifact when ``min_interval`` has passed.

        Args:
            units: Units finished.
        """
        with self._lock:
            self._done += units
            now = time.monotonic()
            if now - self._last_sent < self.min_interval:
                return
            self._last_sent = now
            value = self._percent()
        self._send(value)

    def finish(self) -> None:
        """Set the artifact to 100 %."""
        with self._lock:
            self._done = max(self._done, self.total)
        self._send(100.0)

    def _send(self, value: float) -> None:
        if self._detached or (value == self._last_value and value != 100.0):
            return
        self._last_value = value
        try:
            update_progress_artifact(self.artifact_id, value)
        except Exception as exc:  # a lost progress update must never fail a transfer
            logging.getLogger(__name__).debug("progress update failed: %s", exc)


def emit_session_archived(
    *,
    server: str,
    experiment_id: str,
    project: str,
    subject_id: str | None,
    subject_label: str | None,
    session_label: str | None,
    details: Mapping[str, Any] | None = None,
) -> UUID | None:
    """Emit ``xnat.session.archived`` for one session.

    The resource id is ``xnat.session.<server>.<experiment_id>``; the payload holds the
    project, subject and session ids and labels plus ``details`` (counts, transport). Never put
    patient names or patient IDs in ``details``.

    Args:
        server: The server's ``host:port``.
        experiment_id: Accession ID.
        project: Project ID.
        subject_id: Subject accession ID.
        subject_label: Subject label.
        session_label: Session label.
        details: Extra JSON-friendly payload.

    Returns:
        The event id (None when events are disabled).

    Example:
        ```python
        emit_session_archived(server="xnat.example.org", experiment_id="XNAT_E00001",
                              project="P1", subject_id="XNAT_S00001", subject_label="S01",
                              session_label="S01_MR1")
        ```
    """
    resource = {
        "prefect.resource.id": f"xnat.session.{server}.{experiment_id}",
        "prefect.resource.name": session_label or experiment_id,
        "xnat.server": server,
        "xnat.project": project,
    }
    payload: dict[str, Any] = {
        "server": server,
        "project": project,
        "experiment_id": experiment_id,
        "subject_id": subject_id,
        "subject_label": subject_label,
        "session_label": session_label,
        **(details or {}),
    }
    event = emit_event(EVENT_SESSION_ARCHIVED, resource=resource, payload=payload)
    return event.id if event is not None else None
