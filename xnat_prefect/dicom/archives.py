"""Build zip/tar archives of DICOM files on disk, and extract archives safely.

Archives are streamed file by file to ``<name>.part`` in the target directory and renamed
when complete, so a half-written archive never carries the final name and the archive is
never held in memory. DICOM compresses poorly, so the defaults are an uncompressed tar or
a zip with ``ZIP_STORED`` entries (which XNAT's ``DICOM-zip`` importer reads fine).

Example:
    >>> info = build_archive(files, tmp_path, fmt="zip")
    >>> extracted = safe_extract(info.path, tmp_path / "out")
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from xnat_prefect.errors import InvalidInputError

__all__ = ["ArchiveFormat", "ArchiveInfo", "UnsafeArchiveError", "build_archive", "safe_extract"]

ArchiveFormat = Literal["zip", "tar"]
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(InvalidInputError):
    """An archive entry would escape the destination or is not a plain file or folder.

    Args:
        message: What is wrong and what to do.
        archive: The archive.
        entry: The offending entry name.
    """

    def __init__(self, message: str, *, archive: Path, entry: str) -> None:
        super().__init__(message)
        self.archive = archive
        self.entry = entry


@dataclass(frozen=True)
class ArchiveInfo:
    """A finished archive.

    Attributes:
        path: Where it is.
        size: Size in bytes.
        md5: Hex MD5 of the archive bytes.
        file_count: Number of files in it.
        format: ``zip`` or ``tar``.
        compressed: Whether entries are deflated (zip) or the tar is gzipped.
    """

    path: Path
    size: int
    md5: str
    file_count: int
    format: ArchiveFormat
    compressed: bool

    @property
    def content_type(self) -> str:
        """The upload Content-Type XNAT's import service expects for this archive."""
        if self.format == "zip":
            return "application/zip"
        return "application/x-gzip" if self.compressed else "application/x-tar"


def build_archive(
    files: Sequence[Path],
    dest_dir: Path,
    *,
    fmt: ArchiveFormat = "zip",
    name: str | None = None,
    root: Path | None = None,
    flatten: bool = False,
    compress: bool = False,
) -> ArchiveInfo:
    """Write files into a zip or tar archive in ``dest_dir``, streaming from disk.

    Entry names are relative to ``root`` when given, else to the files' common folder;
    with ``flatten`` they are bare file names made unique (``IM0001.dcm``,
    ``IM0001_2.dcm``). Symbolic links to files are stored as the files they point to.

    Args:
        files: The files to include (at least one).
        dest_dir: Directory to write the archive in (created if missing).
        fmt: ``zip`` or ``tar``.
        name: Archive file name; default ``dicom-<random>.zip|.tar|.tar.gz``.
        root: Make entry names relative to this folder (every file must be under it).
        flatten: Use bare, de-duplicated file names.
        compress: Deflate zip entries / gzip the tar (slower; DICOM gains little).

    Returns:
        The archive's path, size, MD5 and file count.

    Raises:
        InvalidInputError: No files, a file is missing or not a regular file, a file is
            outside ``root``, or ``fmt`` is unknown.

    Example:
        >>> info = build_archive(files, tmp_path, fmt="tar")
        >>> info.path.name.endswith(".tar"), info.file_count == len(files)
        (True, True)
    """
    if fmt not in ("zip", "tar"):
        raise InvalidInputError(f"unknown archive format {fmt!r}: use 'zip' or 'tar'")
    paths = [Path(f) for f in files]
    if not paths:
        raise InvalidInputError("no files to archive: pass at least one DICOM file")
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"cannot archive {path}: it is missing or not a regular file")
    names = _entry_names(paths, root=root, flatten=flatten)
    suffix = ".zip" if fmt == "zip" else (".tar.gz" if compress else ".tar")
    final = dest_dir / (name or f"dicom-{uuid.uuid4().hex[:12]}{suffix}")
    part = final.with_name(final.name + ".part")
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "zip":
            method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            with zipfile.ZipFile(part, "w", method, allowZip64=True, strict_timestamps=False) as zf:
                for path, entry in zip(paths, names, strict=True):
                    zf.write(path, entry)
        else:
            mode: Literal["w", "w:gz"] = "w:gz" if compress else "w"
            with tarfile.open(part, mode, dereference=True, format=tarfile.PAX_FORMAT) as tf:
                for path, entry in zip(paths, names, strict=True):
                    tf.add(path, entry, recursive=False, filter=_anonymous_owner)
        md5 = _md5_of(part)
        part.replace(final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return ArchiveInfo(
        path=final,
        size=final.stat().st_size,
        md5=md5,
        file_count=len(paths),
        format=fmt,
        compressed=compress,
    )


def safe_extract(archive: Path, dest: Path, *, max_bytes: int | None = None) -> list[Path]:
    """Extract a zip, tar or tar.gz into ``dest``, refusing anything unsafe.

    Every entry is checked before anything is written: absolute paths, drive letters and
    ``..`` components (zip-slip), symbolic and hard links, devices and FIFOs, duplicate
    names, and files that already exist in ``dest`` are refused. Files are extracted into a
    temporary folder inside ``dest`` and moved into place only when all succeeded; on any
    error nothing is left in ``dest``.

    Args:
        archive: The archive file.
        dest: Destination folder (created if missing).
        max_bytes: Refuse archives that expand to more than this many bytes.

    Returns:
        The extracted files (not folders), in archive order.

    Raises:
        UnsafeArchiveError: An entry is unsafe; the message names it.
        InvalidInputError: The file is missing, not a zip/tar, corrupt, or too large.

    Example:
        >>> safe_extract(Path("upload.zip"), tmp_path / "out")
        [PosixPath('.../out/S001/IM0001.dcm')]
    """
    if not archive.is_file():
        raise InvalidInputError(f"archive {archive} does not exist or is not a file")
    created_dest = not dest.exists()
    try:
        with _Members(archive) as members:
            entries = _checked_entries(archive, members.list(), dest, max_bytes)
            dest.mkdir(parents=True, exist_ok=True)
            staging = dest / f".extract-{uuid.uuid4().hex[:12]}"
            staging.mkdir()
            try:
                written = 0
                for entry in entries:
                    target = staging.joinpath(*entry.parts)
                    if entry.is_dir:
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with members.open(entry.member) as src, target.open("wb") as out:
                        written = _copy_limited(src, out, written, max_bytes, archive, entry.name)
                return _move_into_place(staging, dest, entries)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        _remove_if_empty(dest, created_dest)
        raise InvalidInputError(
            f"could not extract {archive}: {type(exc).__name__}: {exc}; check the archive "
            "is complete and not corrupt, and that the destination is writable"
        ) from exc
    except InvalidInputError:
        _remove_if_empty(dest, created_dest)
        raise


# ----------------------------------------------------------------------------- internals


def _entry_names(paths: list[Path], *, root: Path | None, flatten: bool) -> list[str]:
    if flatten:
        used: set[str] = set()
        names = []
        for path in paths:
            candidate, n = path.name, 1
            while candidate in used:
                n += 1
                candidate = f"{path.stem}_{n}{path.suffix}"
            used.add(candidate)
            names.append(candidate)
        return names
    base = (
        root.resolve()
        if root is not None
        else Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    )
    names = []
    for path in paths:
        try:
            names.append(path.resolve().relative_to(base).as_posix())
        except ValueError as exc:
            raise InvalidInputError(
                f"{path} is not under the archive root {base}: pass a root that contains "
                "every file, or flatten=True"
            ) from exc
    return names


def _anonymous_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fp:
        while chunk := fp.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Entry:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    member: zipfile.ZipInfo | tarfile.TarInfo


class _Members:
    """A uniform view of zip and tar members."""

    def __init__(self, archive: Path) -> None:
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        if zipfile.is_zipfile(archive):
            self._zip = zipfile.ZipFile(archive)
        elif tarfile.is_tarfile(archive):
            self._tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed in __exit__
        else:
            raise InvalidInputError(
                f"{archive} is neither a zip nor a tar archive: upload .zip, .tar or .tar.gz"
            )

    def list(self) -> list[zipfile.ZipInfo | tarfile.TarInfo]:
        if self._zip is not None:
            return list(self._zip.infolist())
        assert self._tar is not None
        return list(self._tar.getmembers())

    def open(self, member: zipfile.ZipInfo | tarfile.TarInfo) -> IO[bytes]:
        if isinstance(member, zipfile.ZipInfo):
            assert self._zip is not None
            return self._zip.open(member)
        assert self._tar is not None
        handle = self._tar.extractfile(member)
        if handle is None:
            raise tarfile.TarError(f"tar entry {member.name!r} has no data")
        return handle

    def __enter__(self) -> _Members:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()


def _checked_entries(
    archive: Path,
    members: list[zipfile.ZipInfo | tarfile.TarInfo],
    dest: Path,
    max_bytes: int | None,
) -> list[_Entry]:
    entries: list[_Entry] = []
    seen: set[tuple[str, ...]] = set()
    total = 0
    for member in members:
        raw = member.filename if isinstance(member, zipfile.ZipInfo) else member.name
        refuse = _refusal(member)
        name = raw.replace("\\", "/")
        if refuse is None and (name.startswith("/") or _DRIVE.match(name)):
            refuse = "has an absolute path"
        parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", ".", "/"))
        if refuse is None and ".." in parts:
            refuse = "climbs out of the destination with '..'"
        if refuse is None and not parts:
            refuse = "has an empty name"
        if refuse is not None:
            raise UnsafeArchiveError(
                f"refusing to extract {archive.name}: entry {raw!r} {refuse}; rebuild the "
                "archive with plain relative paths",
                archive=archive,
                entry=raw,
            )
        is_dir = member.is_dir() if isinstance(member, zipfile.ZipInfo) else member.isdir()
        if not is_dir:
            if parts in seen:
                raise UnsafeArchiveError(
                    f"refusing to extract {archive.name}: entry {raw!r} appears twice",
                    archive=archive,
                    entry=raw,
                )
            if dest.joinpath(*parts).exists():
                raise InvalidInputError(
                    f"cannot extract {archive.name}: {dest.joinpath(*parts)} already exists; "
                    "extract into an empty folder"
                )
            seen.add(parts)
        size = member.file_size if isinstance(member, zipfile.ZipInfo) else member.size
        total += size
        if max_bytes is not None and total > max_bytes:
            raise InvalidInputError(
                f"{archive.name} expands to more than {max_bytes} bytes; raise max_bytes if "
                "this is expected"
            )
        entries.append(_Entry(raw, parts, is_dir, size, member))
    return entries


def _refusal(member: zipfile.ZipInfo | tarfile.TarInfo) -> str | None:
    if isinstance(member, zipfile.ZipInfo):
        kind = stat.S_IFMT(member.external_attr >> 16)  # 0 when the zip records no Unix type
        if kind == stat.S_IFLNK:
            return "is a symbolic link"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "is not a regular file or folder"
        return None
    if member.issym():
        return "is a symbolic link"
    if member.islnk():
        return "is a hard link"
    if not (member.isreg() or member.isdir()):
        return "is a device, FIFO or other special file"
    return None


def _copy_limited(
    src: IO[bytes], out: IO[bytes], written: int, max_bytes: int | None, archive: Path, name: str
) -> int:
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if max_bytes is not None and written > max_bytes:
            raise InvalidInputError(
                f"{archive.name} expands to more than {max_bytes} bytes (at entry {name!r}); "
                "raise max_bytes if this is expected"
            )
        out.write(chunk)
    return written


def _move_into_place(staging: Path, dest: Path, entries: list[_Entry]) -> list[Path]:
    moved: list[Path] = []
    for entry in entries:
        target = dest.joinpath(*entry.parts)
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging.joinpath(*entry.parts), target)
        moved.append(target)
    return moved


def _remove_if_empty(dest: Path, created: bool) -> None:
    if created and dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
