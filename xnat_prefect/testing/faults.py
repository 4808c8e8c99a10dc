"""Fault injection: rules that make matching requests fail the ways real XNAT servers fail.

A rule matches ``"METHOD /normalized/path"`` with a regular expression and fires with a
probability (seeded, so runs repeat) at most ``times`` times. Kinds:

* ``status`` — answer ``status`` (default 503) with ``body`` instead of running the handler
  (a transient 400 from the import service is ``status=400``);
* ``rate_limit`` — 429 with ``Retry-After: retry_after``;
* ``drop`` — close the connection before the status line (the request is not processed; the
  client reads no reply, as when a server or proxy dies or resets the connection);
* ``latency`` — wait a random ``latency_ms`` (min, max) before handling;
* ``error_body`` — run the handler, then answer 200 with ``body`` (XNAT's 200-with-error);
* ``truncate`` — send only the first ``truncate_at`` bytes (or half) of the body, then close;
* ``ignore_range`` — serve the whole file with 200 even when ``Range`` is asked (only matters
  with the ``honor_range`` option: by default the emulator ignores Range, like XNAT);
* ``expire_session`` — invalidate the caller's session before handling (a 401 follows).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "status",
    "rate_limit",
    "drop",
    "latency",
    "error_body",
    "truncate",
    "ignore_range",
    "expire_session",
]
FAULT_KINDS: tuple[str, ...] = (
    "status",
    "rate_limit",
    "drop",
    "latency",
    "error_body",
    "truncate",
    "ignore_range",
    "expire_session",
)


@dataclass
class FaultRule:
    """One fault rule (see the module docstring for the kinds).

    Attributes:
        route: Regex searched in ``"METHOD /path"``.
        kind: What to do.
        rate: Probability of firing per matching request.
        times: Fire at most this many times (None: unlimited).
        status: Status for ``status`` rules.
        body: Body for ``status``/``error_body`` rules.
        retry_after: Seconds for ``rate_limit`` rules.
        latency_ms: (min, max) milliseconds for ``latency`` rules.
        truncate_at: Byte count kept by ``truncate`` rules (None: half).
        id: Assigned identifier.
        fired: How many times it fired.
    """

    route: str
    kind: FaultKind
    rate: float = 1.0
    times: int | None = None
    status: int = 503
    body: str = ""
    retry_after: float = 1.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    truncate_at: int | None = None
    id: int = 0
    fired: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, target: str) -> bool:
        """Whether the rule applies to ``"METHOD /path"``.

        Args:
            target: The request's method and path.

        Returns:
            True when the regex is found.
        """
        if self._pattern is None:
            self._pattern = re.compile(self.route)
        return self._pattern.search(target) is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            The public fields.
        """
        data = asdict(self)
        data.pop("_pattern", None)
        return data


class FaultRegistry:
    """The active rules, with a seeded random source.

    Args:
        seed: Seed for the probability draws.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        """Activate a rule.

        Args:
            rule: The rule.

        Returns:
            The rule with its id set.

        Raises:
            ValueError: For an unknown kind, a bad rate or an invalid regex.
        """
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; use one of {FAULT_KINDS}")
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {rule.rate}")
        try:
            re.compile(rule.route)
        except re.error as exc:
            raise ValueError(f"fault route {rule.route!r} is not a valid regex: {exc}") from exc
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        """Deactivate one rule.

        Args:
            rule_id: Its id.

        Returns:
            Whether it existed.
        """
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        """Deactivate every rule."""
        with self._lock:
            self._rules = []

    def rules(self) -> list[FaultRule]:
        """The active rules.

        Returns:
            A copy of the list.
        """
        with self._lock:
            return list(self._rules)

    def draw(
        self, target: str, kinds: tuple[str, ...], *, first_only: bool = False
    ) -> list[FaultRule]:
        """Pick the rules of the given kinds that fire for this request (and count them).

        Args:
            target: ``"METHOD /path"``.
            kinds: Kinds the caller is about to apply.
            first_only: Stop at the first rule that fires (for faults that replace the reply,
                so a rule that would not be applied does not spend its ``times``).

        Returns:
            The rules that fire, in registration order.
        """
        fired: list[FaultRule] = []
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or not rule.matches(target):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                rule.fired += 1
                fired.append(rule)
                if first_only:
                    break
        return fired

    def latency_seconds(self, rule: FaultRule) -> float:
        """Draw a latency for a ``latency`` rule.

        Args:
            rule: The rule.

        Returns:
            Seconds to wait.
        """
        low, high = rule.latency_ms
        with self._lock:
            return self._random.uniform(low, max(low, high)) / 1000.0
