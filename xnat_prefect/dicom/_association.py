"""Opening and closing DICOM associations for the C-STORE sender (pynetdicom).

Private to :mod:`xnat_prefect.dicom.store_scu`, which re-exports :class:`DicomNetworkError`.
It turns pynetdicom's association outcomes into typed errors that name the host, port, AE
title and the fix, and works around two pynetdicom behaviours (Nagle stalls and a racy
reactor pause) on the associations it opens.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, evt

from xnat_prefect.errors import InvalidInputError, XNATError

__all__ = ["DicomNetworkError", "associate", "close", "make_ae"]

LOG = logging.getLogger(__name__)


class DicomNetworkError(XNATError):
    """A DICOM association could not be opened or an echo failed.

    Import it from :mod:`xnat_prefect.dicom.store_scu`.

    Args:
        message: What happened and how to fix it.
        host: SCP host.
        port: SCP port.
        called_aet: The AE title that was called.
        transient: Whether retrying later may succeed (refused, timeout, busy SCP).
    """

    def __init__(
        self, message: str, *, host: str, port: int, called_aet: str, transient: bool
    ) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.port = port
        self.called_aet = called_aet
        self.transient = transient


def make_ae(calling_aet: str, *, timeout: float, max_pdu: int) -> Any:
    """Build a requestor AE with every timeout set.

    Args:
        calling_aet: Our AE title.
        timeout: Seconds for connecting, ACSE, DIMSE and network idle.
        max_pdu: Largest PDU we accept (0 = unlimited).

    Returns:
        The pynetdicom ``AE``.

    Raises:
        InvalidInputError: The AE title is not 1-16 ASCII characters.

    Example:
        >>> ae = make_ae("XNATPREFECT", timeout=10, max_pdu=16382)
    """
    try:
        ae = AE(ae_title=calling_aet)
    except ValueError as exc:
        raise InvalidInputError(
            f"calling AE title {calling_aet!r} is invalid ({exc}); use 1-16 ASCII characters"
        ) from exc
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.maximum_pdu_size = max_pdu
    return ae


def associate(ae: Any, host: str, port: int, called_aet: str, *, timeout: float) -> Any:
    """Open an association, or raise a :class:`DicomNetworkError` saying why not.

    Args:
        ae: The requestor AE (contexts already added).
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        timeout: Seconds used for the timeouts (for the message).

    Returns:
        The established ``Association``.

    Raises:
        DicomNetworkError: Refused, rejected, aborted or timed out.
        InvalidInputError: The called AE title is not 1-16 ASCII characters.

    Example:
        >>> assoc = associate(ae, "127.0.0.1", 8104, "XNAT", timeout=10)
    """
    connected = threading.Event()

    def on_open(event: Any) -> None:
        connected.set()
        _disable_nagle(event)

    handlers = [(evt.EVT_CONN_OPEN, on_open)]
    try:
        assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=handlers)
    except ValueError as exc:
        raise InvalidInputError(
            f"cannot call AE title {called_aet!r} at {host}:{port}: {exc}; an AE title is "
            "1-16 ASCII characters"
        ) from exc
    if assoc.is_established:
        _keep_replies_for_caller(assoc)
        return assoc
    raise _association_error(assoc, connected.is_set(), host, port, called_aet, timeout)


def _association_error(
    assoc: Any, connected: bool, host: str, port: int, called_aet: str, timeout: float
) -> DicomNetworkError:
    where = f"DICOM association to {called_aet!r} at {host}:{port}"
    reply = assoc.acceptor.primitive
    transient = True
    if not connected:
        message = (
            f"{where} failed: could not connect (refused or timed out after {timeout:g} s). "
            "Check the host and port (XNAT's receiver defaults to 8104) and that the "
            "receiver is enabled"
        )
    elif assoc.is_rejected and reply is not None:
        transient = reply.result == 0x02
        reason = f"{reply.result_str}, {reply.source_str}: {reply.reason_str}"
        fix = "retry later"
        if reply.result_source == 0x01 and reply.diagnostic == 0x07:
            fix = (
                f"the SCP does not answer to AE title {called_aet!r}: use the receiver's AE "
                "title (XNAT's default receiver is 'XNAT'; see Administer > DICOM SCP Receivers)"
            )
        elif reply.result_source == 0x01 and reply.diagnostic == 0x03:
            fix = "the SCP does not accept our calling AE title: ask its admin to allow it"
        elif not transient:
            fix = "check the SCP's configuration"
        message = f"{where} was rejected ({reason}); {fix}"
    elif assoc.rejected_contexts and not assoc.accepted_contexts:
        transient = False
        refused = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})[:5]
        message = (
            f"{where} was aborted: the SCP accepted none of the proposed SOP classes "
            f"({', '.join(UID(u).name for u in refused)}); it cannot store these files"
        )
    else:
        message = (
            f"{where} failed: the SCP aborted or did not answer within {timeout:g} s; "
            "check the port is a DICOM port and the SCP is healthy"
        )
    return DicomNetworkError(
        message, host=host, port=port, called_aet=called_aet, transient=transient
    )


def close(assoc: Any) -> None:
    """Release an association if it is still up and wait for its thread.

    Args:
        assoc: The ``Association``.

    Example:
        >>> close(assoc)
    """
    if assoc.is_established:
        assoc.release()
    if assoc.is_alive():
        assoc.join(5)


def _disable_nagle(event: Any) -> None:
    """Send each PDU at once (TCP_NODELAY).

    pynetdicom writes a C-STORE as several small PDUs; with Nagle's algorithm each one can
    wait for the peer's delayed ACK (~40 ms), which caps small files at ~20 per second.
    """
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:  # pynetdicom internals moved, or a non-TCP socket
        LOG.debug("could not set TCP_NODELAY: %s", exc)


def _keep_replies_for_caller(assoc: Any) -> None:
    """Stop the association's reactor thread from taking DIMSE replies meant for us.

    pynetdicom's reactor polls ``dimse.get_msg(block=False)`` to serve incoming requests and
    pauses around each ``send_c_store``, but the pause is racy: under load the reactor can take
    the C-STORE reply, log "Received unexpected C-STORE service message" and leave
    ``send_c_store`` waiting for the full DIMSE timeout. Our associations only send requests,
    so the reactor never needs a message: its non-blocking reads get nothing.
    """
    dimse = assoc.dimse
    read = dimse.get_msg

    def get_msg(block: bool = False) -> tuple[Any, Any]:
        if not block:
            return None, None
        return read(block=True)  # type: ignore[no-any-return]

    dimse.get_msg = get_msg
