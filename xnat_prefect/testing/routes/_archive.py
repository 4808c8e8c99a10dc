"""Streaming zip / tar / tar.gz downloads of resource files, in XNAT's folder layouts.

Archives are produced by a generator, one file chunk at a time: nothing is built in memory or
on disk and no ``Content-Length`` is sent (XNAT streams them too). Zip output goes through
:mod:`zipfile` writing to a non-seekable sink (entries then carry data descriptors, which every
unzip tool reads); tar output is assembled from :class:`tarfile.TarInfo` headers and the file
bytes, optionally through a gzip compressor.

Layouts (``structure=``):

* default: ``{session}/scans/{id}-{type}/resources/{label}/files/{path}``,
  ``{session|subject|project}/resources/{label}/files/{path}``;
* ``simplified``: the same without the ``resources`` and ``files`` folders;
* ``improved``: ``scans/{id}_{type}/{label}/{path}`` and ``resources/{label}/{path}``, no top
  folder (the type suffix is left out of tar archives);
* ``legacy``: the server's absolute paths.
"""

from __future__ import annotations

import re
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import StreamingResponse

from xnat_prefect.testing.http import HTTPError
from xnat_prefect.testing.routes._resources import ResourceInfo

ARCHIVE_FORMATS: dict[str, tuple[str, str]] = {
    "zip": ("application/zip", ".zip"),
    "tar": ("application/x-tar", ".tar"),
    "tar.gz": ("application/x-gtar", ".tar.gz"),
}
"""``format=`` values answered with an archive: media type and file extension."""

DEFAULT_ZIP_LEVEL = 6
CHUNK = 1 << 20
FLUSH_AT = 256 * 1024
_NON_WORD = re.compile(r"\W")
_UNSAFE = re.compile(r'[/\\:*?"<>|]')


@dataclass(frozen=True)
class Entry:
    """One file to put into an archive.

    Attributes:
        name: Path inside the archive.
        path: The file on disk.
    """

    name: str
    path: Path


def entry_name(
    info: ResourceInfo, relpath: str, *, structure: str, fmt: str, disk_path: Path
) -> str:
    """Where XNAT puts one resource file inside a download archive.

    Args:
        info: The file's resource.
        relpath: Path of the file inside the resource.
        structure: ``default``, ``simplified``, ``improved`` or ``legacy``.
        fmt: ``zip``, ``tar`` or ``tar.gz`` (improved layouts drop scan types from tars).
        disk_path: The file on disk (``legacy``).

    Returns:
        The entry name.
    """
    structure = structure.lower()
    if structure == "legacy":
        return str(disk_path).lstrip("/")
    if structure == "improved":
        if info.category == "scans":
            folder = info.cat_id
            if info.cat_desc and not fmt.startswith("tar"):
                folder += "_" + _UNSAFE.sub("_", info.cat_desc)
            return f"scans/{folder}/{info.label}/{relpath}"
        return f"resources/{info.label}/{relpath}"
    head = info.owner_label
    if info.category == "scans":
        suffix = f"-{_NON_WORD.sub('_', info.cat_desc)}" if info.cat_desc else ""
        head = f"{head}/scans/{info.cat_id}{suffix}"
    if structure == "simplified":
        return f"{head}/{info.label}/{relpath}"
    return f"{head}/resources/{info.label}/files/{relpath}"


def archive_response(
    entries: list[Entry], *, fmt: str, download_name: str, compression: str | None
) -> StreamingResponse:
    """Stream an archive of files.

    Args:
        entries: The files (must not be empty).
        fmt: ``zip``, ``tar`` or ``tar.gz``.
        download_name: File name stem for ``Content-Disposition``.
        compression: ``compression=`` parameter: deflate/gzip level 0-9 (0 = stored zip).

    Returns:
        A streaming response without ``Content-Length``.

    Raises:
        HTTPError: 400 for a non-numeric compression level.
    """
    level = DEFAULT_ZIP_LEVEL
    if compression is not None:
        try:
            level = max(0, min(9, int(compression)))
        except ValueError as exc:
            raise HTTPError(400, f"Invalid compression level {compression!r}: use 0-9.") from exc
    media_type, extension = ARCHIVE_FORMATS[fmt]
    body = (
        iter_zip(entries, level=level)
        if fmt == "zip"
        else iter_tar(entries, gzip_level=level if fmt == "tar.gz" else None)
    )
    disposition = f'attachment; filename="{download_name}{extension}"'
    return StreamingResponse(
        body, media_type=media_type, headers={"Content-Disposition": disposition}
    )


class _Sink:
    """A write-only, non-seekable stream collecting what zipfile writes until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: bytes wait in memory until :meth:`drain`."""

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.pending = 0
        return data


def _dos_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    stamp = time.localtime(max(mtime, 315532800.0))  # zip cannot date before 1980
    return (stamp.tm_year, stamp.tm_mon, stamp.tm_mday, stamp.tm_hour, stamp.tm_min, stamp.tm_sec)


def iter_zip(entries: Iterable[Entry], *, level: int) -> Iterator[bytes]:
    """Yield a zip archive of the entries, chunk by chunk.

    Args:
        entries: Files to include (vanished files are skipped).
        level: Deflate level; 0 stores entries uncompressed.

    Yields:
        Archive bytes.
    """
    sink = _Sink()
    method = zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(sink, "w", compression=method, allowZip64=True) as archive:  # type: ignore[call-overload]
        for entry in entries:
            try:
                handle = entry.path.open("rb")
            except FileNotFoundError:
                continue
            with handle:
                stat = entry.path.stat()
                info = zipfile.ZipInfo(entry.name, date_time=_dos_time(stat.st_mtime))
                info.compress_type = method
                info.file_size = stat.st_size
                info.external_attr = 0o644 << 16
                if method == zipfile.ZIP_DEFLATED:
                    _set_level(info, level)
                with archive.open(info, "w") as writer:
                    while chunk := handle.read(CHUNK):
                        writer.write(chunk)
                        if sink.pending >= FLUSH_AT:
                            yield sink.drain()
            if sink.pending:
                yield sink.drain()
    tail = sink.drain()
    if tail:
        yield tail


def _set_level(info: zipfile.ZipInfo, level: int) -> None:
    # ZipInfo keeps the per-entry level in a private slot (renamed in Python 3.13).
    for name in ("compress_level", "_compresslevel"):
        if hasattr(info, name):
            setattr(info, name, level)
            return


def iter_tar(entries: Iterable[Entry], *, gzip_level: int | None) -> Iterator[bytes]:
    """Yield a POSIX (pax) tar archive of the entries, optionally gzip-compressed.

    Args:
        entries: Files to include (vanished files are skipped).
        gzip_level: Gzip level, or None for a plain tar.

    Yields:
        Archive bytes.
    """
    squeeze = zlib.compressobj(gzip_level, zlib.DEFLATED, 31) if gzip_level is not None else None
    written = 0

    def out(data: bytes) -> bytes:
        return squeeze.compress(data) if squeeze is not None else data

    for entry in entries:
        try:
            handle = entry.path.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            stat = entry.path.stat()
            header = tarfile.TarInfo(entry.name)
            header.size = stat.st_size
            header.mtime = int(stat.st_mtime)
            header.mode = 0o644
            block = header.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            written += len(block)
            if data := out(block):
                yield data
            remaining = stat.st_size
            while remaining > 0:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:  # the file shrank under us: keep the archive well-formed
                    chunk = b"\0" * min(CHUNK, remaining)
                remaining -= len(chunk)
                written += len(chunk)
                if data := out(chunk):
                    yield data
            padding = (-stat.st_size) % tarfile.BLOCKSIZE
            written += padding
            if padding and (data := out(b"\0" * padding)):
                yield data
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    written += len(end)
    end += b"\0" * ((-written) % tarfile.RECORDSIZE)
    final = out(end)
    if squeeze is not None:
        final += squeeze.flush()
    if final:
        yield final
