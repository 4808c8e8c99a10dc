"""Retry policy of the HTTP client (tenacity).

Transient errors only, exponential backoff with jitter, bounded attempts, and ``Retry-After``
honoured.

The client decides *whether* an error may be retried (idempotency, rewindable body, see
:func:`xnat_prefect.errors.is_transient`); this module decides *when* and *how often*.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from xnat_prefect._redact import get_logger

__all__ = ["RetryPolicy", "backoff_delay", "call_with_retry"]

logger = get_logger(__name__)

T = TypeVar("T")

_RANDOM = random.Random()

RETRY_AFTER_MAX = 120.0
"""A ``Retry-After`` longer than this is not waited for: the error is raised instead, so the
caller (a Prefect task retry, say) can decide."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes:
        max_retries: Retries after the first attempt (0 disables retrying).
        backoff_base: First backoff in seconds; doubles with each retry.
        backoff_max: Cap of one backoff in seconds.
        retry_after_max: Longest ``Retry-After`` that is waited for.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    retry_after_max: float = RETRY_AFTER_MAX


def backoff_delay(
    retry_number: int, *, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Args:
        retry_number: 1 for the first retry, 2 for the second, ...
        base: Backoff of the first retry (before jitter).
        maximum: Cap of the un-jittered backoff.
        rng: Random source (tests pass a seeded one).

    Returns:
        Seconds to sleep, in ``[cap/2, cap]`` with ``cap = min(maximum, base * 2**(n-1))``.

    Example:
        ```python
        backoff_delay(3, base=0.5, maximum=20.0)  # between 1.0 and 2.0
        ```
    """
    cap = min(maximum, base * (2.0 ** max(0, retry_number - 1)))
    source = rng if rng is not None else _RANDOM
    return cap / 2 + source.uniform(0.0, cap / 2)


def _retry_after(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) else None


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = _retry_after(exc)
        if hinted is not None:
            return min(hinted, self.policy.retry_after_max)
        return backoff_delay(
            retry_state.attempt_number,
            base=self.policy.backoff_base,
            maximum=self.policy.backoff_max,
        )


def _log_retry(label: str, policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s failed (%s); retry %d/%d in %.2fs",
            label,
            exc,
            retry_state.attempt_number,
            policy.max_retries,
            delay,
        )

    return before_sleep


def call_with_retry(
    fn: Callable[[], T],
    *,
    should_retry: Callable[[BaseException], bool],
    policy: RetryPolicy,
    label: str = "request",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` and retry it while ``should_retry`` says so, within ``policy``.

    The last exception is re-raised unchanged when attempts run out or the error is not
    retryable. An error whose ``retry_after`` exceeds ``policy.retry_after_max`` is raised at
    once.

    Args:
        fn: The attempt (no arguments).
        should_retry: Whether an exception may be retried.
        policy: Attempts and backoff.
        label: Names the operation in log lines (no secrets, no query string).
        sleep: Sleep function (tests may pass a fake).

    Returns:
        What ``fn`` returned.

    Raises:
        BaseException: Whatever the last attempt raised.

    Example:
        ```python
        call_with_retry(lambda: http_get(), should_retry=is_transient, policy=RetryPolicy())
        ```
    """
    if policy.max_retries <= 0:
        return fn()

    def predicate(exc: BaseException) -> bool:
        hinted = _retry_after(exc)
        if hinted is not None and hinted > policy.retry_after_max:
            return False
        return should_retry(exc)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_retries + 1),
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception(predicate),
        before_sleep=_log_retry(label, policy),
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)
