"""Fault injection for the emulator's DICOM C-STORE receiver (the ``dicom_*`` fault kinds).

:class:`DicomFaults` is the :class:`~xnat_prefect.testing.scp.DicomFaultPolicy` the emulator
hands its receiver. It draws rules from the same :class:`~xnat_prefect.testing.faults.FaultRegistry`
as the HTTP faults (seeded rates, ``times`` budgets, ``fired`` counts) and counts every fired
fault in the metrics' ``faults``. A rule's ``route`` regex is searched in one of these targets:

* ``"ASSOCIATE <calling AE> <called AE>"`` — an association request (``dicom_reject``,
  ``dicom_latency``);
* ``"C-ECHO <calling AE> <called AE>"`` (``dicom_latency``);
* ``"C-STORE <calling AE> <called AE> <SOP Class UID> <SOP Instance UID>"`` (``dicom_latency``,
  ``dicom_abort``, ``dicom_status``).

Example:
    >>> xnat.add_fault(r"^C-STORE STORESCU ", "dicom_abort", after_stores=3, times=1)
    >>> xnat.add_fault(r"^ASSOCIATE ", "dicom_reject", reject="transient", times=2)
"""

from __future__ import annotations

import logging
import time

from xnat_prefect.testing.faults import FaultRegistry, FaultRule, store_status_category
from xnat_prefect.testing.metrics import Metrics
from xnat_prefect.testing.scp import StoreContext, StoreVerdict

__all__ = ["DicomFaults", "associate_target", "echo_target", "store_target"]

LOG = logging.getLogger(__name__)

_STORE_FAULTS = ("dicom_abort", "dicom_status")


def associate_target(calling_ae: str, called_ae: str) -> str:
    """The fault target of an association request.

    Args:
        calling_ae: The requestor's AE title.
        called_ae: The AE title it addressed.

    Returns:
        ``"ASSOCIATE <calling> <called>"``.
    """
    return f"ASSOCIATE {calling_ae} {called_ae}"


def echo_target(calling_ae: str, called_ae: str) -> str:
    """The fault target of a C-ECHO.

    Args:
        calling_ae: The requestor's AE title.
        called_ae: The AE title it addressed.

    Returns:
        ``"C-ECHO <calling> <called>"``.
    """
    return f"C-ECHO {calling_ae} {called_ae}"


def store_target(context: StoreContext) -> str:
    """The fault target of a C-STORE.

    Args:
        context: The request.

    Returns:
        ``"C-STORE <calling> <called> <SOP Class UID> <SOP Instance UID>"``.
    """
    return (
        f"C-STORE {context.calling_ae} {context.called_ae} "
        f"{context.sop_class_uid} {context.sop_instance_uid}"
    )


class DicomFaults:
    """Applies the ``dicom_*`` rules of a fault registry to a DICOM receiver.

    Args:
        registry: The rules (shared with the HTTP faults).
        metrics: Where fired faults are counted (None: not counted).

    Example:
        >>> receiver = DicomReceiver(on_stored=..., workspace=..., faults=DicomFaults(registry))
    """

    def __init__(self, registry: FaultRegistry, metrics: Metrics | None = None) -> None:
        self._registry = registry
        self._metrics = metrics

    def _fired(self, rule: FaultRule) -> None:
        if self._metrics is not None:
            self._metrics.count_fault(rule.kind)

    def _delay(self, target: str, earlier: int | None = None) -> None:
        eligible = None if earlier is None else (lambda rule: earlier >= rule.after_stores)
        for rule in self._registry.draw(target, ("dicom_latency",), eligible=eligible):
            self._fired(rule)
            time.sleep(self._registry.latency_seconds(rule))

    def on_associate(self, calling_ae: str, called_ae: str) -> tuple[int, int, int] | None:
        """Delay, then maybe reject, an association request.

        Args:
            calling_ae: The requestor's AE title.
            called_ae: The AE title it addressed.

        Returns:
            ``(result, source, reason)`` of the A-ASSOCIATE-RJ to send, or None.
        """
        target = associate_target(calling_ae, called_ae)
        self._delay(target)
        for rule in self._registry.draw(target, ("dicom_reject",), first_only=True):
            self._fired(rule)
            return rule.rejection()
        return None

    def on_echo(self, calling_ae: str, called_ae: str) -> None:
        """Delay a C-ECHO reply.

        Args:
            calling_ae: The requestor's AE title.
            called_ae: The AE title it addressed.
        """
        self._delay(echo_target(calling_ae, called_ae))

    def on_store(self, context: StoreContext, earlier: int) -> StoreVerdict:
        """Delay a C-STORE reply, then maybe abort the association or answer another status.

        Rules whose ``after_stores`` exceeds ``earlier`` are skipped (no rate draw, no
        ``times`` spent). The first firing ``dicom_abort``/``dicom_status`` rule wins.

        Args:
            context: The request.
            earlier: C-STORE requests this association sent before this one.

        Returns:
            The verdict.
        """
        target = store_target(context)
        self._delay(target, earlier)
        fired = self._registry.draw(
            target,
            _STORE_FAULTS,
            first_only=True,
            eligible=lambda rule: earlier >= rule.after_stores,
        )
        for rule in fired:
            self._fired(rule)
            if rule.kind == "dicom_abort":
                return StoreVerdict(abort=True)
            warning = store_status_category(rule.store_status) == "warning"
            return StoreVerdict(status=rule.store_status, comment=rule.body, store=warning)
        return StoreVerdict()
