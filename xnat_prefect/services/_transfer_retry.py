"""Retries for transfers: which failures are transient, per-request retries, and passes.

* :func:`is_retryable_status` is the seed's status rule (400, 429 and 5xx retry).
* :func:`is_retryable_error` refines it with XNAT's reason text: a 400 that says the upload
  cannot be parsed or has an unsupported format is permanent; a 400 such as "Concurrent file
  sends of the same data is not supported." (gradual-DICOM under concurrency) is transient, as is
  a 409 "session document locked".
* :func:`upload_with_retry` retries one request with exponential backoff.
* :func:`run_in_passes` runs work items on a thread pool, then retries the transient failures in
  further passes at lower concurrency (the last one sequential); a fatal failure (401, 403)
  stops everything, because every other item would fail the same way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import httpx

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import (
    AuthenticationError,
    PermissionDeniedError,
    XNATRequestError,
    XNATStatusError,
)

__all__ = [
    "PassOutcome",
    "backoff_seconds",
    "describe_error",
    "is_fatal_error",
    "is_retryable_error",
    "is_retryable_status",
    "pass_concurrency",
    "run_in_passes",
    "upload_with_retry",
]

logger = get_logger(__name__)

T = TypeVar("T")
BACKOFF_MAX = 60.0
WINDOW_PER_WORKER = 4
"""Items submitted to a pass's thread pool but not finished: at most this many per worker."""
_RANDOM = random.Random()
_PERMANENT_400 = (
    "unable to parse",
    "unsupported format",
    "unable to identify upload format",
    "limited to one uploaded resource",
    "didn't provide any data",
    "does not implement",
    "not a valid",
    "invalid",
    "upload did not include parsable files",
    "multiple imaging sessions",
)


def is_retryable_status(status_code: int) -> bool:
    """Check if an HTTP status code warrants a retry.

    Retryable: 400 (XNAT answers 400 transiently under concurrency), 429 (rate limit), 5xx
    (server errors). Non-retryable: 2xx (success), 401/403 (auth), other 4xx (client error).

    Args:
        status_code: HTTP status.

    Returns:
        True when a retry may succeed.

    Example:
        ```python
        is_retryable_status(503), is_retryable_status(403)  # (True, False)
        ```
    """
    return status_code in (400, 429) or 500 <= status_code < 600


def is_retryable_error(exc: BaseException) -> bool:
    """Whether a failed transfer request may succeed when repeated.

    Transport failures and timeouts are; status errors follow :func:`is_retryable_status`,
    except 400s whose reason is permanent ("Unable to parse ... as DICOM", "Unsupported
    format") and 409 "session document locked", which is transient.

    Args:
        exc: The exception.

    Returns:
        True when a retry may succeed.
    """
    if isinstance(exc, XNATRequestError | httpx.TransportError):
        return True
    if isinstance(exc, XNATStatusError):
        message = exc.message.lower()
        if exc.status_code == 409:
            return "locked" in message or "in progress" in message
        if not is_retryable_status(exc.status_code):
            return False
        return exc.status_code != 400 or not any(m in message for m in _PERMANENT_400)
    return False


def is_fatal_error(exc: BaseException) -> bool:
    """Whether a failure dooms every other item of the same transfer (401, 403).

    Args:
        exc: The exception.

    Returns:
        True for authentication and permission errors.
    """
    return isinstance(exc, AuthenticationError | PermissionDeniedError)


def describe_error(exc: BaseException) -> str:
    """One line for a summary's ``errors`` list (no secrets: XNAT errors are redacted).

    Args:
        exc: The exception.

    Returns:
        ``"HTTP 403: ..."``, or the exception's message.
    """
    if isinstance(exc, XNATStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_seconds(attempt: int, base: float, *, retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)`` with jitter.

    Args:
        attempt: Retry number.
        base: First delay in seconds.
        retry_after: The server's ``Retry-After``, honoured when longer (up to 60 s).

    Returns:
        Seconds to sleep.
    """
    cap = min(BACKOFF_MAX, base * (2.0 ** max(0, attempt - 1)))
    delay = cap / 2 + _RANDOM.uniform(0.0, cap / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_MAX))
    return delay


def upload_with_retry(
    upload_fn: Callable[[], httpx.Response],
    *,
    max_retries: int = 5,
    backoff_base: float = 2,
    label: str = "upload",
) -> httpx.Response:
    """Execute an upload function with retry on transient HTTP errors.

    ``upload_fn`` may return an error response (raw httpx) or raise (``XNATClient`` maps
    statuses to exceptions); both are retried when transient (see :func:`is_retryable_error`).

    Args:
        upload_fn: Callable that performs the upload and returns an ``httpx.Response``. Called
            again on retry, so it must be idempotent and rebuild (or rewind) its body.
        max_retries: Maximum number of retries (default: 5).
        backoff_base: Base for exponential backoff in seconds (default: 2).
        label: Label for log messages (a file or batch name; no secrets).

    Returns:
        The response of the successful attempt; or, when every attempt answered with an error
        status, the last response.

    Raises:
        XNATError: The last exception when every attempt raised, or the first permanent one.

    Example:
        ```python
        response = upload_with_retry(lambda: client.post(url, content=data), label="batch-1")
        ```
    """
    attempt = 0
    while True:
        retry_after: float | None = None
        try:
            response = upload_fn()
        except (XNATStatusError, XNATRequestError, httpx.TransportError) as exc:
            if attempt >= max_retries or not is_retryable_error(exc):
                raise
            retry_after = getattr(exc, "retry_after", None)
            reason = describe_error(exc)
        else:
            status = response.status_code
            if status < 400 or attempt >= max_retries or not is_retryable_status(status):
                return response
            reason = f"HTTP {status}"
        attempt += 1
        delay = backoff_seconds(attempt, backoff_base, retry_after=retry_after)
        logger.warning(
            "%s failed (%s); retry %d/%d in %.2f s", label, reason, attempt, max_retries, delay
        )
        time.sleep(delay)


def pass_concurrency(workers: int) -> list[int]:
    """Workers per pass: full concurrency, half (when > 2), then one.

    Args:
        workers: Concurrency of the first pass (≥ 1).

    Returns:
        e.g. ``[8, 4, 1]``, ``[2, 1]``, ``[1, 1]``.
    """
    passes = [workers]
    if workers > 2:
        passes.append(workers // 2)
    passes.append(1)
    return passes


@dataclass
class PassOutcome(Generic[T]):
    """What :func:`run_in_passes` achieved.

    Attributes:
        done: Indexes of items that succeeded.
        attempted: Indexes of items whose work started at least once.
        failed: Index → the last exception of items that did not.
        passes: Number of passes run.
        aborted: The fatal error that stopped the run, if any.
    """

    done: set[int] = field(default_factory=set)
    attempted: set[int] = field(default_factory=set)
    failed: dict[int, BaseException] = field(default_factory=dict)
    passes: int = 0
    aborted: BaseException | None = None


class _AbortedError(Exception):
    """Internal: a fatal error happened; stop submitting work."""


def run_in_passes(
    items: Sequence[T],
    work: Callable[[T], None],
    *,
    workers: int,
    pause: float = 0.0,
    on_retry_pass: Callable[[int, int], None] | None = None,
) -> PassOutcome[T]:
    """Run ``work`` on every item, retrying transient failures in lower-concurrency passes.

    ``work`` raises on failure. After each pass, the items that failed with a retryable error
    (:func:`is_retryable_error`) run again with fewer workers (:func:`pass_concurrency`); the
    others keep their error. A fatal error (:func:`is_fatal_error`) stops the run: items not yet
    done get that error.

    Args:
        items: Work items.
        work: Does one item (called from worker threads).
        workers: Concurrency of the first pass.
        pause: Seconds to wait before each retry pass.
        on_retry_pass: Called with (pass number, items to retry) before a retry pass.

    Returns:
        The outcome (indexes refer to ``items``).
    """
    outcome: PassOutcome[T] = PassOutcome()
    todo: Sequence[int] = range(len(items))
    lock = threading.Lock()

    def one(index: int) -> None:
        if outcome.aborted is not None:
            raise _AbortedError()
        with lock:
            outcome.attempted.add(index)
        try:
            work(items[index])
        except Exception as exc:  # every failure is recorded; fatal ones stop the run
            with lock:
                outcome.failed[index] = exc
                if is_fatal_error(exc) and outcome.aborted is None:
                    outcome.aborted = exc
            if is_fatal_error(exc):
                raise _AbortedError() from exc
            return
        with lock:
            outcome.done.add(index)
            outcome.failed.pop(index, None)

    for number, concurrency in enumerate(pass_concurrency(max(1, workers)), start=1):
        if not todo:
            break
        if number > 1:
            if on_retry_pass is not None:
                on_retry_pass(number, len(todo))
            logger.info(
                "Retry pass %d: %d item(s) with %d worker(s)", number, len(todo), concurrency
            )
            if pause > 0:
                time.sleep(pause)
        outcome.passes = number
        _run_pool(todo, one, concurrency)
        if outcome.aborted is not None:
            for index in range(len(items)):
                if index not in outcome.done:
                    outcome.failed.setdefault(index, outcome.aborted)
            break
        todo = [i for i in sorted(outcome.failed) if is_retryable_error(outcome.failed[i])]
    return outcome


def _run_pool(indexes: Sequence[int], one: Callable[[int], None], concurrency: int) -> None:
    """Run ``one`` on every index, ``concurrency`` at a time, in order of ``indexes``.

    At most ``concurrency * WINDOW_PER_WORKER`` items are submitted but not finished
    at any moment (each submitted item holds a ``Future``, so submitting all of them up front
    costs memory in proportion to the number of items); the next one is submitted as one
    finishes. An :class:`_AbortedError` stops submitting and cancels what has not started.
    """
    if concurrency <= 1 or len(indexes) <= 1:
        for index in indexes:
            try:
                one(index)
            except _AbortedError:
                return
        return
    slots = threading.Semaphore(concurrency * WINDOW_PER_WORKER)
    aborted = threading.Event()

    def finished(future: Future[None]) -> None:
        if not future.cancelled() and isinstance(future.exception(), _AbortedError):
            aborted.set()
        slots.release()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="xnat-transfer") as pool:
        for index in indexes:
            slots.acquire()
            if aborted.is_set():
                break
            pool.submit(one, index).add_done_callback(finished)
        if aborted.is_set():
            pool.shutdown(wait=True, cancel_futures=True)
