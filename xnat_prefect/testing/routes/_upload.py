"""Writing uploaded bytes into a resource: atomic placement, MD5 while copying, extraction.

Every file lands in ``_cascade.resource_dir(state, id)/<relpath>`` by ``os.replace`` from a temp
file in the store's ``tmp`` folder (same file system), so readers never see half a file. A
raw request body, which the dispatcher already spooled to that folder, is moved rather than
copied. ``extract=true`` unpacks ``.zip``/``.tar``/``.tar.gz`` archives after checking that no
entry would land outside the resource folder (absolute paths, ``..``, links are refused).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from xnat_prefect.testing.http import HTTPError
from xnat_prefect.testing.routes._cascade import resource_dir
from xnat_prefect.testing.routes._catalogs import upsert_file
from xnat_prefect.testing.routes._resources import clean_relpath
from xnat_prefect.testing.state import EmulatorState

CHUNK = 1 << 20

UPLOAD_TYPES: dict[str, str] = {
    "text/*": ".txt",
    "application/*": "",
    "text/plain": ".txt",
    "text/xml": ".xml",
    "text/csv": ".csv",
    "application/dicom": ".dcm",
    "application/zip": ".zip",
    "application/vnd.xnat.xar": ".xar",
    "application/x-gtar": ".tar.gz",
    "application/x-gzip": ".gzip",
    "application/octet-stream": "",
    "application/pdf": ".pdf",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/x-tar": ".tar",
    "application/msword": ".doc",
    "image/*": ".img",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/x-icon": ".icon",
    "image/jpeg": ".jpeg",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/tiff": ".tiff",
    "video/*": ".video",
    "video/x-msvideo": ".avi",
    "video/mp4": ".mp4",
    "video/mpeg": ".mpg",
    "video/quicktime": ".mov",
    "video/x-ms-wmv": ".wmv",
}
"""Content types XNAT accepts as a raw (in-body) file upload, with the default extension."""


@dataclass
class Outcome:
    """What one upload did.

    Attributes:
        stored: Paths written.
        duplicates: Paths that already existed and were left alone (no ``overwrite``).
    """

    stored: list[str]
    duplicates: list[str]


def checksums_on(state: EmulatorState) -> bool:
    """Whether the site computes MD5 digests (site preference ``checksums``).

    Args:
        state: Emulator state.

    Returns:
        The preference.
    """
    return bool(state.site_config("checksums"))


def md5_of(path: Path) -> str:
    """MD5 of a file on disk.

    Args:
        path: The file.

    Returns:
        Hex digest.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def archive_kind(name: str) -> str | None:
    """The archive type ``extract=true`` recognizes from a file name's last extension.

    Args:
        name: File name (XNAT looks at ``tar``, ``gz``, ``zip`` and ``zar``).

    Returns:
        ``zip``, ``tar``, ``tar.gz`` or None.
    """
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {"zip": "zip", "zar": "zip", "tar": "tar", "gz": "tar.gz", "tgz": "tar.gz"}.get(
        extension
    )


def _target(state: EmulatorState, resource_id: int, relpath: str) -> Path:
    root = resource_dir(state, resource_id)
    dest = root.joinpath(*relpath.split("/"))
    if dest.is_dir():
        raise HTTPError(409, f"{relpath} is a folder of the resource; it cannot become a file.")
    probe = dest.parent
    while probe != root and probe != probe.parent:
        if probe.is_file():
            raise HTTPError(409, f"{relpath}: a parent folder of it is already a file.")
        probe = probe.parent
    return dest


class FileStore:
    """Places uploaded files into one resource and records them in its catalog.

    Args:
        state: Emulator state.
        resource_id: Target resource.
        overwrite: Replace existing files (else they are reported as duplicates).
        attributes: ``format``/``content``/``tags`` for the catalog entries.
    """

    def __init__(
        self,
        state: EmulatorState,
        resource_id: int,
        *,
        overwrite: bool,
        attributes: Mapping[str, str],
    ) -> None:
        self.state = state
        self.resource_id = resource_id
        self.overwrite = overwrite
        self.attributes = dict(attributes)
        self.hashing = checksums_on(state)
        self.outcome = Outcome([], [])

    def _exists(self, relpath: str, dest: Path) -> bool:
        row = self.state.store.one(
            "SELECT 1 FROM files WHERE resource_id=? AND path=?", (self.resource_id, relpath)
        )
        return row is not None or dest.exists()

    def _claim(self, relpath: str) -> Path | None:
        dest = _target(self.state, self.resource_id, relpath)
        if not self.overwrite and self._exists(relpath, dest):
            self.outcome.duplicates.append(relpath)
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def _record(self, relpath: str, dest: Path, size: int, digest: str) -> None:
        os.chmod(dest, 0o644)
        upsert_file(
            self.state,
            self.resource_id,
            relpath,
            size=size,
            digest=digest,
            attributes=self.attributes,
        )
        self.outcome.stored.append(relpath)

    def move(self, relpath: str, source: Path) -> None:
        """Store a spooled temp file by renaming it into place (MD5 read once).

        Args:
            relpath: Destination inside the resource.
            source: A temp file on the store's file system (it is consumed).
        """
        dest = self._claim(relpath)
        if dest is None:
            return
        digest = md5_of(source) if self.hashing else ""
        size = source.stat().st_size
        try:
            os.replace(source, dest)
        except OSError:  # another file system: fall back to a copy
            with source.open("rb") as handle:
                self.copy(relpath, handle)
            return
        self._record(relpath, dest, size, digest)

    def copy(self, relpath: str, source: IO[bytes]) -> None:
        """Store a stream: copy to a temp file (hashing each chunk), then rename into place.

        Args:
            relpath: Destination inside the resource.
            source: Readable binary stream.
        """
        dest = self._claim(relpath)
        if dest is None:
            return
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        handle, name = tempfile.mkstemp(prefix="upload-", dir=self.state.store.tmp_dir)
        try:
            with open(handle, "wb") as sink:
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
                    size += len(chunk)
                    if self.hashing:
                        digest.update(chunk)
            os.replace(name, dest)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        self._record(relpath, dest, size, digest.hexdigest() if self.hashing else "")

    def extract(self, source: Path | BinaryIO, kind: str) -> None:
        """Unpack an archive into the resource's root folder, refusing escaping entries.

        XNAT extracts relative to the catalog, whatever path the upload URL named.

        Args:
            source: The archive (path or seekable stream).
            kind: ``zip``, ``tar`` or ``tar.gz``.

        Raises:
            HTTPError: 400 for unreadable archives or entries leaving the resource.
        """
        with ExitStack() as stack:
            try:
                entries = _entries(stack, source, kind)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
                raise HTTPError(
                    400, f"Unable to extract the uploaded {kind} archive: {exc}"
                ) from exc
            for name, _opener in entries:  # validate everything before writing anything
                clean_relpath(name, allow_empty=False)
            for name, opener in entries:
                relpath = clean_relpath(name)
                with opener() as stream:
                    self.copy(relpath, stream)


Opener = Callable[[], AbstractContextManager[IO[bytes]]]


def _entries(stack: ExitStack, source: Path | BinaryIO, kind: str) -> list[tuple[str, Opener]]:
    """List an archive's regular files (opened archives are closed by ``stack``)."""
    entries: list[tuple[str, Opener]] = []
    if kind == "zip":
        archive = stack.enter_context(zipfile.ZipFile(source))
        for info in archive.infolist():
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise HTTPError(
                    400, f"Archive entry {info.filename!r} is a link; links are refused."
                )

            def open_zip(entry: zipfile.ZipInfo = info) -> AbstractContextManager[IO[bytes]]:
                return archive.open(entry)

            entries.append((info.filename, open_zip))
        return entries
    if isinstance(source, Path):
        tar = stack.enter_context(tarfile.TarFile.open(source, mode="r:*"))
    else:
        tar = stack.enter_context(tarfile.TarFile.open(fileobj=source, mode="r:*"))
    for member in tar.getmembers():
        if member.isdir():
            continue
        if not member.isfile():
            raise HTTPError(
                400, f"Archive entry {member.name!r} is a link or device; only files are allowed."
            )

        def open_tar(entry: tarfile.TarInfo = member) -> AbstractContextManager[IO[bytes]]:
            stream = tar.extractfile(entry)
            assert stream is not None
            return stream

        entries.append((member.name, open_tar))
    return entries


def remove_files(state: EmulatorState, resource_id: int, relpaths: list[str]) -> None:
    """Delete files of a resource from disk and prune folders left empty.

    Args:
        state: Emulator state.
        resource_id: The resource.
        relpaths: Paths inside the resource.
    """
    root = resource_dir(state, resource_id)
    for relpath in relpaths:
        target = root.joinpath(*relpath.split("/"))
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        folder = target.parent
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
