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
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, UnexpectedResponseError
from xnat_prefect.models.resource import ResourceFile

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


@dataclass(frozen=True)
class RemoteFile:
    """One server file to download.

    Attributes:
        uri: ``/data/...`` URI to GET (percent-quoted).
        local: Destination relative to the output folder.
        size: Bytes per the listing (None when unknown).
        digest: MD5 per the listing (None when checksums are off).
        name: File path inside its resource.
        scan: Scan ID for scan files (None for session and assessor resources).
    """

    uri: str
    local: PurePosixPath
    size: int | None
    digest: str | None
    name: str
    scan: str | None = None


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


def _remote(row: ResourceFile, prefix: PurePosixPath) -> RemoteFile:
    uri = row.uri or ""
    match = _URI.search(uri)
    relpath = unquote(match.group(2)) if match else row.name
    label = row.collection or (match.group(1) if match else "resource")
    parts = _safe_parts(relpath, uri)
    local = prefix / "resources" / _segment(label) / "files" / PurePosixPath(*parts)
    return RemoteFile(
        uri=quote(uri, safe="/:%@!$&'()*+,;=-._~"),
        local=local,
        size=row.size,
        digest=(row.digest or "").strip().lower() or None,
        name="/".join(parts),
    )


def _rows(client: XNATClient, path: str) -> list[ResourceFile]:
    return ResourceFile.from_rows(client.get_result_set(path))


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
    found = []
    for row in _rows(client, path):
        scan = _SCAN.search(row.uri or "")
        scan_id = unquote(scan.group(1)) if scan else (selector if "," not in selector else "")
        folder = scan_folder(scan_id, (types or {}).get(scan_id)) if scan_id else "unknown"
        item = _remote(row, PurePosixPath(_segment(label), "scans", folder))
        found.append(replace(item, scan=scan_id or None))
    return found


def session_resource_files(client: XNATClient, data_path: str, *, label: str) -> list[RemoteFile]:
    """Files of the session's own resources (not scans').

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.
        label: Session label.

    Returns:
        The files.
    """
    rows = [r for r in _rows(client, f"{data_path}/files") if "/scans/" not in (r.uri or "")]
    return [_remote(r, PurePosixPath(_segment(label))) for r in rows]


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
        prefix = PurePosixPath(_segment(label), "assessors", _segment(name))
        path = f"{data_path}/assessors/{quote(assessor_id, safe='')}/files"
        found.extend(_remote(r, prefix) for r in _rows(client, path))
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
    chosen: dict[PurePosixPath, RemoteFile] = {}
    for item in files:
        if pattern is not None:
            candidates = (PurePosixPath(item.name).name, item.name, item.local.as_posix())
            if not any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
                continue
        chosen.setdefault(item.local, item)
    return list(chosen.values())
