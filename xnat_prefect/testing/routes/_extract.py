"""Streaming extraction of uploaded zip and tar archives, one entry at a time.

Each regular entry is copied to its own temp file (its MD5 computed on the way) and handed to
the caller, so an archive of any size never sits in memory. Entries whose names would escape
the extraction folder (absolute paths, ``..``) are refused.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 1 << 20
KINDS = ("zip", "tar", "tar.gz")


class UploadFormatError(ValueError):
    """The upload is not a readable archive of the declared kind, or holds an unsafe entry."""


@dataclass(frozen=True)
class Entry:
    """One extracted archive member.

    Attributes:
        name: Its name inside the archive.
        path: The temp file holding its bytes (the caller moves or deletes it).
        digest: MD5 hex digest of the bytes.
    """

    name: str
    path: Path
    digest: str


def kind_for(name: str) -> str | None:
    """The archive kind a file name declares (XNAT decides by extension).

    Args:
        name: File name.

    Returns:
        ``zip``, ``tar``, ``tar.gz`` or None.
    """
    lowered = name.lower()
    if lowered.endswith(".zip"):
        return "zip"
    if lowered.endswith((".tar.gz", ".tgz", ".gz")):
        return "tar.gz"
    if lowered.endswith(".tar"):
        return "tar"
    return None


def check_name(name: str) -> str:
    """Refuse member names that would escape the extraction folder.

    Args:
        name: Member name.

    Returns:
        The name, normalized to forward slashes.

    Raises:
        UploadFormatError: Absolute path, drive letter or ``..`` component.
    """
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if path.is_absolute() or ".." in path.parts or (len(clean) > 1 and clean[1] == ":"):
        raise UploadFormatError(f"Archive entry {name!r} points outside the upload folder")
    return clean


def copy_to_temp(source: IO[bytes], tmp_dir: Path, prefix: str = "entry-") -> tuple[Path, str]:
    """Copy a stream to a new temp file, computing its MD5.

    Args:
        source: Readable binary stream.
        tmp_dir: Folder for the temp file.
        prefix: Temp file name prefix.

    Returns:
        ``(path, md5)``.
    """
    digest = hashlib.md5(usedforsecurity=False)
    handle, name = tempfile.mkstemp(prefix=prefix, dir=tmp_dir)
    try:
        with open(handle, "wb") as sink:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                sink.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), digest.hexdigest()


def iter_entries(fileobj: IO[bytes], kind: str, tmp_dir: Path) -> Generator[Entry, None, None]:
    """Yield the regular files of an archive one by one, each in its own temp file.

    Args:
        fileobj: The archive (seekable for zip; any stream for tar).
        kind: ``zip``, ``tar`` or ``tar.gz``.
        tmp_dir: Folder for the temp files.

    Yields:
        Entries in archive order; an entry's temp file is deleted when the caller resumes
        iteration without having moved it.

    Raises:
        UploadFormatError: Unreadable archive or unsafe entry name.
    """
    if kind == "zip":
        yield from _zip_entries(fileobj, tmp_dir)
    elif kind in ("tar", "tar.gz"):
        yield from _tar_entries(fileobj, tmp_dir)
    else:
        raise UploadFormatError(f"Unsupported format {kind}")


def _zip_entries(fileobj: IO[bytes], tmp_dir: Path) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadFormatError(f"Unable to read the uploaded zip file: {exc}") from exc
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = check_name(info.filename)
            try:
                with archive.open(info) as member:
                    path, digest = copy_to_temp(member, tmp_dir)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise UploadFormatError(f"Unable to read {name} from the zip: {exc}") from exc
            try:
                yield Entry(name, path, digest)
            finally:
                path.unlink(missing_ok=True)


def _tar_entries(fileobj: IO[bytes], tmp_dir: Path) -> Iterator[Entry]:
    try:
        archive = tarfile.open(fileobj=fileobj, mode="r|*")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UploadFormatError(f"Unable to read the uploaded tar file: {exc}") from exc
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise UploadFormatError(f"Unable to read the uploaded tar file: {exc}") from exc
            if member is None:
                return
            if not member.isfile():
                continue
            name = check_name(member.name)
            source = archive.extractfile(member)
            if source is None:
                continue
            try:
                path, digest = copy_to_temp(source, tmp_dir)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise UploadFormatError(f"Unable to read {name} from the tar: {exc}") from exc
            try:
                yield Entry(name, path, digest)
            finally:
                path.unlink(missing_ok=True)
