"""Request bodies that stream from disk, and thread-safe progress reporting.

* :class:`ProgressReader` wraps an open file: it counts bytes as httpx reads them (progress)
  and hashes them (MD5 for the ledger), and it can be rewound for a resend.
* :class:`TarStream` is an uncompressed tar archive of files on disk produced on the fly while
  httpx reads it: headers are built in advance, so its exact length is known (httpx sends a
  ``Content-Length``), file bytes are read in chunks and nothing is held in memory.
* :class:`ProgressTracker` aggregates counters from worker threads and calls the user's
  progress callback with the models' progress types, at most every ``min_interval`` seconds
  (plus every phase change and the end).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import InvalidInputError

__all__ = [
    "CHUNK",
    "ProgressCounters",
    "ProgressReader",
    "ProgressTracker",
    "TarStream",
    "md5_file",
]

logger = get_logger(__name__)

CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
M = TypeVar("M")
ByteCallback = Callable[[int], None]


def md5_file(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks.

    Args:
        path: The file.

    Returns:
        The digest.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ProgressReader:
    """A read-only file body that reports bytes read and hashes them.

    Args:
        path: The file to send.
        on_bytes: Called with the size of each chunk read.
    """

    def __init__(self, path: Path, on_bytes: ByteCallback | None = None) -> None:
        self._handle: IO[bytes] = path.open("rb")
        self._on_bytes = on_bytes
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.bytes_read = 0

    @property
    def md5(self) -> str:
        """MD5 of the bytes read since the last rewind."""
        return self._md5.hexdigest()

    def read(self, size: int = -1) -> bytes:
        """Read and count.

        Args:
            size: Bytes wanted (-1: all).

        Returns:
            The bytes.
        """
        data = self._handle.read(size)
        if data:
            self._md5.update(data)
            self.bytes_read += len(data)
            if self._on_bytes is not None:
                self._on_bytes(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def seekable(self) -> bool:
        """Rewinding is supported."""
        return True

    def tell(self) -> int:
        """Current offset."""
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Seek; seeking back to 0 restarts the hash and the count.

        Args:
            offset: Offset.
            whence: ``os.SEEK_*``.

        Returns:
            The new offset.
        """
        position = self._handle.seek(offset, whence)
        if position == 0:
            self._md5 = hashlib.md5(usedforsecurity=False)
            self.bytes_read = 0
        return position

    def fileno(self) -> int:
        """The OS file descriptor (httpx reads the size from it for Content-Length)."""
        return self._handle.fileno()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> ProgressReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Segment:
    header: bytes
    path: Path
    size: int
    name: str


class TarStream:
    """An uncompressed tar of files on disk, generated while it is read (exact length known).

    Entries use the GNU format (long names as ``././@LongLink`` records), mode 0644, owner 0.

    Args:
        files: ``(path, entry name)`` pairs.
        on_bytes: Called with the size of each chunk read.

    Raises:
        InvalidInputError: A file is missing.
    """

    def __init__(
        self, files: Sequence[tuple[Path, str]], on_bytes: ByteCallback | None = None
    ) -> None:
        self._segments: list[_Segment] = []
        for path, name in files:
            try:
                info = path.stat()
            except OSError as exc:
                raise InvalidInputError(f"cannot archive {path}: {exc}") from exc
            member = tarfile.TarInfo(name)
            member.size = info.st_size
            member.mtime = int(info.st_mtime)
            member.mode = 0o644
            header = member.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
            self._segments.append(_Segment(header, path, info.st_size, name))
        self.length = sum(len(s.header) + _padded(s.size) for s in self._segments) + 2 * BLOCK
        self._on_bytes = on_bytes
        self.md5s: dict[Path, str] = {}
        self._reset()

    def _reset(self) -> None:
        self._position = 0
        self._chunks: Iterator[bytes] = self._generate()
        self._buffer = b""
        self._offset = 0
        self.md5s = {}

    def _generate(self) -> Iterator[bytes]:
        for segment in self._segments:
            yield segment.header
            digest = hashlib.md5(usedforsecurity=False)
            remaining = segment.size
            with segment.path.open("rb") as handle:
                while remaining > 0:
                    data = handle.read(min(CHUNK, remaining))
                    if not data:
                        raise InvalidInputError(
                            f"{segment.path} shrank while it was being uploaded; re-run the upload"
                        )
                    digest.update(data)
                    remaining -= len(data)
                    yield data
            self.md5s[segment.path] = digest.hexdigest()
            pad = _padded(segment.size) - segment.size
            if pad:
                yield b"\0" * pad
        yield b"\0" * (2 * BLOCK)

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes of the archive.

        Args:
            size: Bytes wanted (-1: one internal chunk).

        Returns:
            The bytes (``b""`` at the end).
        """
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = next(self._chunks, b""), 0
        if self._offset == 0 and (size < 0 or size >= len(self._buffer)):
            data = self._buffer  # the whole chunk: no copy
        else:  # a slice of the chunk: copies only what is returned
            end = len(self._buffer) if size < 0 else self._offset + size
            data = self._buffer[self._offset : end]
        self._offset += len(data)
        self._position += len(data)
        if data and self._on_bytes is not None:
            self._on_bytes(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def seekable(self) -> bool:
        """Only rewinding to the start (and asking the length) is supported."""
        return True

    def tell(self) -> int:
        """Bytes produced so far."""
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Rewind to 0, or report the length (``seek(0, SEEK_END)``) without moving.

        Args:
            offset: Must be 0.
            whence: ``SEEK_SET`` (rewind) or ``SEEK_END`` (length query).

        Returns:
            The offset (the length for ``SEEK_END``).

        Raises:
            OSError: Any other seek.
        """
        if offset == 0 and whence == os.SEEK_END:
            return self.length
        if offset == self._position and whence == os.SEEK_SET:
            return offset
        if offset == 0 and whence == os.SEEK_SET:
            self._reset()
            return 0
        raise OSError("a TarStream can only be rewound to its start")


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


@dataclass
class ProgressCounters:
    """Mutable counters behind :class:`ProgressTracker` (read them under its lock)."""

    phase: str
    total: int = 0
    current: int = 0
    succeeded: int = 0
    failed: int = 0
    bytes: int = 0
    total_bytes: int | None = None
    current_file: str | None = None
    message: str | None = None


class ProgressTracker(Generic[M]):
    """Thread-safe counters plus a throttled progress callback.

    Args:
        callback: The user's callback (None: counting only).
        build: Turns the counters into the progress model.
        phase: First phase.
        total: Items in all.
        min_interval: Least seconds between two byte-level reports.
    """

    def __init__(
        self,
        callback: Callable[[M], Any] | None,
        build: Callable[[ProgressCounters], M],
        *,
        phase: str,
        total: int = 0,
        min_interval: float = 0.2,
    ) -> None:
        self._callback = callback
        self._build = build
        self._lock = threading.Lock()
        self.counters = ProgressCounters(phase=phase, total=total)
        self._min_interval = min_interval
        self._last = 0.0

    def _emit(self, force: bool) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._min_interval:
            return
        self._last = now
        try:
            self._callback(self._build(self.counters))
        except Exception as exc:  # a broken callback must not break the transfer
            logger.warning("progress_callback raised %s: %s (ignored)", type(exc).__name__, exc)

    def add_bytes(self, count: int) -> None:
        """Count bytes moved.

        Args:
            count: Bytes.
        """
        with self._lock:
            self.counters.bytes += count
            self._emit(False)

    def item_done(self, ok: bool, name: str | None = None, *, items: int = 1) -> None:
        """Count finished items.

        Args:
            ok: Success.
            name: What finished.
            items: How many items this was.
        """
        with self._lock:
            self.counters.current += items
            if ok:
                self.counters.succeeded += items
            else:
                self.counters.failed += items
            self.counters.current_file = name
            self._emit(self.counters.current >= self.counters.total)

    def set_phase(
        self, phase: str, message: str | None = None, *, total: int | None = None
    ) -> None:
        """Change phase (always reported).

        Args:
            phase: New phase.
            message: Free text.
            total: New item total.
        """
        with self._lock:
            self.counters.phase = phase
            self.counters.message = message
            if total is not None:
                self.counters.total = total
            self._emit(True)
