"""Prefect global concurrency limits that protect each XNAT server.

Parallel work (upload batches, C-STORE associations, downloads, catalog refreshes, pipeline
launches) takes a slot of a limit named per server and kind, e.g. ``xnat:xnat.example.org:uploads``,
so the number of requests in flight against one XNAT holds however many flow runs and workers
are running. Limits are created with a default when missing (Prefect would otherwise run
*unlimited* with only a warning), and acquisition is ``strict``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LOG = logging.getLogger(__name__)

LimitKind = Literal["uploads", "dicom", "downloads", "catalog", "pipelines", "api"]
DEFAULT_LIMITS: dict[str, int] = {
    "uploads": 4,
    "dicom": 4,
    "downloads": 4,
    "catalog": 4,
    "pipelines": 2,
    "api": 8,
}
_ENSURED: set[str] = set()
_ENSURED_LOCK = threading.Lock()
_UNSAFE = re.compile(r"[/%&<>\s]+")


def limit_name(server_key: str, kind: str) -> str:
    """Name of the limit for one server and kind of work.

    Args:
        server_key: The server's ``host:port`` (``XNATCredentials.server_key``).
        kind: ``uploads``, ``dicom``, ``downloads``, ``catalog``, ``pipelines`` or ``api``.

    Returns:
        ``xnat:<server>:<kind>``, with characters Prefect forbids in names replaced.
    """
    return f"xnat:{_UNSAFE.sub('_', server_key.lower())}:{kind}"


def ensure_limit(name: str, limit: int) -> None:
    """Create a global concurrency limit if it does not exist (an existing one is kept as is).

    Args:
        name: Limit name.
        limit: Slots to create it with.

    Raises:
        ValueError: When ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"a concurrency limit needs at least 1 slot, got {limit} for {name}")
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    # One check-and-create at a time in this process, so parallel tasks of one run do not race
    # each other into the server's unique constraint; another process racing us gets a 409.
    with _ENSURED_LOCK:
        if name in _ENSURED:
            return
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=limit)
                    )
                    LOG.info("created concurrency limit %s with %d slots", name, limit)
                except ObjectAlreadyExists:
                    pass  # another worker created it first
        _ENSURED.add(name)


def set_limit(name: str, limit: int) -> None:
    """Create or resize a global concurrency limit.

    Args:
        name: Limit name.
        limit: Slots.
    """
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit)
    with _ENSURED_LOCK:
        _ENSURED.add(name)


@contextmanager
def xnat_slot(
    server_key: str,
    kind: str,
    *,
    default_limit: int | None = None,
    timeout_seconds: float | None = None,
) -> Iterator[None]:
    """Hold one slot of the server's limit of this kind while the block runs.

    Args:
        server_key: The server's ``host:port``.
        kind: Kind of work (see :data:`DEFAULT_LIMITS`).
        default_limit: Slots to create the limit with when missing.
        timeout_seconds: Give up waiting for a slot after this long.

    Yields:
        Nothing.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.tasks.limits import xnat_slot

        credentials = XNATCredentials.load("BLOCK_NAME")
        with xnat_slot(credentials.server_key, "uploads"):
            ...  # one upload in flight
        ```
    """
    name = limit_name(server_key, kind)
    ensure_limit(name, default_limit or DEFAULT_LIMITS.get(kind, 4))
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield
