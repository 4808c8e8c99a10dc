"""Prefect global concurrency limits that protect each XNAT server.

Parallel work (upload batches, C-STORE associations, downloads, catalog refreshes, pipeline
launches) takes a slot of a limit named per server and kind, e.g. ``xnat:xnat.example.org:uploads``,
so the number of requests in flight against one XNAT holds however many flow runs and workers
are running. Limits are created with a default when missing (Prefect would otherwise run
*unlimited* with only a warning), and acquisition is ``strict``.

A slot is a Prefect lease of :data:`DEFAULT_LEASE_SECONDS` (60 s, the shortest the Prefect
server accepts), renewed by Prefect every 45 s while the process holding it lives. A process
that is killed stops renewing: its slots come free once the lease expires and the Prefect
server's repossessor service (one of the services ``prefect server start`` runs; an ephemeral
or test server does not run it) reclaims them, within about 75 s instead of the 300 s of
Prefect's default lease. A run waiting for slots gives up after
:data:`DEFAULT_SLOT_TIMEOUT_SECONDS` (``$XNAT_PREFECT_SLOT_TIMEOUT_SECONDS``) with a
:class:`SlotTimeoutError` naming the limit and the ``prefect gcl`` command that frees it,
instead of hanging.
"""

from __future__ import annotations

import logging
import math
import os
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
DEFAULT_LEASE_SECONDS = 60.0
MIN_LEASE_SECONDS = 60.0  # the Prefect server refuses shorter leases (422)
DEFAULT_SLOT_TIMEOUT_SECONDS = 1800.0
ENV_SLOT_TIMEOUT = "XNAT_PREFECT_SLOT_TIMEOUT_SECONDS"
_ENSURED: set[str] = set()
_ENSURED_LOCK = threading.Lock()
_UNSAFE = re.compile(r"[/%&<>\s]+")


class SlotTimeoutError(TimeoutError):
    """No slot of a concurrency limit came free in time (all taken, perhaps by a killed run).

    Not transient (``transient = False``): a task retry would wait just as long again.

    Args:
        message: What was waited for, and how to free or raise the limit.
        limit: Name of the limit.
        timeout_seconds: How long the run waited.
    """

    transient = False

    def __init__(self, message: str, *, limit: str = "", timeout_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.limit = limit
        self.timeout_seconds = timeout_seconds


def slot_timeout_seconds(timeout_seconds: float | None = None) -> float | None:
    """How long to wait for a slot: the argument, else the environment, else the default.

    Args:
        timeout_seconds: Seconds, ``math.inf`` to wait forever, or None for the default
            (``$XNAT_PREFECT_SLOT_TIMEOUT_SECONDS``, else :data:`DEFAULT_SLOT_TIMEOUT_SECONDS`).

    Returns:
        Seconds, or None to wait forever.

    Raises:
        ValueError: The value is not a number > 0.

    Example:
        ```python
        slot_timeout_seconds(None)  # 1800.0 unless XNAT_PREFECT_SLOT_TIMEOUT_SECONDS is set
        ```
    """
    if timeout_seconds is not None:
        where, given, seconds = "timeout_seconds", repr(timeout_seconds), float(timeout_seconds)
    else:
        raw = os.environ.get(ENV_SLOT_TIMEOUT, "").strip()
        if not raw:
            return DEFAULT_SLOT_TIMEOUT_SECONDS
        where, given = f"${ENV_SLOT_TIMEOUT}", repr(raw)
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
    if not seconds > 0:
        raise ValueError(
            f"{where}={given} must be a number of seconds > 0 to wait for a concurrency slot "
            "(or 'inf' to wait forever)"
        )
    return None if math.isinf(seconds) else seconds


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


def _taken(name: str) -> str:
    """``"3 of 4 slots taken"`` for the message (best effort: the API may be the problem)."""
    try:
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(name)
        return f"{limit.active_slots} of {limit.limit} slots taken"
    except Exception as exc:  # only decorates the message: never hide the timeout
        return f"slots could not be read: {type(exc).__name__}"


def _timed_out(name: str, kind: str, server_key: str, waited: float) -> SlotTimeoutError:
    message = (
        f"no slot of the Prefect concurrency limit {name!r} came free within {waited:g} s "
        f"({_taken(name)}). If no other run is sending {kind} to {server_key}, a killed run "
        f"still holds them: Prefect frees them once their {DEFAULT_LEASE_SECONDS:g} s lease "
        "expires when the Prefect server runs its services (prefect server start); free them "
        f"now with `prefect gcl update {name} --active-slots 0` (inspect with `prefect gcl "
        f"inspect {name}`, raise with `prefect gcl update {name} --limit N`); "
        f"${ENV_SLOT_TIMEOUT} sets how long a run waits"
    )
    LOG.error("%s", message)
    return SlotTimeoutError(message, limit=name, timeout_seconds=waited)


@contextmanager
def xnat_slot(
    server_key: str,
    kind: str,
    *,
    default_limit: int | None = None,
    timeout_seconds: float | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> Iterator[None]:
    """Hold one slot of the server's limit of this kind while the block runs.

    The slot is a lease that Prefect renews every ``0.75 * lease_seconds`` while this process
    lives; a failed renewal (the Prefect API unreachable for three attempts) logs a warning
    and the work goes on, so a transfer is not cancelled by a blip of the API.

    Args:
        server_key: The server's ``host:port``.
        kind: Kind of work (see :data:`DEFAULT_LIMITS`).
        default_limit: Slots to create the limit with when missing.
        timeout_seconds: Give up waiting for a slot after this long (None: the default of
            :func:`slot_timeout_seconds`; ``math.inf``: wait forever).
        lease_seconds: Lease of the slot (at least 60, Prefect's minimum): how long a killed
            process keeps it.

    Yields:
        Nothing.

    Raises:
        SlotTimeoutError: No slot came free in time; the message names the limit and how to
            free it.
        ValueError: A bad timeout or lease.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.tasks.limits import xnat_slot

        credentials = XNATCredentials.load("BLOCK_NAME")
        with xnat_slot(credentials.server_key, "uploads"):
            ...  # one upload in flight
        ```
    """
    if not lease_seconds >= MIN_LEASE_SECONDS:
        raise ValueError(
            f"lease_seconds={lease_seconds!r} is below {MIN_LEASE_SECONDS:g}, the shortest "
            "lease the Prefect server accepts"
        )
    wait = slot_timeout_seconds(timeout_seconds)
    name = limit_name(server_key, kind)
    ensure_limit(name, default_limit or DEFAULT_LIMITS.get(kind, 4))
    acquired = False
    try:
        with concurrency(
            name,
            occupy=1,
            timeout_seconds=wait,
            lease_duration=lease_seconds,
            strict=True,
            raise_on_lease_renewal_failure=False,
        ):
            acquired = True
            yield
    except TimeoutError as exc:
        if acquired or wait is None:
            raise  # raised by the work itself, not by the wait for the slot
        raise _timed_out(name, kind, server_key, wait) from exc
