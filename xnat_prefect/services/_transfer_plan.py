"""What a download fetches and where each file goes.

Listings used (``xnat-rest.md`` §7.3): ``{session}/scans/{SEL}/files`` (every scan resource, or
``.../scans/{SEL}/resources/{RES}/files``), ``{session}/files`` (session resources) and
``{session}/assessors`` + ``.../assessors/{ID}/files``. Each row carries the file's ``URI``
(``/data`` added when XNAT left it out), ``Size`` and ``digest`` (MD5).

Local layout = XNAT's zip layout, so per-file and zip downloads give the same tree::

    {session_label}/scans/{scan_id}-{scan_type}/resources/{label}/files/{path}
    {session_label}/resources/{label}/files/{path}
    {session_label}/assessors/{assessor_label}/resources/{label}/files/{path}

Every path is checked: a listing with ``..``, absolute paths or empty parts is refused, so a
hostile server cannot write outside the output folder.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, UnexpectedResponseError
from xnat_prefect.models.resource import ResourceFile
from xnat_prefect.services._transfer_listing import read_listing

__all__ = [
    "RemoteFile",
    "assessor_files",
    "filter_files",
    "scan_files",
    "scan_folder",
    "scan_types",
    "session_resource_files",
]

_URI = re.compile(r"/resources/([^/]+)/files/(.+)$")
_SCAN = re.compile(r"/scans/([^/]+)/resources/")
_NON_WORD = re.compile(r"\W")


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One server file to download.

    Slotted, with the destination kept as a string: a session listing holds one per file.

    Attributes:
        uri: ``/data/...`` URI to GET (percent-quoted).
        local_path: Destination relative to the output folder, ``/``-separated
            (:attr:`local` as a path).
        size: Bytes per the listing (None when unknown).
        digest: MD5 per the listing (None when checksums are off).
        name_at: Where :attr:`name` starts in ``local_path`` (it ends it).
        scan: Scan ID for scan files (None for session and assessor resources).
    """

    uri: str
    local_path: str
    size: int | None
    digest: str | None
    name_at: int
    scan: str | None = None

    @property
    def local(self) -> PurePosixPath:
        """Destination relative to the output folder."""
        return PurePosixPath(self.local_path)

    @property
    def name(self) -> str:
        """File path inside its resource (``a.dcm``, ``sub/b.dcm``)."""
        return self.local_path[self.name_at :]


def _safe_parts(relpath: str, uri: str) -> tuple[str, ...]:
    parts = tuple(p for p in relpath.replace("\\", "/").split("/") if p not in ("", "."))
    if not parts or ".." in parts or relpath.startswith("/") or ":" in parts[0]:
        raise UnexpectedResponseError(
            f"XNAT listed a file path that would escape the output folder: {relpath!r} "
            f"({uri}); refusing to download it"
        )
    return parts


def _segment(value: str) -> str:
    safe = value.replace("/", "_").replace("\\", "_")
    if safe in ("", ".", ".."):
        raise UnexpectedResponseError(f"XNAT listed an unusable folder name {value!r}")
    return safe


def scan_folder(scan_id: str, scan_type: str | None) -> str:
    """XNAT's zip folder of a scan: ``{id}-{type}`` with non-word characters as ``_``.

    Args:
        scan_id: Scan ID.
        scan_type: Scan type (empty: just the ID).

    Returns:
        The folder name.
    """
    if not scan_type:
        return _segment(scan_id)
    return _segment(f"{scan_id}-{_NON_WORD.sub('_', scan_type)}")


def _remote(row: ResourceFile, prefix: str, scan: str | None = None) -> RemoteFile:
    uri = row.uri or ""
    match = _URI.search(uri)
    relpath = unquote(match.group(2)) if match else row.name
    label = row.collection or (match.group(1) if match else "resource")
    parts = _safe_parts(relpath, uri)
    folder = f"{prefix}/resources/{_segment(label)}/files/"
    return RemoteFile(
        uri=quote(uri, safe="/:%@!$&'()*+,;=-._~"),
        local_path=folder + "/".join(parts),
        size=row.size,
        digest=(row.digest or "").strip().lower() or None,
        name_at=len(folder),
        scan=scan,
    )


def scan_types(client: XNATClient, data_path: str) -> dict[str, str]:
    """Scan ID → type of a session (``GET {session}/scans``).

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.

    Returns:
        The mapping.
    """
    rows = client.get_result_set(f"{data_path}/scans")
    return {r.get("ID", ""): r.get("type", "") for r in rows if r.get("ID")}


def scan_files(
    client: XNATClient,
    data_path: str,
    *,
    label: str,
    selector: str = "ALL",
    resource: str | None = None,
    types: dict[str, str] | None = None,
) -> list[RemoteFile]:
    """Files of scans (one listing request).

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.
        label: Session label (top folder).
        selector: ``ALL``, one scan ID or a comma list.
        resource: Only this resource label (None: all).
        types: Scan ID → type (for folder names).

    Returns:
        The files.
    """
    path = f"{data_path}/scans/{selector}"
    path += f"/resources/{quote(resource, safe='')}/files" if resource else "/files"
    top = _segment(label)
    prefixes: dict[str, tuple[str, str]] = {}  # raw scan ID -> (scan ID, folder), one copy each

    def convert(row: ResourceFile) -> RemoteFile:
        scan = _SCAN.search(row.uri or "")
        raw = scan.group(1) if scan else ""
        known = prefixes.get(raw)
        if known is None:
            scan_id = unquote(raw) if scan else (selector if "," not in selector else "")
            folder = scan_folder(scan_id, (types or {}).get(scan_id)) if scan_id else "unknown"
            known = prefixes[raw] = (scan_id, f"{top}/scans/{folder}")
        return _remote(row, known[1], known[0] or None)

    return read_listing(client, path, convert)


def session_resource_files(client: XNATClient, data_path: str, *, label: str) -> list[RemoteFile]:
    """Files of the session's own resources (not scans').

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.
        label: Session label.

    Returns:
        The files.
    """
    prefix = _segment(label)

    def convert(row: ResourceFile) -> RemoteFile | None:
        return None if "/scans/" in (row.uri or "") else _remote(row, prefix)

    return read_listing(client, f"{data_path}/files", convert)


def assessor_files(client: XNATClient, data_path: str, *, label: str) -> list[RemoteFile]:
    """Files of the session's assessors (``{session}/assessors`` then each one's files).

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.
        label: Session label.

    Returns:
        The files.
    """
    found: list[RemoteFile] = []
    for row in client.get_result_set(f"{data_path}/assessors"):
        assessor_id = row.get("ID") or ""
        if not assessor_id:
            continue
        name = row.get("label") or assessor_id
        prefix = f"{_segment(label)}/assessors/{_segment(name)}"
        path = f"{data_path}/assessors/{quote(assessor_id, safe='')}/files"
        found += read_listing(client, path, partial(_remote, prefix=prefix))
    return found


def filter_files(files: Iterable[RemoteFile], pattern: str | None) -> list[RemoteFile]:
    """Files whose name, path in the resource, or local path matches a glob (``*.dcm``).

    Args:
        files: Candidates.
        pattern: Glob (case-sensitive), or None for all.

    Returns:
        The matching files, de-duplicated by local path.

    Raises:
        InvalidInputError: An empty pattern.
    """
    if pattern is not None and not pattern.strip():
        raise InvalidInputError("pattern is empty; pass a glob such as '*.dcm', or None")
    chosen: dict[str, RemoteFile] = {}
    for item in files:
        if pattern is not None:
            candidates = (PurePosixPath(item.name).name, item.name, item.local_path)
            if not any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
                continue
        chosen.setdefault(item.local_path, item)
    return list(chosen.values())
