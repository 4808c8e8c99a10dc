"""What every XNAT task shares: the retry rule, client resolution and the task factory.

Tasks are thin: one service call, a log line, typed errors. They take the credentials block (or
an already open :class:`~xnat_prefect.client.XNATClient`) as their first parameter.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias, cast

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import is_transient

XNATConnection: TypeAlias = XNATCredentials | XNATClient
"""What a task accepts to reach XNAT: a credentials block or an open client."""

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAYS = [2.0, 10.0, 30.0]


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry transient XNAT failures only.

    Timeouts, dropped connections, 429 and 502/503/504 are retried; 400, 401, 403, 404, 409,
    bad input and failed outcomes (a failed archive or pipeline) are not: retrying cannot fix
    them.

    Args:
        task: The task.
        task_run: The failed run.
        state: Its Failed state (``state.data`` holds the exception).

    Returns:
        Whether to retry.
    """
    exc = state.data if isinstance(state.data, BaseException) else None
    return exc is not None and is_transient(exc)


@contextmanager
def xnat_client(connection: XNATConnection) -> Iterator[XNATClient]:
    """Yield a logged-in client for a credentials block or an open client.

    A block yields its process-wide shared client (one login per server and user, reused by
    every task in the process: XNAT creates a server session per login). A client passed in is
    used as it is and left open.

    Args:
        connection: Credentials block or client.

    Yields:
        The client.
    """
    if isinstance(connection, XNATClient):
        yield connection
        return
    yield connection.shared_client()


def service_task(
    service_class: type[Any],
    method_name: str,
    *,
    name: str,
    run_name: str,
    retries: int = DEFAULT_RETRIES,
    idempotent: bool = True,
) -> Task[..., Any]:
    """Build the Prefect task for one service operation.

    The task's signature is the service method's, with the connection (credentials block or
    client) as first parameter, so Prefect records the operation's own parameters.

    Args:
        service_class: The service class (e.g. ``ProjectService``).
        method_name: Method to call (e.g. ``list``).
        name: Human-readable task name.
        run_name: Task run name template; may use the parameters
            (``"get-project-{project_id}"``).
        retries: Prefect retries for transient failures (0 for non-idempotent operations whose
            client already checks the server state).
        idempotent: False for operations that must not be blindly repeated.

    Returns:
        The task.
    """
    method = getattr(service_class, method_name)
    signature = inspect.signature(method)
    params = list(signature.parameters.values())[1:]  # drop self
    connection_param = inspect.Parameter(
        "connection", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="XNATConnection"
    )

    @functools.wraps(method)
    def run(connection: XNATConnection, *args: Any, **kwargs: Any) -> Any:
        logger = get_run_logger()
        with xnat_client(connection) as client:
            service = service_class(client)
            result = getattr(service, method_name)(*args, **kwargs)
        logger.info("%s.%s finished", service_class.__name__, method_name)
        return result

    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[connection_param, *params]
    )
    run.__name__ = f"{service_class.__name__}_{method_name}"
    run.__qualname__ = run.__name__
    decorate = task(
        name=name,
        task_run_name=run_name,
        retries=retries if idempotent else 0,
        retry_delay_seconds=DEFAULT_RETRY_DELAYS,
        retry_jitter_factor=0.5,
        retry_condition_fn=retry_on_transient,
        cache_policy=NO_CACHE,
        description=(method.__doc__ or name).strip().splitlines()[0],
    )
    built: Task[..., Any] = decorate(cast(Callable[..., Any], run))
    return built


def operation_key(task_obj: Task[..., Any]) -> str:
    """The catalog key of a task built by :func:`service_task` (``"ProjectService.list"``).

    Args:
        task_obj: The task.

    Returns:
        ``"ServiceName.method"``.
    """
    return str(task_obj.fn.__name__).replace("_", ".", 1)
