"""The upload engine shared by gradual-DICOM, DICOM-zip batches and zip sources.

A :class:`Payload` is one import-service request: one DICOM file (gradual-DICOM), one batch of
files streamed as a tar or built into a zip on disk, or a zip the caller already has. The
engine sends payloads on per-thread clients, retries transient failures per request and then
in lower-concurrency passes (:func:`run_in_passes`), records accepted files in the ledger and
reports exactly which files failed and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.models.transfer import UploadProgress, UploadSummary
from xnat_prefect.services._transfer_import import IngestLedger, ThreadClients, post_import
from xnat_prefect.services._transfer_retry import describe_error, run_in_passes
from xnat_prefect.services._transfer_streams import (
    ProgressCounters,
    ProgressReader,
    ProgressTracker,
    TarStream,
)
from xnat_prefect.services.ledger import file_stamp

__all__ = [
    "FilePayloads",
    "Payload",
    "SendOutcome",
    "TransferSettings",
    "changed_while_sent",
    "file_payload",
    "send_payloads",
    "summarize",
    "tar_payload",
    "upload_tracker",
]

logger = get_logger(__name__)

ByteCallback = Callable[[int], None]


@dataclass(frozen=True)
class TransferSettings:
    """Retry behaviour of a service's transfers.

    Attributes:
        max_retries: Retries of one request on transient failures.
        backoff_base: First backoff in seconds (doubles per retry).
    """

    max_retries: int = 5
    backoff_base: float = 1.0


@dataclass
class Payload:
    """One import-service request.

    Attributes:
        label: Name for logs and errors (file or batch name).
        files: The local files it carries (ledger and error reports).
        content_type: Request Content-Type.
        open_body: Makes a fresh body reporting bytes to the callback.
        prepare: Work to do before the first send (build a zip), run on the archive pool.
        cleanup: Called once the payload is finished (delete a temporary zip).
    """

    label: str
    files: list[Path]
    content_type: str
    open_body: Callable[[ByteCallback], Any]
    prepare: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None


def file_payload(path: Path, content_type: str, *, files: list[Path] | None = None) -> Payload:
    """A payload sending one file from disk as the raw body.

    Args:
        path: The file.
        content_type: Its Content-Type.
        files: Files it stands for (default: itself).

    Returns:
        The payload.
    """
    return Payload(
        label=path.name,
        files=files if files is not None else [path],
        content_type=content_type,
        open_body=lambda on_bytes: ProgressReader(path, on_bytes),
    )


class FilePayloads(Sequence[Payload]):
    """One :func:`file_payload` per file, each made when it is asked for.

    Behaves like ``[file_payload(p, content_type) for p in files]`` without holding a payload
    (with its list and closure) for every file of a large transfer at once.

    Args:
        files: The files, one request each.
        content_type: Their Content-Type.

    Example:
        ```python
        payloads = FilePayloads(files, "application/dicom")
        payloads[0].label  # files[0].name
        ```
    """

    def __init__(self, files: Sequence[Path], content_type: str) -> None:
        self._files = files
        self._content_type = content_type

    def __len__(self) -> int:
        return len(self._files)

    @overload
    def __getitem__(self, index: int) -> Payload: ...

    @overload
    def __getitem__(self, index: slice) -> list[Payload]: ...

    def __getitem__(self, index: int | slice) -> Payload | list[Payload]:
        if isinstance(index, slice):
            return [file_payload(p, self._content_type) for p in self._files[index]]
        return file_payload(self._files[index], self._content_type)


def tar_payload(label: str, files: Sequence[Path], *, root: Path) -> Payload:
    """A payload streaming files as an uncompressed tar (entry names relative to ``root``).

    Args:
        label: Batch name.
        files: The files (all under ``root``).
        root: Entry names are relative to it.

    Returns:
        The payload.
    """
    entries = [(p, p.relative_to(root).as_posix()) for p in files]
    return Payload(
        label=label,
        files=list(files),
        content_type="application/x-tar",
        open_body=lambda on_bytes: TarStream(entries, on_bytes),
    )


@dataclass
class SendOutcome:
    """What :func:`send_payloads` achieved.

    Attributes:
        uploaded: Files XNAT accepted in this run.
        errors: ``(file, reason)`` per failed file.
        uris: Session URIs XNAT answered.
        bytes_sent: Payload bytes of the accepted files.
    """

    uploaded: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    uris: set[str] = field(default_factory=set)
    bytes_sent: int = 0


def upload_tracker(
    callback: Callable[[UploadProgress], Any] | None, total: int
) -> ProgressTracker[UploadProgress]:
    """A progress tracker emitting :class:`UploadProgress`.

    Args:
        callback: The user's callback.
        total: Files in all.

    Returns:
        The tracker.
    """

    def build(c: ProgressCounters) -> UploadProgress:
        return UploadProgress(
            phase=c.phase,
            current=c.current,
            total=c.total,
            bytes_sent=c.bytes,
            current_file=c.current_file,
            succeeded=c.succeeded,
            failed=c.failed,
            message=c.message,
        )

    return ProgressTracker(callback, build, phase="collecting", total=total)


def _md5s_of(body: Any, files: list[Path]) -> Mapping[Path, str]:
    if isinstance(body, TarStream):
        return body.md5s
    if isinstance(body, ProgressReader) and len(files) == 1:
        return {files[0]: body.md5}
    return {}


def changed_while_sent(
    path: Path,
    before: tuple[int, int] | None,
    name: str | None = None,
    *,
    fix: str = "send it again",
) -> str | None:
    """Why a sent file cannot be confirmed: it changed (or vanished) since ``before``.

    XNAT received bytes read while the file was being rewritten, so neither the MD5 computed
    before sending nor the one hashed while streaming says what XNAT holds.

    Args:
        path: The local file.
        before: Its ``(size, mtime_ns)`` taken before any of its bytes were read for sending
            (None: not known, nothing to compare).
        name: How to call it in the message (default: the path).
        fix: What to do, completed with "once nothing writes to it".

    Returns:
        The reason (naming the file and the fix), or None when it is unchanged.

    Example:
        ```python
        before = file_stamp(path)
        send(path)
        problem = changed_while_sent(path, before)
        ```
    """
    if before is None:
        return None
    label = name or str(path)
    try:
        now = file_stamp(path)
    except OSError as exc:
        return (
            f"{label} vanished or became unreadable while it was being uploaded "
            f"({exc.strerror or exc}); put it back and {fix}"
        )
    if now == before:
        return None
    return (
        f"{label} changed while it was being uploaded (size {before[0]} -> {now[0]} bytes, "
        f"or a new modification time); XNAT may hold a mix of old and new bytes: {fix} once "
        "nothing writes to it"
    )


Stamps = tuple[tuple[int, int] | None, ...]
"""``(size, mtime_ns)`` of each file of a payload, in the order of ``Payload.files``."""


def _stamps(files: Sequence[Path]) -> Stamps:
    return tuple(_stamp(path) for path in files)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        return file_stamp(path)
    except OSError:
        return None  # reading it for the body fails and reports it


def send_payloads(
    payloads: Sequence[Payload],
    params: Mapping[str, Any],
    *,
    clients: Callable[[], XNATClient],
    workers: int,
    settings: TransferSettings,
    tracker: ProgressTracker[UploadProgress],
    ingest: IngestLedger,
    archive_workers: int = 1,
    timeout: float | None = None,
) -> SendOutcome:
    """Send payloads in parallel with retries, passes, ledger records and per-file errors.

    Args:
        payloads: The requests to make.
        params: Import-service query parameters (the same for every payload).
        clients: Makes a new client (one per worker thread).
        workers: Concurrent requests in the first pass.
        settings: Retry settings.
        tracker: Progress.
        ingest: Ledger of the destination.
        archive_workers: Concurrent ``prepare`` steps (zip building).
        timeout: Request timeout in seconds.

    Returns:
        The outcome.
    """
    outcome = SendOutcome()
    lock = threading.Lock()
    prepared: dict[int, Future[None]] = {}
    preparing = [i for i, p in enumerate(payloads) if p.prepare is not None]
    archive_pool = (
        ThreadPoolExecutor(max_workers=max(1, archive_workers), thread_name_prefix="xnat-archive")
        if preparing
        else None
    )
    # (size, mtime_ns) of each payload's files before any of their bytes are read (zip
    # building included): a file that changes while it is sent is an error, not confirmed.
    # Kept until the payload is sent, so only payloads in flight or waiting for a retry pass
    # hold stamps.
    stamps: dict[int, Stamps] = {}

    def stamped(index: int, prepare: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            stamps[index] = _stamps(payloads[index].files)
            prepare()

        return run

    if archive_pool is not None:
        for index in preparing:
            prepare = payloads[index].prepare
            assert prepare is not None
            prepared[index] = archive_pool.submit(stamped(index, prepare))
    tracker.set_phase("uploading")
    thread_clients = ThreadClients(clients)

    def work(index: int) -> None:
        payload = payloads[index]
        if index in prepared:
            prepared[index].result()
        if index not in stamps:  # a retry pass keeps the stamps of the first attempt
            stamps[index] = _stamps(payload.files)
        before = stamps[index]
        holder: list[Any] = []

        def body() -> Any:
            made = payload.open_body(tracker.add_bytes)
            holder[:] = [made]
            return made

        uris = post_import(
            thread_clients.get(),
            params,
            body,
            content_type=payload.content_type,
            label=payload.label,
            max_retries=settings.max_retries,
            backoff_base=settings.backoff_base,
            timeout=timeout,
        )
        md5s = _md5s_of(holder[0], payload.files) if holder else {}
        changed = {
            path: why
            for path, stamp in zip(payload.files, before, strict=True)
            if (why := changed_while_sent(path, stamp)) is not None
        }
        kept = [p for p in payload.files if p not in changed]
        ingest.confirm(kept, remote=uris[0] if uris else None, md5s=md5s)
        size = sum(_size(p) for p in kept)
        for why in changed.values():
            logger.warning("%s: not confirmed: %s", payload.label, why)
        with lock:
            outcome.uris.update(uris)
            outcome.uploaded.extend(kept)
            outcome.errors.extend((str(p), why) for p, why in changed.items())
            outcome.bytes_sent += size
        if kept:
            tracker.item_done(True, payload.label, items=len(kept))
        if changed:
            tracker.item_done(False, payload.label, items=len(changed))
        if payload.cleanup is not None:
            payload.cleanup()
        stamps.pop(index, None)

    def retry_pass(number: int, count: int) -> None:
        tracker.set_phase("retrying", f"pass {number}: retrying {count} request(s)")

    try:
        result = run_in_passes(
            range(len(payloads)),
            work,
            workers=workers,
            pause=settings.backoff_base,
            on_retry_pass=retry_pass,
        )
    finally:
        thread_clients.close()
        if archive_pool is not None:
            archive_pool.shutdown(wait=True, cancel_futures=True)
        for payload in payloads:
            if payload.cleanup is not None:
                payload.cleanup()
    for index in sorted(result.failed):
        payload = payloads[index]
        exc = result.failed[index]
        reason = describe_error(exc)
        if exc is result.aborted and index not in result.attempted:
            reason = f"not sent: {reason}"
        outcome.errors.extend((str(p), reason) for p in payload.files)
        tracker.item_done(False, payload.label, items=len(payload.files))
    return outcome


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def summarize(
    outcome: SendOutcome,
    *,
    total_files: int,
    skipped: int,
    started: float,
    tracker: ProgressTracker[UploadProgress],
) -> UploadSummary:
    """The :class:`UploadSummary` of a send (and the final ``done`` progress report).

    Args:
        outcome: What was sent.
        total_files: Files considered (including skipped ones).
        skipped: Files not sent (not DICOM, or already accepted per the ledger).
        started: ``time.monotonic()`` at the start.
        tracker: Progress.

    Returns:
        The summary.
    """
    failed = len(outcome.errors)
    tracker.set_phase("done", f"{len(outcome.uploaded)} sent, {failed} failed, {skipped} skipped")
    return UploadSummary(
        total_files=total_files,
        uploaded=len(outcome.uploaded),
        failed=failed,
        skipped=skipped,
        bytes_sent=outcome.bytes_sent,
        duration_s=round(time.monotonic() - started, 3),
        errors=outcome.errors,
        session_uris=sorted(outcome.uris),
    )
