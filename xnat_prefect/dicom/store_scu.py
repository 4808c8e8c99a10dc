"""Send DICOM files to an SCP (such as XNAT's DICOM receiver) with C-ECHO and C-STORE.

One association carries many files; presentation contexts come from the files' own SOP
classes and transfer syntaxes, so compressed data is sent as stored. Files are read from disk
one at a time while sending.

Example:
    >>> echo("xnat.example.org", 8104, "XNAT")
    >>> results = send_files(files, "xnat.example.org", 8104, "XNAT")
    >>> sum(r.ok for r in results) == len(files)
    True
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from xnat_prefect.dicom._association import DicomNetworkError, associate, close, make_ae
from xnat_prefect.errors import InvalidInputError

__all__ = [
    "DEFAULT_CALLING_AET",
    "MAX_CONTEXTS",
    "NOT_SENT",
    "DicomNetworkError",
    "StoreResult",
    "echo",
    "send_files",
    "send_parallel",
]

LOG = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "XNATPREFECT"
#: Status of a :class:`StoreResult` for a file that was never accepted by the SCP.
NOT_SENT = -1
#: pynetdicom (and DICOM) allow at most 128 presentation contexts per association.
MAX_CONTEXTS = 128
_WARNING_STATUSES = frozenset({0x0001, 0x0107, 0x0116})
#: What reading or encoding a broken file inside ``send_c_store`` raises.
_UNREADABLE = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    struct.error,
    InvalidDicomError,
    BytesLengthException,
)

ResultCallback = Callable[["StoreResult"], None]


@dataclass(frozen=True)
class StoreResult:
    """The outcome of one C-STORE.

    Attributes:
        path: The file.
        sop_instance_uid: Its SOP Instance UID (``None`` if the file could not be read).
        status: The SCP's DIMSE status, or :data:`NOT_SENT` (-1).
        ok: Success or a warning status (the SCP stored the file).
        error: Why it failed (``None`` when ok).
        transient: The file was not sent because the network or the association failed
            (a reset, a lost or unopenable association), so sending it again later may
            succeed; False for files the SCP refused or that could not be read.
    """

    path: Path
    sop_instance_uid: str | None
    status: int
    ok: bool
    error: str | None
    transient: bool = False


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    index: int = 0
    sop_class: str = ""
    sop_instance: str | None = None
    transfer_syntax: str = ""
    error: str | None = None


def echo(
    host: str,
    port: int,
    called_aet: str,
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    timeout: float = 10.0,
) -> None:
    """Check that a DICOM SCP answers a C-ECHO.

    Args:
        host: SCP host name or address.
        port: SCP port (XNAT's default receiver listens on 8104).
        called_aet: The SCP's AE title (XNAT's default is ``XNAT``).
        calling_aet: Our AE title.
        timeout: Seconds for connecting and for each reply.

    Raises:
        DicomNetworkError: Nothing listens, the association is rejected (the message names
            the wrong AE title), it times out, or the echo status is not success.
        InvalidInputError: An AE title is not 1-16 ASCII characters.

    Example:
        >>> echo("127.0.0.1", 8104, "XNAT")
    """
    ae = make_ae(calling_aet, timeout=timeout, max_pdu=16382)
    ae.add_requested_context(Verification)
    assoc = associate(ae, host, port, called_aet, timeout=timeout)
    try:
        status = assoc.send_c_echo()
    finally:
        close(assoc)
    code = int(getattr(status, "Status", -1))
    if code != 0x0000:
        raise DicomNetworkError(
            f"C-ECHO to {called_aet}@{host}:{port} returned "
            f"{'no reply' if code < 0 else f'status 0x{code:04X}'}; the SCP is up but not "
            "answering verification: check the receiver is enabled",
            host=host,
            port=port,
            called_aet=called_aet,
            transient=code < 0,
        )


def send_files(
    files: Sequence[Path],
    host: str,
    port: int,
    called_aet: str,
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    max_pdu: int = 16382,
    timeout: float = 30.0,
    on_result: ResultCallback | None = None,
) -> list[StoreResult]:
    """C-STORE files over one association (more only beyond 128 SOP class/syntax pairs).

    Each file's SOP class and transfer syntax are read from its file meta; one presentation
    context is proposed per pair, so files go as stored (an uncompressed file also gets an
    Implicit VR Little Endian fallback context). If the association drops mid-way, or a
    reply does not come within ``timeout`` (a reset is often noticed only then), the
    association is aborted and a new one is opened for the rest, starting with the file whose
    reply was lost (the SCP may then receive it twice; C-STORE of the same SOP instance is
    idempotent). Associations are reopened as long as each one stored at least one file; two
    lost in a row without progress give up, and the files left come back :data:`NOT_SENT`
    with ``transient=True``. Files that cannot be read, or whose context the SCP refused,
    come back with status :data:`NOT_SENT` rather than raising.

    Args:
        files: Part-10 DICOM files.
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        calling_aet: Our AE title.
        max_pdu: Largest PDU we accept from the SCP (0 = unlimited).
        timeout: Seconds for connecting and for each reply.
        on_result: Called with each :class:`StoreResult` as it arrives.

    Returns:
        One :class:`StoreResult` per file, in the order of ``files``.

    Raises:
        DicomNetworkError: The first association could not be opened.
        InvalidInputError: An AE title is not 1-16 ASCII characters.

    Example:
        >>> results = send_files(files, "127.0.0.1", 8104, "XNAT")
        >>> [r.error for r in results if not r.ok]
        []
    """
    infos = [_inspect(Path(f), index) for index, f in enumerate(files)]
    results: dict[int, StoreResult] = {}
    for info in infos:
        if info.error is not None:
            results[info.index] = _not_sent(info, info.error, on_result)
    groups = _plan_associations([i for i in infos if i.error is None])
    for group_index, group in enumerate(groups):
        try:
            sent = _send_group(
                group,
                host=host,
                port=port,
                called_aet=called_aet,
                calling_aet=calling_aet,
                max_pdu=max_pdu,
                timeout=timeout,
                on_result=on_result,
            )
        except DicomNetworkError as exc:
            if group_index == 0:
                raise
            sent = [
                _not_sent(info, exc.message, on_result, transient=exc.transient) for info in group
            ]
        for info, result in zip(group, sent, strict=True):
            results[info.index] = result
    return [results[n] for n in range(len(infos))]


def send_parallel(
    batches: Sequence[Sequence[Path]],
    host: str,
    port: int,
    called_aet: str,
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    workers: int = 4,
    max_pdu: int = 16382,
    timeout: float = 30.0,
    on_result: ResultCallback | None = None,
) -> list[StoreResult]:
    """C-STORE batches of files in parallel, one association per batch, ``workers`` at a time.

    Use :func:`xnat_prefect.dicom.batching.split_into_n_batches` with ``num_batches=workers``
    to get exactly one association per worker thread.

    Args:
        batches: Lists of Part-10 files.
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        calling_aet: Our AE title.
        workers: Concurrent associations (≥ 1).
        max_pdu: Largest PDU we accept from the SCP.
        timeout: Seconds for connecting and for each reply.
        on_result: Called with each result, from the worker threads (must be thread-safe).

    Returns:
        The results of every batch, in batch order. A batch whose association failed while
        others succeeded has :data:`NOT_SENT` results naming the error.

    Raises:
        InvalidInputError: ``workers`` < 1, or an AE title is invalid.
        DicomNetworkError: No batch could open an association.

    Example:
        >>> batches = split_into_n_batches(files, 4)
        >>> results = send_parallel(batches, "127.0.0.1", 8104, "XNAT", workers=4)
    """
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1 (got {workers}); use 1 to send serially")
    todo = [list(b) for b in batches if b]
    if not todo:
        return []
    errors: list[DicomNetworkError] = []
    lock = threading.Lock()

    def run(batch: list[Path]) -> list[StoreResult]:
        try:
            return send_files(
                batch,
                host,
                port,
                called_aet,
                calling_aet=calling_aet,
                max_pdu=max_pdu,
                timeout=timeout,
                on_result=on_result,
            )
        except DicomNetworkError as exc:
            with lock:
                errors.append(exc)
            return [
                _not_sent(_FileInfo(path=p), exc.message, on_result, transient=exc.transient)
                for p in batch
            ]

    with ThreadPoolExecutor(
        max_workers=min(workers, len(todo)), thread_name_prefix="dicom-store"
    ) as pool:
        per_batch = list(pool.map(run, todo))
    if len(errors) == len(todo):
        raise errors[0]
    return [result for results in per_batch for result in results]


# ----------------------------------------------------------------------------- internals


def _inspect(path: Path, index: int) -> _FileInfo:
    try:
        meta = read_file_meta_info(path)
    except (OSError, InvalidDicomError, ValueError, EOFError) as exc:
        return _FileInfo(path, index, error=f"not a readable DICOM Part-10 file: {exc}")
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    sop_instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if not (sop_class and sop_instance and syntax):
        return _FileInfo(
            path,
            index,
            error="DICOM file meta lacks the SOP class, SOP instance or transfer syntax UID; "
            "rewrite the file as Part-10 (e.g. pydicom save_as(enforce_file_format=True))",
        )
    return _FileInfo(path, index, sop_class, sop_instance, syntax)


def _plan_associations(infos: list[_FileInfo]) -> list[list[_FileInfo]]:
    """Split files so that no association needs more than 128 presentation contexts."""
    pairs: dict[tuple[str, str], list[_FileInfo]] = {}
    for info in infos:
        pairs.setdefault((info.sop_class, info.transfer_syntax), []).append(info)
    groups: list[list[_FileInfo]] = []
    chunk: set[tuple[str, str]] = set()
    used = 0
    for key in pairs:
        needed = len(_syntaxes_for(key[1]))
        if chunk and used + needed > MAX_CONTEXTS:
            groups.append([i for i in infos if (i.sop_class, i.transfer_syntax) in chunk])
            chunk, used = set(), 0
        chunk.add(key)
        used += needed
    if chunk:
        groups.append([i for i in infos if (i.sop_class, i.transfer_syntax) in chunk])
    return groups


def _syntaxes_for(transfer_syntax: str) -> list[str]:
    """The contexts to propose for one transfer syntax: itself, then a fallback.

    Each context carries ONE transfer syntax so the SCP cannot pick a different one for
    files it could take as stored. An uncompressed file also gets an Implicit VR Little
    Endian context (every SCP supports it), to which pynetdicom can convert.
    """
    if transfer_syntax == ImplicitVRLittleEndian or UID(transfer_syntax).is_compressed:
        return [transfer_syntax]
    return [transfer_syntax, ImplicitVRLittleEndian]


def _send_group(
    group: list[_FileInfo],
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    max_pdu: int,
    timeout: float,
    on_result: ResultCallback | None,
) -> list[StoreResult]:
    ae = make_ae(calling_aet, timeout=timeout, max_pdu=max_pdu)
    for sop_class, syntax in _contexts(group):
        ae.add_requested_context(sop_class, [syntax])
    results: list[StoreResult] = []
    pending = deque(group)
    # one more association after a loss; refilled whenever an association stored a file, so
    # several resets in one batch are survived while a file that kills every association is not
    reassociations = 1
    while pending:
        try:
            assoc = associate(ae, host, port, called_aet, timeout=timeout)
        except DicomNetworkError as exc:
            if not results:
                raise
            results += [
                _not_sent(info, exc.message, on_result, transient=exc.transient) for info in pending
            ]
            break
        stored = 0
        try:
            while pending:
                result = _store_one(assoc, pending[0])
                if result is None:
                    break  # association lost: retry this file on a new association
                pending.popleft()
                results.append(result)
                stored += 1
                if on_result is not None:
                    on_result(result)
        finally:
            close(assoc)
        if not pending:
            break
        if stored:
            reassociations = 1
        if reassociations == 0:
            message = (
                f"association to {called_aet}@{host}:{port} was lost twice in a row without "
                "storing a file; not sent (run again to resend)"
            )
            results += [_not_sent(info, message, on_result, transient=True) for info in pending]
            break
        LOG.warning(
            "association to %s@%s:%d lost after %d file(s); reconnecting to resend %d",
            called_aet,
            host,
            port,
            stored,
            len(pending),
        )
        reassociations -= 1
    return results


def _contexts(group: Iterable[_FileInfo]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for info in group:
        for syntax in _syntaxes_for(info.transfer_syntax):
            seen.setdefault((info.sop_class, syntax), None)
    return list(seen)


def _store_one(assoc: Any, info: _FileInfo) -> StoreResult | None:
    """Send one file; ``None`` means no reply came (the association is lost or aborted)."""
    if not _has_context(assoc, info):
        return StoreResult(
            info.path,
            info.sop_instance,
            NOT_SENT,
            False,
            f"the SCP refused SOP class {UID(info.sop_class).name} in transfer syntax "
            f"{UID(info.transfer_syntax).name}; it cannot store this file as it is",
        )
    try:
        reply = assoc.send_c_store(info.path)
    except RuntimeError:
        return None  # the association is no longer established
    except _UNREADABLE as exc:
        message = f"could not read or encode the file ({type(exc).__name__}: {exc})"
        return StoreResult(info.path, info.sop_instance, NOT_SENT, False, message)
    if "Status" not in reply:
        # No reply within the DIMSE timeout, or the association died: either way it cannot be
        # trusted any more (a TCP reset is often noticed only at the timeout). Abort it and
        # resend this file on a new association (a C-STORE of the same instance is idempotent).
        if assoc.is_established:
            LOG.warning(
                "no C-STORE reply for %s within the timeout; aborting the association",
                info.path.name,
            )
            assoc.abort()
        return None
    status = int(reply.Status)
    ok = status == 0x0000 or status in _WARNING_STATUSES or 0xB000 <= status <= 0xBFFF
    error = None
    if not ok:
        comment = str(reply.get("ErrorComment", "") or "").strip()
        error = f"C-STORE failed with status 0x{status:04X}" + (f": {comment}" if comment else "")
    return StoreResult(info.path, info.sop_instance, status, ok, error)


def _has_context(assoc: Any, info: _FileInfo) -> bool:
    """Whether an accepted context can carry the file (as stored, or converted if uncompressed)."""
    for context in assoc.accepted_contexts:
        if context.abstract_syntax != info.sop_class:
            continue
        accepted = context.transfer_syntax[0]
        if accepted == info.transfer_syntax:
            return True
        if not UID(info.transfer_syntax).is_compressed and not UID(accepted).is_compressed:
            return True
    return False


def _not_sent(
    info: _FileInfo,
    message: str,
    on_result: ResultCallback | None,
    *,
    transient: bool = False,
) -> StoreResult:
    result = StoreResult(info.path, info.sop_instance, NOT_SENT, False, message, transient)
    if on_result is not None:
        on_result(result)
    return result
