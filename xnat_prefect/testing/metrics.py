"""Request metrics: counts, statuses, bytes and the peak number of concurrent requests per route.

Tests use the peak-concurrency figures to prove that a client-side concurrency limit held.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Metrics:
    """Thread-safe counters keyed by route (``METHOD /template``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._requests: Counter[str] = Counter()
            self._statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
            self._in_flight: Counter[str] = Counter()
            self._max_in_flight: Counter[str] = Counter()
            self._bytes_in: Counter[str] = Counter()
            self._bytes_out: Counter[str] = Counter()
            self._total_in_flight = 0
            self._max_total_in_flight = 0
            self._logins = 0
            self._faults: Counter[str] = Counter()

    @contextmanager
    def in_flight(self, key: str) -> Iterator[None]:
        """Count one request to ``key`` for as long as the block runs.

        Args:
            key: Route key.

        Yields:
            Nothing.
        """
        with self._lock:
            self._requests[key] += 1
            self._in_flight[key] += 1
            self._max_in_flight[key] = max(self._max_in_flight[key], self._in_flight[key])
            self._total_in_flight += 1
            self._max_total_in_flight = max(self._max_total_in_flight, self._total_in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                self._total_in_flight -= 1

    def record_status(self, key: str, status: int) -> None:
        """Count the status a route answered.

        Args:
            key: Route key.
            status: HTTP status sent.
        """
        with self._lock:
            self._statuses[key][status] += 1

    def add_bytes(self, key: str, *, received: int = 0, sent: int = 0) -> None:
        """Count body bytes received from and sent to clients.

        Args:
            key: Route key.
            received: Request body bytes.
            sent: Response body bytes.
        """
        with self._lock:
            self._bytes_in[key] += received
            self._bytes_out[key] += sent

    def count_login(self) -> None:
        """Count one successful login (a new server session)."""
        with self._lock:
            self._logins += 1

    def count_fault(self, kind: str) -> None:
        """Count one injected fault.

        Args:
            kind: Fault kind.
        """
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter.

        Returns:
            ``requests``, ``statuses``, ``max_in_flight``, ``bytes_in``, ``bytes_out`` (per route),
            ``max_total_in_flight``, ``logins`` and ``faults``.
        """
        with self._lock:
            return {
                "requests": dict(self._requests),
                "statuses": {
                    k: {str(s): n for s, n in v.items()} for k, v in self._statuses.items()
                },
                "max_in_flight": dict(self._max_in_flight),
                "bytes_in": dict(self._bytes_in),
                "bytes_out": dict(self._bytes_out),
                "max_total_in_flight": self._max_total_in_flight,
                "logins": self._logins,
                "faults": dict(self._faults),
            }
