"""One file's download: ``.part`` file, HTTP Range resume, MD5 check, ledger, atomic rename.

The bytes go to ``<name>.part`` and are renamed to ``<name>`` only when complete (and, with
``verify``, when their MD5 equals the catalog's ``digest``). A ``.part`` left by an earlier run
(or by a dropped connection in this one) is continued with ``Range: bytes={size}-``: a 206 whose
``Content-Range`` starts at that offset is appended; a 200 means the server ignored the Range
(XNAT itself does not implement it), so the file restarts from zero; a 416 means the part is
already complete or stale. The ledger remembers which server version (MD5, size) a ``.part``
belongs to, so a part of an older version is never continued.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    TransferError,
    VerificationError,
    XNATRequestError,
    XNATStatusError,
)
from xnat_prefect.models.transfer import DownloadProgress, DownloadSummary
from xnat_prefect.services._transfer_plan import RemoteFile
from xnat_prefect.services._transfer_retry import (
    backoff_seconds,
    describe_error,
    is_retryable_error,
    run_in_passes,
)
from xnat_prefect.services._transfer_streams import (
    CHUNK,
    ProgressCounters,
    ProgressTracker,
    md5_file,
)
from xnat_prefect.services.ledger import TransferLedger

__all__ = [
    "FetchResult",
    "FetchSettings",
    "download_tracker",
    "fetch_file",
    "fetch_many",
    "part_path",
]

logger = get_logger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


@dataclass(frozen=True)
class FetchSettings:
    """How files are fetched.

    Attributes:
        resume: Continue ``.part`` files left by an earlier run (else they are discarded).
        verify: Check the MD5 of new files against the catalog, and re-hash files that are
            skipped as already present.
        max_retries: Retries (each resuming where the last attempt stopped).
        backoff_base: First retry delay in seconds.
        scope: Ledger scope (server + session).
    """

    resume: bool
    verify: bool
    max_retries: int
    backoff_base: float
    scope: str


@dataclass(frozen=True)
class FetchResult:
    """What happened to one file.

    Attributes:
        path: The final file.
        skipped: Already present (nothing downloaded).
        bytes_received: Body bytes received (all attempts).
        resumed_from: Offset the last successful attempt started at.
        md5: MD5 of the final file, when computed.
    """

    path: Path
    skipped: bool
    bytes_received: int
    resumed_from: int = 0
    md5: str | None = None


def part_path(target: Path) -> Path:
    """The temporary name of a file being downloaded (``<name>.part``).

    Args:
        target: The final file.

    Returns:
        The part file.
    """
    return target.with_name(target.name + ".part")


class _Restart(Exception):  # noqa: N818 - internal control flow
    """The part file cannot be continued; start from zero."""


def _already_there(
    remote: RemoteFile, target: Path, item: str, ledger: TransferLedger | None, s: FetchSettings
) -> tuple[str, bool] | None:
    """``(MD5 or "", needs a ledger record)`` of a final file that can be kept, else None."""
    if not target.is_file():
        return None
    size = target.stat().st_size
    if remote.size is not None and size != remote.size:
        return None
    entry = ledger.get(s.scope, item) if ledger is not None else None
    if entry is not None and entry.state == "confirmed" and entry.matches_file(target):
        same_version = entry.server_md5 == remote.digest and entry.remote == remote.uri
        if same_version and (remote.digest is None or entry.local_md5 == remote.digest):
            if not (s.verify and remote.digest):
                return entry.local_md5 or "", False
            current = md5_file(target)
            return (current, False) if current == remote.digest else None
    if remote.digest:
        current = md5_file(target)
        return (current, True) if current == remote.digest else None
    return ("", True) if s.resume and remote.size is not None else None


def fetch_file(
    client: XNATClient,
    remote: RemoteFile,
    *,
    target: Path,
    item: str,
    settings: FetchSettings,
    ledger: TransferLedger | None,
    on_bytes: Callable[[int], None],
    continuing: bool = False,
) -> FetchResult:
    """Download one file (see the module docstring).

    Args:
        client: Client (thread-safe; shared by the workers).
        remote: The server file.
        target: Final local path.
        item: Ledger key (path relative to the output folder).
        settings: Fetch settings.
        ledger: Ledger (None: none).
        on_bytes: Called with each chunk's size.
        continuing: This call already started the file (a retry pass): its ``.part`` is
            continued even without ``resume``.

    Returns:
        The result.

    Raises:
        VerificationError: The MD5 differs from the catalog twice in a row.
        TransferError: The disk is full (status ``ENOSPC``; the ``.part`` is deleted).
        XNATError: The download failed after the retries.
    """
    kept = _already_there(remote, target, item, ledger, settings)
    if kept is not None:
        md5, record = kept
        if ledger is not None and record:
            ledger.record(
                settings.scope,
                item,
                path=target,
                state="confirmed",
                local_md5=md5 or None,
                server_md5=remote.digest,
                remote=remote.uri,
            )
        return FetchResult(target, True, 0, md5=md5 or None)
    try:
        return _fetch_new(
            client,
            remote,
            target=target,
            item=item,
            settings=settings,
            ledger=ledger,
            on_bytes=on_bytes,
            continuing=continuing,
        )
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full(exc):
            raise
        part_path(target).unlink(missing_ok=True)  # frees the space; nothing partial is left
        raise disk_full_error(target, remote.size) from exc


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means the disk (or the user's quota) is full.

    Args:
        exc: The exception.

    Returns:
        True for ``OSError`` ENOSPC/EDQUOT and SQLite's "database or disk is full".
    """
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc).lower()


def disk_full_error(
    target: Path, needed: int | None, *, missing: Sequence[int | None] = ()
) -> TransferError:
    """The error for a file that did not fit on the disk: names the folder, bytes and fix.

    Args:
        target: The file being written.
        needed: Its size in bytes (None when the listing did not say).
        missing: Sizes of every file of the run not downloaded (this one included), when known.

    Returns:
        A :class:`~xnat_prefect.errors.TransferError` with status ``ENOSPC``.
    """
    folder = target.parent
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    total = _total(missing) if len(missing) > 1 else needed
    need = f"the file needs {_bytes(needed)}"
    if len(missing) > 1:
        need = f"{len(missing)} files are missing, {_bytes(total)} in all ({need})"
    room = "free space there"
    if total is not None and free is not None:
        room = f"free at least {max(total - free, 1)} more bytes there"
    return TransferError(
        f"{target}: no space left on the disk holding {folder}: {need}, {_bytes(free)} are "
        f"free; {room} (or pass an output_dir on a disk with room), then run again to resume",
        target=str(target),
        status="ENOSPC",
    )


def _total(sizes: Sequence[int | None]) -> int | None:
    return None if None in sizes else sum(s or 0 for s in sizes)


def _bytes(size: int | None) -> str:
    return f"{size} bytes" if size is not None else "an unknown number of bytes"


def _fetch_new(
    client: XNATClient,
    remote: RemoteFile,
    *,
    target: Path,
    item: str,
    settings: FetchSettings,
    ledger: TransferLedger | None,
    on_bytes: Callable[[int], None],
    continuing: bool,
) -> FetchResult:
    """Download a file that is not (or not correctly) there yet."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    if part.exists() and not _part_usable(part, remote, item, ledger, settings, continuing):
        part.unlink()
    if ledger is not None:  # recorded first, so a crash leaves a known .part behind
        _record_partial(part, remote, item, ledger, settings, force=True)
    received = [0]

    def count(size: int) -> None:
        received[0] += size
        on_bytes(size)

    attempt = 0
    mismatches = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            md5, start = _attempt(client, remote, part, offset, count)
        except _Restart:
            part.unlink(missing_ok=True)
            continue
        except (XNATRequestError, XNATStatusError) as exc:
            _record_partial(part, remote, item, ledger, settings)
            attempt += 1
            if attempt > settings.max_retries or not is_retryable_error(exc):
                raise
            delay = backoff_seconds(attempt, settings.backoff_base)
            logger.warning(
                "Download of %s failed (%s); resuming in %.2f s", remote.name, exc, delay
            )
            time.sleep(delay)
            continue
        size = part.stat().st_size
        if remote.size is not None and size != remote.size:
            part.unlink(missing_ok=True)
            raise VerificationError(
                f"{remote.name}: received {size} bytes, the catalog says {remote.size}",
                target=remote.uri,
            )
        if settings.verify and remote.digest and md5 != remote.digest:
            part.unlink(missing_ok=True)
            # a resumed file can carry foreign bytes from a cut reply (a proxy's page, say):
            # start again from zero; only whole downloads that mismatch count against the server
            mismatches += 1 if start == 0 else 0
            if mismatches > 1:
                raise VerificationError(
                    f"{remote.name}: MD5 {md5} of the downloaded bytes differs from the "
                    f"server catalog's {remote.digest} (twice); the server copy may be corrupt",
                    target=remote.uri,
                )
            logger.warning("MD5 mismatch for %s; downloading it again", remote.name)
            continue
        os.replace(part, target)
        if ledger is not None:
            ledger.record(
                settings.scope,
                item,
                path=target,
                state="confirmed",
                local_md5=md5,
                server_md5=remote.digest,
                remote=remote.uri,
            )
        return FetchResult(target, False, received[0], resumed_from=start, md5=md5)


def _part_usable(
    part: Path,
    remote: RemoteFile,
    item: str,
    ledger: TransferLedger | None,
    s: FetchSettings,
    continuing: bool,
) -> bool:
    if not (s.resume or continuing):
        return False
    size = part.stat().st_size
    if remote.size is not None and size > remote.size:
        return False
    entry = ledger.get(s.scope, item) if ledger is not None else None
    if entry is None:
        return True  # no record: trust the listing's size check and the final MD5
    return entry.state == "partial" and entry.server_md5 == remote.digest


def _record_partial(
    part: Path,
    remote: RemoteFile,
    item: str,
    ledger: TransferLedger | None,
    s: FetchSettings,
    *,
    force: bool = False,
) -> None:
    if ledger is not None and (force or part.exists()):
        ledger.record(
            s.scope, item, path=part, state="partial", server_md5=remote.digest, remote=remote.uri
        )


def _hash_prefix(part: Path, offset: int) -> Any:
    digest = hashlib.md5(usedforsecurity=False)
    with part.open("rb") as handle:
        remaining = offset
        while remaining > 0 and (chunk := handle.read(min(CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def _attempt(
    client: XNATClient,
    remote: RemoteFile,
    part: Path,
    offset: int,
    on_bytes: Callable[[int], None],
) -> tuple[str, int]:
    """One GET; returns (MD5 of the whole part, start offset)."""
    headers = {"Range": f"bytes={offset}-"} if offset else None
    try:
        with client.stream("GET", remote.uri, headers=headers) as response:
            start = 0
            if offset and response.status_code == 206:
                found = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                if found is None or int(found.group(1)) != offset:
                    raise _Restart()
                start = offset
            elif offset:
                logger.info("Server ignored Range for %s; restarting it", remote.name)
            digest = _hash_prefix(part, start) if start else hashlib.md5(usedforsecurity=False)
            with part.open("r+b" if start else "wb") as out:
                out.seek(start)
                out.truncate()
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    digest.update(chunk)
                    on_bytes(len(chunk))
    except XNATStatusError as exc:
        if exc.status_code == 416 and offset:
            if remote.size is not None and offset == remote.size:
                return md5_file(part), offset
            raise _Restart() from exc
        raise
    return digest.hexdigest(), start


def download_tracker(
    callback: Callable[[DownloadProgress], Any] | None, total: int = 0
) -> ProgressTracker[DownloadProgress]:
    """A progress tracker emitting :class:`DownloadProgress`.

    Args:
        callback: The user's callback.
        total: Items in all.

    Returns:
        The tracker.
    """

    def build(c: ProgressCounters) -> DownloadProgress:
        return DownloadProgress(
            phase=c.phase,
            current=c.current,
            total=c.total,
            bytes_received=c.bytes,
            total_bytes=c.total_bytes,
            current_file=c.current_file,
            message=c.message,
        )

    return ProgressTracker(callback, build, phase="listing", total=total)


def fetch_many(
    client: XNATClient,
    files: Sequence[RemoteFile],
    *,
    out: Path,
    settings: FetchSettings,
    ledger: TransferLedger | None,
    tracker: ProgressTracker[DownloadProgress],
    workers: int,
    errors: list[tuple[str, str]],
    started: float,
    zip_phase: Callable[[], tuple[dict[int, FetchResult], int]] | None = None,
) -> DownloadSummary:
    """Fetch files in parallel, retrying failures in lower-concurrency passes (resuming).

    Args:
        client: Client (shared by the workers).
        files: What to fetch.
        out: Output folder.
        settings: Fetch settings.
        ledger: Ledger, or None.
        tracker: Progress.
        workers: Concurrent GETs in the first pass.
        errors: Errors found before (listing failures); failures are added.
        started: ``time.monotonic()`` at the start.
        zip_phase: Fetches some files first (scan zips): returns their results (by index) and
            the bytes it received; every other file is then fetched with a GET.

    Returns:
        The summary.

    Raises:
        TransferError: The disk is full (status ``ENOSPC``): no further file is started, no
            ``.part`` is left, and the message says how many bytes the missing files need.
    """
    sizes = [f.size for f in files]
    tracker.counters.total_bytes = None if None in sizes else sum(s or 0 for s in sizes)
    tracker.set_phase("downloading", total=len(files))
    results: dict[int, FetchResult] = {}
    started_here: set[int] = set()
    todo = list(range(len(files)))
    zip_bytes = 0
    if zip_phase is not None:
        results, zip_bytes = zip_phase()
        todo = [i for i in todo if i not in results]
        logger.info("%d file(s) came in scan zips; %d to fetch one by one", len(results), len(todo))

    disk_full: list[tuple[TransferError, RemoteFile]] = []

    def work(index: int) -> None:
        if disk_full:  # fatal for the run: no other file is started
            raise disk_full[0][0]
        remote = files[index]
        continuing = index in started_here
        started_here.add(index)
        try:
            results[index] = fetch_file(
                client,
                remote,
                target=out / remote.local,
                item=remote.local.as_posix(),
                settings=settings,
                ledger=ledger,
                on_bytes=tracker.add_bytes,
                continuing=continuing,
            )
        except TransferError as exc:
            if exc.status == "ENOSPC":
                disk_full.append((exc, remote))
            raise
        tracker.item_done(True, remote.name)

    outcome = run_in_passes(todo, work, workers=workers, pause=settings.backoff_base)
    if disk_full:
        first, remote = disk_full[0]
        missing = [files[todo[p]].size for p in outcome.failed]
        error = disk_full_error(out / remote.local, remote.size, missing=missing)
        raise error from first.__cause__
    for position, exc in sorted(outcome.failed.items()):
        index = todo[position]
        errors.append((str(out / files[index].local), describe_error(exc)))
        tracker.item_done(False, files[index].name)
    done = [results[i] for i in sorted(results)]
    skipped = sum(1 for r in done if r.skipped)
    checked = all(f.digest for f in files) and not errors
    tracker.set_phase("done", f"{len(done) - skipped} downloaded, {len(errors)} failed")
    return DownloadSummary(
        total_files=len(files),
        downloaded=len(done) - skipped,
        skipped=skipped,
        failed=len(errors),
        bytes_received=zip_bytes + sum(r.bytes_received for r in done),
        output_dir=out,
        paths=[r.path for r in done],
        verified=settings.verify and checked,
        errors=errors,
        duration_s=round(time.monotonic() - started, 3),
    )
