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

The DICOM C-STORE receiver has its own kinds (applied by :mod:`xnat_prefect.testing.scp_faults`;
their targets are ``"ASSOCIATE <calling AE> <called AE>"``, ``"C-ECHO <calling> <called>"`` and
``"C-STORE <calling> <called> <SOP Class UID> <SOP Instance UID>"``):

* ``dicom_reject`` — refuse the association (A-ASSOCIATE-RJ) ``reject`` = ``transient`` or
  ``permanent``, with ``reject_source`` and ``reject_reason`` (PS3.8 Table 9-21);
* ``dicom_abort`` — send A-ABORT instead of answering a C-STORE (from the association's
  ``after_stores``-th request on); the dataset is not stored;
* ``dicom_status`` — answer a C-STORE with ``store_status`` (default 0xA700) and ``body`` as the
  Error Comment; a failure is not stored, a warning (0x0001, 0xBxxx) is stored;
* ``dicom_latency`` — wait a random ``latency_ms`` (min, max) before answering an association
  request, a C-ECHO or a C-STORE.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
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
    "dicom_reject",
    "dicom_abort",
    "dicom_status",
    "dicom_latency",
]
#: Kinds applied by the DICOM receiver (never to HTTP requests).
DICOM_FAULT_KINDS: tuple[str, ...] = (
    "dicom_reject",
    "dicom_abort",
    "dicom_status",
    "dicom_latency",
)
FAULT_KINDS: tuple[str, ...] = (
    "status",
    "rate_limit",
    "drop",
    "latency",
    "error_body",
    "truncate",
    "ignore_range",
    "expire_session",
    *DICOM_FAULT_KINDS,
)
#: Valid ``(reject_source, reject_reason)`` pairs of an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
REJECT_REASONS: dict[int, tuple[int, ...]] = {1: (1, 2, 3, 7), 2: (1, 2), 3: (1, 2)}
#: Default ``(source, reason)`` per ``reject``: congestion for transient, "no reason" otherwise.
_REJECT_DEFAULTS: dict[str, tuple[int, int]] = {"transient": (3, 1), "permanent": (1, 1)}


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
        reject: ``transient`` or ``permanent`` (``dicom_reject``).
        reject_source: A-ASSOCIATE-RJ source: 1 service user, 2 service provider (ACSE),
            3 service provider (presentation). None: 3 when transient, else 1.
        reject_reason: A-ASSOCIATE-RJ reason/diagnostic, valid for the source (source 1:
            1 no reason, 2 application context not supported, 3 calling AE not recognized,
            7 called AE not recognized; source 2: 1 no reason, 2 protocol version not supported;
            source 3: 1 temporary congestion, 2 local limit exceeded). None: 1.
        store_status: C-STORE status of ``dicom_status`` rules (0xA700 out of resources,
            0xA900 data set does not match SOP class, 0xC000 cannot understand, 0xB000
            coercion of data elements, ...).
        after_stores: ``dicom_abort``/``dicom_status``/``dicom_latency`` on C-STORE: apply only
            once the association has sent this many C-STORE requests.
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
    reject: str = "transient"
    reject_source: int | None = None
    reject_reason: int | None = None
    store_status: int = 0xA700
    after_stores: int = 0
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

    def rejection(self) -> tuple[int, int, int]:
        """The A-ASSOCIATE-RJ fields of a ``dicom_reject`` rule.

        Returns:
            ``(result, source, reason)``: result 1 permanent, 2 transient.
        """
        source, reason = _REJECT_DEFAULTS.get(self.reject, (1, 1))
        if self.reject_source is not None:
            source = self.reject_source
        if self.reject_reason is not None:
            reason = self.reject_reason
        return (2 if self.reject == "transient" else 1), source, reason

    def validate(self) -> None:
        """Check the options (called by :meth:`FaultRegistry.add`).

        Raises:
            ValueError: Naming the bad option and the values it accepts.
        """
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"fault times must be None or >= 0, got {self.times}")
        if self.after_stores < 0:
            raise ValueError(f"after_stores must be >= 0, got {self.after_stores}")
        if self.reject not in _REJECT_DEFAULTS:
            raise ValueError(f"reject must be 'transient' or 'permanent', got {self.reject!r}")
        _result, source, reason = self.rejection()
        if reason not in REJECT_REASONS.get(source, ()):
            raise ValueError(
                f"reject_source {source} with reject_reason {reason} is not a valid "
                f"A-ASSOCIATE-RJ; valid (source: reasons) are {REJECT_REASONS}"
            )
        if store_status_category(self.store_status) not in ("failure", "warning"):
            raise ValueError(
                f"store_status 0x{self.store_status:04X} is not a C-STORE failure or warning "
                "status; use e.g. 0xA700 (out of resources), 0xC000 (cannot understand) or "
                "0xB000 (coercion of data elements)"
            )
        try:
            re.compile(self.route)
        except re.error as exc:
            raise ValueError(f"fault route {self.route!r} is not a valid regex: {exc}") from exc


def store_status_category(status: int) -> str:
    """Classify a DIMSE status code (PS3.7 Annex C, PS3.4 Table B.2-1).

    Args:
        status: The 16-bit status.

    Returns:
        ``success``, ``warning`` (0x0001, 0xB000-0xBFFF), ``failure`` (0x0100-0x02FF,
        0xA000-0xAFFF, 0xC000-0xCFFF), ``cancel``, ``pending`` or ``unknown``.

    Example:
        >>> store_status_category(0xA700)
        'failure'
    """
    if status == 0x0000:
        return "success"
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF:
        return "warning"
    if 0x0100 <= status <= 0x02FF or 0xA000 <= status <= 0xAFFF or 0xC000 <= status <= 0xCFFF:
        return "failure"
    if status == 0xFE00:
        return "cancel"
    if status in (0xFF00, 0xFF01):
        return "pending"
    return "unknown"


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
            ValueError: For an unknown kind, a bad rate or option, or an invalid regex.
        """
        rule.validate()
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
        self,
        target: str,
        kinds: tuple[str, ...],
        *,
        first_only: bool = False,
        eligible: Callable[[FaultRule], bool] | None = None,
    ) -> list[FaultRule]:
        """Pick the rules of the given kinds that fire for this request (and count them).

        Args:
            target: ``"METHOD /path"``.
            kinds: Kinds the caller is about to apply.
            first_only: Stop at the first rule that fires (for faults that replace the reply,
                so a rule that would not be applied does not spend its ``times``).
            eligible: Extra condition a rule must meet before its rate is drawn (for options
                such as ``after_stores`` that depend on the caller's context).

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
                if eligible is not None and not eligible(rule):
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
