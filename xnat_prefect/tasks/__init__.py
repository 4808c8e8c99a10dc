"""Prefect tasks: one retryable task per XNAT service operation.

Every task takes the credentials block (``XNATCredentials``) or an open client first, retries
transient failures only (timeouts, dropped connections, 429, 502-504) and never caches.
``TASKS_BY_OPERATION`` maps ``"ServiceName.method"`` to its task.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks import TASKS_BY_OPERATION

    @flow
    def inventory() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        projects = TASKS_BY_OPERATION["ProjectService.list"](credentials)
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from prefect import Task

from xnat_prefect.tasks import (
    admin,
    downloads,
    pipelines,
    prearchive,
    projects,
    resources,
    scans,
    sessions,
    subjects,
    uploads,
)
from xnat_prefect.tasks._common import XNATConnection, operation_key, retry_on_transient

TASK_MODULES: tuple[ModuleType, ...] = (
    projects,
    subjects,
    sessions,
    scans,
    resources,
    downloads,
    uploads,
    prearchive,
    pipelines,
    admin,
)


def _catalog() -> dict[str, Task[..., Any]]:
    found: dict[str, Task[..., Any]] = {}
    for module in TASK_MODULES:
        for name in module.__all__:
            task_obj = getattr(module, name)
            found[operation_key(task_obj)] = task_obj
    return found


TASKS_BY_OPERATION: Mapping[str, Task[..., Any]] = MappingProxyType(_catalog())
"""Every service operation's task, keyed ``"ServiceName.method"``."""

__all__ = ["TASKS_BY_OPERATION", "TASK_MODULES", "XNATConnection", "retry_on_transient"]
