"""A DICOM C-STORE receiver (SCP) for the XNAT emulator, on pynetdicom.

Like XNAT's receiver (AE title ``XNAT``) it answers C-ECHO and C-STORE for every storage SOP
class in every transfer syntax pydicom knows, stores each dataset exactly as received (no
decompression) as a Part-10 file, and rejects associations whose called AE title is not its
own. Each stored file is handed to ``on_stored``, which takes ownership of it. An optional
:class:`DicomFaultPolicy` (the emulator's is :class:`~xnat_prefect.testing.scp_faults.DicomFaults`)
may delay replies, reject associations, abort them or fail C-STOREs.

Example:
    >>> def on_stored(path: Path, context: StoreContext) -> None:
    ...     path.rename(inbox / path.name)
    >>> with DicomReceiver(on_stored=on_stored, workspace=tmp_path) as receiver:
    ...     print(receiver.port)  # send C-STOREs to 127.0.0.1:receiver.port, AE "XNAT"
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

__all__ = [
    "STATUS_CANNOT_UNDERSTAND",
    "STATUS_SUCCESS",
    "DicomFaultPolicy",
    "DicomReceiver",
    "StoreContext",
    "StoreVerdict",
]

LOG = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
#: Failure status returned when ``on_stored`` raises (the 0xC000 "cannot understand" class).
STATUS_CANNOT_UNDERSTAND = 0xC000
_ERROR_COMMENT_MAX = 64  # (0000,0902) Error Comment is LO


@dataclass(frozen=True)
class StoreContext:
    """Who sent a stored dataset, and what it is.

    Attributes:
        calling_ae: The sender's AE title.
        called_ae: The AE title the sender addressed.
        remote_host: The sender's IP address.
        remote_port: The sender's TCP port.
        sop_class_uid: Affected SOP Class UID of the C-STORE.
        sop_instance_uid: Affected SOP Instance UID of the C-STORE.
        transfer_syntax_uid: Transfer syntax the dataset arrived (and was stored) in.
    """

    calling_ae: str
    called_ae: str
    remote_host: str
    remote_port: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


@dataclass(frozen=True)
class StoreVerdict:
    """What a :class:`DicomFaultPolicy` decided for one C-STORE request.

    Attributes:
        abort: Abort the association (A-ABORT) instead of answering; nothing is stored.
        status: Status to answer instead of success (None: the normal outcome).
        comment: Error Comment sent with ``status``.
        store: With ``status``: store the dataset anyway (a warning status).
    """

    abort: bool = False
    status: int | None = None
    comment: str = ""
    store: bool = False


class DicomFaultPolicy(Protocol):
    """Decides the injected faults of a :class:`DicomReceiver` (called in association threads).

    Implementations sleep themselves to delay a reply.
    """

    def on_associate(self, calling_ae: str, called_ae: str) -> tuple[int, int, int] | None:
        """Called when an A-ASSOCIATE-RQ arrives.

        Args:
            calling_ae: The requestor's AE title.
            called_ae: The AE title it addressed.

        Returns:
            ``(result, source, reason)`` to reject the association, None to go on.
        """

    def on_echo(self, calling_ae: str, called_ae: str) -> None:
        """Called before a C-ECHO is answered.

        Args:
            calling_ae: The requestor's AE title.
            called_ae: The AE title it addressed.
        """

    def on_store(self, context: StoreContext, earlier: int) -> StoreVerdict:
        """Called before a C-STORE is stored and answered.

        Args:
            context: The request.
            earlier: C-STORE requests this association sent before this one.

        Returns:
            The verdict.
        """


class DicomReceiver:
    """A non-blocking, thread-based C-ECHO/C-STORE receiver.

    Args:
        ae_title: The receiver's AE title (XNAT's default is ``XNAT``).
        host: Interface to listen on.
        port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        on_stored: Called as ``on_stored(path, context)`` for every stored dataset, in the
            association's thread. It owns the file at ``path`` (move or delete it). If it
            raises, the sender gets status 0xC000 with the error text and the file is deleted.
        workspace: Directory for received files (created if missing).
        accept_any_called_ae: Accept associations addressed to any AE title.
        max_pdu: Largest PDU the receiver accepts (0 = unlimited).
        max_associations: Concurrent associations allowed (more are rejected, transiently).
        network_timeout: Seconds an idle association stays open.
        faults: Fault-injection policy (None: none).

    Example:
        >>> receiver = DicomReceiver(on_stored=handler, workspace=tmp_path).start()
        >>> receiver.port > 0
        True
        >>> receiver.stop()
    """

    def __init__(
        self,
        *,
        ae_title: str = "XNAT",
        host: str = "127.0.0.1",
        port: int = 0,
        on_stored: Callable[[Path, StoreContext], None],
        workspace: Path,
        accept_any_called_ae: bool = False,
        max_pdu: int = 0,
        max_associations: int = 64,
        network_timeout: float = 60.0,
        faults: DicomFaultPolicy | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self._requested_port = port
        self._on_stored = on_stored
        self.workspace = workspace
        self.accept_any_called_ae = accept_any_called_ae
        self._max_pdu = max_pdu
        self._max_associations = max_associations
        self._network_timeout = network_timeout
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stored = 0
        self._failed = 0
        self._faults = faults
        self._requests: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (the requested one until :meth:`start`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        """Whether the receiver is accepting associations."""
        return self._server is not None

    @property
    def counts(self) -> tuple[int, int]:
        """``(stored, failed)`` C-STORE counts since start."""
        with self._lock:
            return self._stored, self._failed

    def start(self) -> DicomReceiver:
        """Bind the port and start accepting associations in a background thread.

        Returns:
            ``self``.

        Raises:
            RuntimeError: Already running.
            OSError: The port cannot be bound (in use, no permission).

        Example:
            >>> receiver.start().port
            41234
        """
        if self._server is not None:
            raise RuntimeError(f"DicomReceiver {self.ae_title!r} is already running")
        self.workspace.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = self._max_pdu
        ae.maximum_associations = self._max_associations
        ae.network_timeout = self._network_timeout
        ae.require_called_aet = not self.accept_any_called_ae
        transfer_syntaxes = list(AllTransferSyntaxes)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), transfer_syntaxes)
        ae.add_supported_context(Verification, transfer_syntaxes)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_CONN_OPEN, _disable_nagle),
            (evt.EVT_REQUESTED, self._handle_requested),
        ]
        server = ae.make_server(
            (self.host, self._requested_port),
            evt_handlers=handlers,
            server_class=ThreadedAssociationServer,
        )
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"xnat-emulator-dicom-{server.server_address[1]}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        LOG.info("DICOM receiver %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop accepting, abort open associations and join every thread (idempotent).

        Args:
            timeout: Seconds to wait for each thread.

        Example:
            >>> receiver.stop()
        """
        server, thread = self._server, self._thread
        if server is None:
            return
        active = server.active_associations
        socketserver.BaseServer.shutdown(server)  # ends serve_forever (made by make_server)
        server.server_close()
        for assoc in active + server.active_associations:
            assoc.abort()
        for assoc in active + server.active_associations:
            assoc.join(timeout)
        socketserver.ThreadingMixIn.server_close(server)  # joins connection-handler threads
        if thread is not None:
            thread.join(timeout)
        self._server = self._thread = None
        LOG.info("DICOM receiver %s stopped", self.ae_title)

    def __enter__(self) -> DicomReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"DicomReceiver(ae_title={self.ae_title!r}, port={self.port}, {state})"

    # ------------------------------------------------------------------ handlers

    def _handle_requested(self, event: Any) -> None:
        """A-ASSOCIATE-RQ received: let the fault policy delay or reject it."""
        if self._faults is None:
            return
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        rejection = self._faults.on_associate(
            str(primitive.calling_ae_title).strip(), str(primitive.called_ae_title).strip()
        )
        if rejection is None:
            return
        LOG.info("DICOM receiver: fault injection rejects the association %s", rejection)
        # pynetdicom skips its own negotiation once the EVT_REQUESTED handler rejected.
        assoc.acse.send_reject(*rejection)
        assoc.is_rejected = True
        assoc.kill()

    def _handle_echo(self, event: Any) -> int:
        if self._faults is not None:
            requestor = event.assoc.requestor
            self._faults.on_echo(
                str(requestor.ae_title).strip(),
                str(requestor.primitive.called_ae_title).strip(),
            )
        return STATUS_SUCCESS

    def _handle_store(self, event: Any) -> Dataset | int:
        assoc = event.assoc
        request = event.request
        context = StoreContext(
            calling_ae=str(assoc.requestor.ae_title).strip(),
            called_ae=str(assoc.requestor.primitive.called_ae_title).strip(),
            remote_host=str(assoc.requestor.address),
            remote_port=int(assoc.requestor.port),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            transfer_syntax_uid=str(event.context.transfer_syntax),
        )
        verdict = StoreVerdict()
        if self._faults is not None:
            with self._lock:
                earlier = self._requests.get(assoc, 0)
                self._requests[assoc] = earlier + 1
            verdict = self._faults.on_store(context, earlier)
            if verdict.abort:
                LOG.info("DICOM receiver: fault injection aborts the association")
                assoc.abort()  # non-blocking inside a handler: A-ABORT, no C-STORE-RSP
                assoc.is_established = False
                with self._lock:
                    self._failed += 1
                return STATUS_CANNOT_UNDERSTAND  # never sent: the association is gone
            if verdict.status is not None and not verdict.store:
                return self._failure(verdict.status, verdict.comment)
        name = uuid.uuid4().hex
        part = self.workspace / f".{name}.part"
        path = self.workspace / f"{name}.dcm"
        try:
            with part.open("wb") as fp:
                fp.write(event.encoded_dataset())
            part.replace(path)
        except OSError as exc:
            part.unlink(missing_ok=True)
            LOG.warning("DICOM receiver could not write %s: %s", part, exc)
            return self._failure(0xA700, f"out of resources: {exc}")
        try:
            self._on_stored(path, context)
        except Exception as exc:  # any handler failure becomes a C-STORE failure status
            LOG.warning(
                "DICOM receiver: handling SOP instance %s from %s failed: %s",
                context.sop_instance_uid,
                context.calling_ae,
                exc,
                exc_info=LOG.isEnabledFor(logging.DEBUG),
            )
            path.unlink(missing_ok=True)
            return self._failure(STATUS_CANNOT_UNDERSTAND, str(exc) or type(exc).__name__)
        with self._lock:
            self._stored += 1
        if verdict.status is not None:  # a warning: stored, and the status says so
            return _status(verdict.status, verdict.comment)
        return STATUS_SUCCESS

    def _failure(self, status: int, comment: str) -> Dataset:
        with self._lock:
            self._failed += 1
        return _status(status, comment)


def _status(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = comment.replace("\\", "/")[:_ERROR_COMMENT_MAX]
    return ds


def _disable_nagle(event: Any) -> None:
    """Answer each PDU at once (TCP_NODELAY): avoids ~40 ms delayed-ACK stalls per C-STORE."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:  # pynetdicom internals moved, or a non-TCP socket
        LOG.debug("could not set TCP_NODELAY: %s", exc)
