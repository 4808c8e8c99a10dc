"""HTTP-side helpers shared by the import, archive and prearchive routes.

Permission rules (XNAT's ``PrearcUtils``): a project's prearchive needs read access to list
and edit access to change; the Unassigned prearchive and ``?tag=`` lookups are for site
administrators. Data URIs given as parameter values (``src``, ``dest``) may carry a ``/data``
or ``/REST`` prefix and must then start with ``/prearchive/...`` or ``/archive/...``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.routes._prearc import UNASSIGNED, find
from xnat_prefect.testing.store import Row

COLUMNS = (
    "project",
    "timestamp",
    "lastmod",
    "uploaded",
    "scan_date",
    "scan_time",
    "subject",
    "folderName",
    "name",
    "tag",
    "status",
    "url",
    "autoarchive",
    "prevent_anon",
    "prevent_auto_commit",
    "SOURCE",
    "VISIT",
    "PROTOCOL",
    "TIMEZONE",
)
_PREARC_URI = re.compile(r"^/prearchive/projects/([^/]+)/([^/]+)/([^/]+)$")
_ARCHIVE_URI = re.compile(
    r"^/archive/projects/([^/]+)(?:/subjects/([^/]+)(?:/experiments/([^/]+))?)?$"
)
_OVERWRITE = {
    "": "none",
    "none": "none",
    "false": "none",
    "append": "append",
    "true": "append",
    "delete": "delete",
    "override": "delete",
}


@dataclass(frozen=True)
class Destination:
    """A parsed ``dest`` value.

    Attributes:
        area: ``prearchive`` or ``archive``.
        project: Project (None: from headers).
        subject: Subject label (archive only).
        label: Session label (archive only) or prearchive folder.
        timestamp: Prearchive timestamp (fixed slot).
    """

    area: str
    project: str | None = None
    subject: str | None = None
    label: str | None = None
    timestamp: str | None = None


def strip_data(uri: str) -> str:
    """Drop a ``/data`` or ``/REST`` prefix and a trailing slash from a data URI.

    Args:
        uri: The parameter value.

    Returns:
        The bare URI.
    """
    uri = uri.strip()
    for prefix in ("/data", "/REST"):
        if uri == prefix or uri.startswith(prefix + "/"):
            uri = uri[len(prefix) :]
    return uri.rstrip("/") or "/"


def parse_dest(value: str) -> Destination:
    """Parse ``dest``: ``/prearchive[/projects/P[/TS/F]]`` or ``/archive/projects/P[/...]``.

    Args:
        value: The parameter.

    Returns:
        The destination.

    Raises:
        HTTPError: 400 for anything else.
    """
    uri = strip_data(value)
    if uri == "/prearchive":
        return Destination("prearchive")
    parts = uri.split("/")
    if uri.startswith("/prearchive/projects/") and len(parts) in (4, 6):
        if len(parts) == 6:
            return Destination("prearchive", parts[3], label=parts[5], timestamp=parts[4])
        return Destination("prearchive", parts[3])
    match = _ARCHIVE_URI.match(uri)
    if match:
        return Destination("archive", match.group(1), match.group(2), match.group(3))
    raise HTTPError(
        400,
        f"Invalid destination {value}: use /prearchive, /prearchive/projects/P or "
        "/archive/projects/P[/subjects/S[/experiments/E]]",
    )


def parse_src(value: str) -> tuple[str, str, str]:
    """Parse a ``src=/prearchive/projects/P/TS/F`` value.

    Args:
        value: The parameter.

    Returns:
        ``(project, timestamp, folder)``.

    Raises:
        HTTPError: 400 for archive or malformed URIs.
    """
    uri = strip_data(value)
    match = _PREARC_URI.match(uri)
    if match is None:
        raise HTTPError(
            400, f"Invalid src {value}: expected /prearchive/projects/PROJECT/TIMESTAMP/FOLDER"
        )
    return match.group(1), match.group(2), match.group(3)


def parse_overwrite(req: EmuRequest) -> str:
    """The ``overwrite`` (or ``override``) parameter as ``none``/``append``/``delete``.

    Args:
        req: The request.

    Returns:
        The mode.

    Raises:
        HTTPError: 400 for an unknown value.
    """
    value = req.arg("overwrite")
    if value is None and req.arg("override") is not None:
        return "delete" if req.flag("override") else "none"
    mode = _OVERWRITE.get((value or "").strip().lower())
    if mode is None:
        raise HTTPError(400, f"Invalid overwrite value {value}: use none, append or delete")
    return mode


def optional_bool(req: EmuRequest, *names: str) -> bool | None:
    """A true/false parameter that may be absent (first of several spellings).

    Args:
        req: The request.
        *names: Parameter names, in priority order.

    Returns:
        True, False or None when none is given.
    """
    for name in names:
        if req.arg(name) is not None:
            return req.flag(name)
    return None


def project_id(req: EmuRequest, ref: str, *, edit: bool) -> str:
    """Resolve a project reference for prearchive use, checking permissions.

    Args:
        req: The request.
        ref: Project ID, alias or ``Unassigned``.
        edit: Whether edit rights are needed (else read rights).

    Returns:
        The project ID (or ``Unassigned``).

    Raises:
        HTTPError: 403 without rights (admin-only for Unassigned), 404 unknown project.
    """
    state = req.state
    if ref == UNASSIGNED:
        if req.user is None or not req.user.is_admin:
            raise HTTPError(403, "Only site administrators may access the Unassigned prearchive.")
        return UNASSIGNED
    resolved = state.resolve_project(ref)
    if resolved is None:
        raise HTTPError(404, f"Unable to identify project {ref}")
    allowed = state.can_edit(req.user, resolved) if edit else state.can_read(req.user, resolved)
    if not allowed:
        raise HTTPError(403, f"User {req.login} does not have access to project {ref}.")
    return resolved


def session_or_404(
    req: EmuRequest, project: str, timestamp: str, folder: str, *, edit: bool = False
) -> Row:
    """A prearchive session the caller may see (or change).

    Args:
        req: The request.
        project: Project ID/alias or Unassigned.
        timestamp: Timestamp folder.
        folder: Session folder.
        edit: Whether edit rights are needed.

    Returns:
        The session row.

    Raises:
        HTTPError: 403/404.
    """
    resolved = project_id(req, project, edit=edit)
    row = find(req.state, resolved, timestamp, folder)
    if row is None:
        raise HTTPError(404, f"/prearchive/projects/{project}/{timestamp}/{folder} not found.")
    return row


def listing_row(row: Row) -> dict[str, Any]:
    """One prearchive table row (XNAT's column names).

    Args:
        row: Session row.

    Returns:
        The row mapping.
    """
    return {
        "project": row["project"],
        "timestamp": row["timestamp"],
        "lastmod": row["lastmod"],
        "uploaded": row["uploaded"],
        "scan_date": row["scan_date"],
        "scan_time": row["scan_time"],
        "subject": row["subject"],
        "folderName": row["folder"],
        "name": row["name"],
        "tag": row["tag"],
        "status": row["status"],
        "url": f"/prearchive/projects/{row['project']}/{row['timestamp']}/{row['folder']}",
        "autoarchive": row["autoarchive"],
        "prevent_anon": row["prevent_anon"],
        "prevent_auto_commit": row["prevent_auto_commit"],
        "SOURCE": row["source"],
        "VISIT": row["visit"],
        "PROTOCOL": row["protocol"],
        "TIMEZONE": row["timezone"],
    }


def status_table(req: EmuRequest, rows: Sequence[Row | Mapping[str, Any]]) -> Response:
    """The prearchive table (no ``totalRecords``, as XNAT prints it).

    Args:
        req: The request (for ``format``).
        rows: Session rows.

    Returns:
        The response.
    """
    table = [listing_row(r) if isinstance(r, Row) else dict(r) for r in rows]
    return wire.result_set(
        table,
        COLUMNS,
        fmt=req.fmt,
        total_records=False,
        sort_by=req.query.get("sortBy"),
        sort_desc=(req.query.get("sortOrder") or "").upper() == "DESC",
    )
