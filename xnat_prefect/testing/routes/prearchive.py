"""Prearchive routes: listings, one session (XML/JSON/zip, scans, files, logs), actions, DELETE.

``/data/prearchive`` lists the sessions of every project the caller can edit (plus Unassigned
for administrators); a session answers its XML by default (404 until built). POST actions:
``build`` (200), ``reset-status`` (200), ``move`` (301, new URI as body), ``commit`` (301 with
the archive URI when auto-archive applies, else 200), anything else 400.
"""

from __future__ import annotations

from pathlib import Path

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes import _prearc_ops as ops
from xnat_prefect.testing.routes._archiving import ArchiveError, archive_session
from xnat_prefect.testing.routes._prearc import (
    PREARCHIVE,
    UNASSIGNED,
    PrearcLockedError,
    delete_session,
    key_of,
    session_dir,
    set_status,
    xml_path,
)
from xnat_prefect.testing.routes._prearc import SCHEMA as PREARC_SCHEMA
from xnat_prefect.testing.routes._prearc_build import (
    build_session,
    scan_summaries,
    session_xml,
    zip_session,
)
from xnat_prefect.testing.routes._prearc_http import (
    optional_bool,
    project_id,
    session_or_404,
    status_table,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

SCHEMA = PREARC_SCHEMA
SESSION = "/data/prearchive/projects/{project}/{timestamp}/{folder}"


def tick(state: EmulatorState) -> bool:
    """Background prearchive work (see :func:`_prearc_ops.tick`).

    Args:
        state: Emulator state.

    Returns:
        True while sessions are RECEIVING, queued or due to archive.
    """
    return ops.tick(state)


def _visible_rows(req: EmuRequest, projects: list[str] | None) -> list[Row]:
    state = req.state
    rows = state.store.query(
        "SELECT * FROM prearc_sessions WHERE root=? ORDER BY project, timestamp, folder",
        (PREARCHIVE,),
    )
    tag = req.query.get("tag")
    if tag is not None:
        if req.user is None or not req.user.is_admin:
            raise HTTPError(403, "Only site administrators may look up prearchive sessions by tag.")
        rows = [r for r in rows if r["tag"] == tag]
    if projects is not None:
        return [r for r in rows if r["project"] in projects]
    is_admin = req.user is not None and req.user.is_admin
    return [
        r
        for r in rows
        if (r["project"] == UNASSIGNED and is_admin)
        or (r["project"] != UNASSIGNED and state.can_edit(req.user, r["project"]))
    ]


@route("GET", "/data/prearchive")
def list_all(req: EmuRequest) -> Response:
    """``GET /data/prearchive[?tag=UID]``: every session the caller may manage."""
    return status_table(req, _visible_rows(req, None))


@route("GET", "/data/prearchive/projects")
def list_projects(req: EmuRequest) -> Response:
    """``GET /data/prearchive/projects``: same as ``/data/prearchive``."""
    return status_table(req, _visible_rows(req, None))


@route("PUT", "/data/prearchive", admin=True)
def resync(req: EmuRequest) -> Response:
    """``PUT /data/prearchive`` (admin): re-sync from disk (the emulator's DB is the truth)."""
    return wire.text_response("")


@route("GET", "/data/prearchive/projects/{project}")
def list_project(req: EmuRequest) -> Response:
    """``GET /data/prearchive/projects/{P}`` (comma list, ``Unassigned``): 403 without rights."""
    wanted = [project_id(req, p.strip(), edit=False) for p in req.params["project"].split(",")]
    return status_table(req, _visible_rows(req, wanted))


@route("GET", "/data/prearchive/projects/{project}/{timestamp}")
def list_timestamp(req: EmuRequest) -> Response:
    """``GET /data/prearchive/projects/{P}/{TS}``: the sessions of one upload timestamp."""
    project = project_id(req, req.params["project"], edit=False)
    rows = [r for r in _visible_rows(req, [project]) if r["timestamp"] == req.params["timestamp"]]
    return status_table(req, rows)


def _session(req: EmuRequest, *, edit: bool = False) -> Row:
    p = req.params
    return session_or_404(req, p["project"], p["timestamp"], p["folder"], edit=edit)


@route("GET", SESSION)
def get_session(req: EmuRequest) -> Response:
    """One session: XML (default, 404 until built), ``format=json`` row, ``format=zip``."""
    row = _session(req)
    fmt = req.fmt
    if fmt in ("json", "csv", "html"):
        return status_table(req, [row])
    if fmt == "zip":
        path = zip_session(req.state, row)
        return FileResponse(
            path,
            media_type="application/zip",
            filename=f"{row['folder']}.zip",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )
    if not row["built"]:
        raise HTTPError(
            404,
            "The session document is not available for this prearchive session yet "
            f"(status {row['status']}); it is written when the session is built.",
        )
    target = xml_path(req.state, row)
    text = target.read_text("utf-8") if target.exists() else session_xml(req.state, row)
    return wire.text_response(text, media_type="text/xml")


def _action_params(req: EmuRequest) -> None:
    if req.content_type == "application/json" and req.body_path is not None:
        body = req.json()
        if isinstance(body, dict):
            for key, value in body.items():
                req.form.setdefault(str(key), str(value))


@route("POST", SESSION)
def post_session(req: EmuRequest) -> Response:
    """``POST ?action=build|reset-status|move|commit`` (``set-status`` for admins)."""
    _action_params(req)
    row = _session(req, edit=True)
    state = req.state
    action = (req.arg("action") or "").strip()
    session_id = int(row["id"])
    uri = key_of(row).uri
    if action == "build":
        try:
            build_session(state, session_id)
        except PrearcLockedError as exc:
            raise HTTPError(409, "session document locked") from exc
        return wire.uri_list([uri])
    if action == "reset-status":
        if row["status"].startswith("QUEUED_") or row["status"] in ("ARCHIVING", "MOVING"):
            raise HTTPError(409, "session document locked")
        set_status(state, session_id, "READY" if row["built"] else "RECEIVING", "Status reset")
        return wire.uri_list([uri])
    if action == "set-status" and req.user is not None and req.user.is_admin:
        status = req.arg("status")
        if not status:
            raise HTTPError(400, "set-status needs status=")
        set_status(state, session_id, status.upper(), f"Status set to {status.upper()}")
        return wire.uri_list([uri])
    if action == "move":
        return _move(req, row)
    if action == "commit":
        return _commit(req, row)
    raise HTTPError(
        400,
        f"Unsupported action {action!r} on a prearchive session; supported actions are build, "
        "reset-status, move and commit.",
    )


def _move(req: EmuRequest, row: Row) -> Response:
    target = req.arg("newProject")
    if not target:
        raise HTTPError(400, "The move action needs newProject=PROJECT")
    try:
        project = project_id(req, target, edit=True)
    except HTTPError as exc:
        if exc.status_code == 404:
            raise
        raise HTTPError(403, "Invalid permissions for new project.") from exc
    if project != row["project"]:
        try:
            row = ops.move_session(req.state, int(row["id"]), project)
        except PrearcLockedError as exc:
            raise HTTPError(409, "session document locked") from exc
        except FileExistsError as exc:
            raise HTTPError(409, str(exc)) from exc
    return wire.uri_list([key_of(row).uri], status_code=301)


def _commit(req: EmuRequest, row: Row) -> Response:
    state = req.state
    session_id = int(row["id"])
    for column, param in (
        ("visit", "VISIT"),
        ("protocol", "PROTOCOL"),
        ("timezone", "TIMEZONE"),
        ("source", "SOURCE"),
    ):
        value = req.arg(param)
        if value is not None:
            state.store.execute(
                f"UPDATE prearc_sessions SET {column}=? WHERE id=?", (value, session_id)
            )
    aa = optional_bool(req, "AA", "auto-archive")
    if aa is not None:
        state.store.execute("UPDATE prearc_sessions SET aa=? WHERE id=?", (int(aa), session_id))
    try:
        built = build_session(state, session_id)
    except PrearcLockedError as exc:
        raise HTTPError(409, "session document locked") from exc
    if built is None or built["status"] == "ERROR":
        raise HTTPError(500, "The session could not be built (no DICOM files).")
    if row["project"] == UNASSIGNED or not ops.auto_archive_applies(state, built):
        return wire.uri_list([key_of(built).uri])
    try:
        result = archive_session(state, session_id, ops.auto_request(state, built, login=req.login))
    except ArchiveError as exc:
        raise HTTPError(exc.status_code, exc.message) from exc
    return wire.uri_list([result.uri], status_code=301)


@route("DELETE", SESSION)
def delete_session_route(req: EmuRequest) -> Response:
    """``DELETE`` one session: 200; 403 without edit rights; 404 unknown."""
    row = _session(req, edit=True)
    if row["status"] in ("ARCHIVING", "MOVING", "DELETING"):
        raise HTTPError(409, "session document locked")
    delete_session(req.state, int(row["id"]))
    return wire.text_response("")


@route("GET", SESSION + "/logs")
def get_logs(req: EmuRequest) -> Response:
    """``.../logs``: table ``id, date, entry``."""
    row = _session(req)
    logs = req.state.store.query(
        "SELECT id, date, entry FROM prearc_logs WHERE session_id=? ORDER BY id", (row["id"],)
    )
    table = [dict(r) for r in logs]
    return wire.result_set(table, ["id", "date", "entry"], fmt=req.fmt, total_records=False)


@route("GET", SESSION + "/logs/last")
def get_last_log(req: EmuRequest) -> Response:
    """``.../logs/last``: the latest log line as text."""
    row = _session(req)
    last = req.state.store.one(
        "SELECT entry FROM prearc_logs WHERE session_id=? ORDER BY id DESC LIMIT 1", (row["id"],)
    )
    return wire.text_response("" if last is None else str(last["entry"]))


@route("GET", SESSION + "/scans")
def get_scans(req: EmuRequest) -> Response:
    """``.../scans``: columns ``ID, xsiType, series_description``."""
    row = _session(req)
    table = [
        {"ID": s.scan_id, "xsiType": s.xsi_type, "series_description": s.series_description}
        for s in scan_summaries(req.state, int(row["id"]))
    ]
    return wire.result_set(table, ["ID", "xsiType", "series_description"], fmt=req.fmt)


def _scan(req: EmuRequest, row: Row) -> Row:
    scan = req.state.store.one(
        "SELECT scan_id FROM prearc_files WHERE session_id=? AND scan_id=? LIMIT 1",
        (row["id"], req.params["scan"]),
    )
    if scan is None:
        raise HTTPError(404, f"Unable to find scan {req.params['scan']} in this session.")
    return scan


@route("GET", SESSION + "/scans/{scan}")
def get_scan(req: EmuRequest) -> Response:
    """``.../scans/{id}``: one-row scan table."""
    row = _session(req)
    _scan(req, row)
    table = [
        {"ID": s.scan_id, "xsiType": s.xsi_type, "series_description": s.series_description}
        for s in scan_summaries(req.state, int(row["id"]))
        if s.scan_id == req.params["scan"]
    ]
    return wire.result_set(table, ["ID", "xsiType", "series_description"], fmt=req.fmt)


@route("GET", SESSION + "/scans/{scan}/resources")
def get_scan_resources(req: EmuRequest) -> Response:
    """``.../scans/{id}/resources``: ``label, file_count, file_size``."""
    row = _session(req)
    _scan(req, row)
    scans = [
        s for s in scan_summaries(req.state, int(row["id"])) if s.scan_id == req.params["scan"]
    ]
    table = [
        {"label": "DICOM", "file_count": s.file_count, "file_size": s.file_size} for s in scans
    ]
    return wire.result_set(table, ["label", "file_count", "file_size"], fmt=req.fmt)


@route("GET", SESSION + "/resources")
def get_resources(req: EmuRequest) -> Response:
    """``.../resources``: ``category, cat_id, label, file_count, file_size`` per scan."""
    row = _session(req)
    table = [
        {
            "category": "scans",
            "cat_id": s.scan_id,
            "label": "DICOM",
            "file_count": s.file_count,
            "file_size": s.file_size,
        }
        for s in scan_summaries(req.state, int(row["id"]))
    ]
    columns = ["category", "cat_id", "label", "file_count", "file_size"]
    return wire.result_set(table, columns, fmt=req.fmt)


def _files(req: EmuRequest, row: Row) -> list[Row]:
    _scan(req, row)
    if req.params["resource"] != "DICOM":
        raise HTTPError(404, f"Unable to find resource {req.params['resource']}.")
    return req.state.store.query(
        "SELECT * FROM prearc_files WHERE session_id=? AND scan_id=? ORDER BY name",
        (row["id"], req.params["scan"]),
    )


@route("GET", SESSION + "/scans/{scan}/resources/{resource}/files")
def get_files(req: EmuRequest) -> Response:
    """``.../scans/{id}/resources/DICOM/files``: ``Name, Size, URI`` (no totalRecords)."""
    row = _session(req)
    base = req.path
    table = [
        {"Name": Path(f["name"]).name, "Size": f["size"], "URI": f"{base}/{Path(f['name']).name}"}
        for f in _files(req, row)
    ]
    return wire.result_set(table, ["Name", "Size", "URI"], fmt=req.fmt, total_records=False)


@route("GET", SESSION + "/scans/{scan}/resources/{resource}/files/{name:path}")
def get_file(req: EmuRequest) -> Response:
    """Download one prearchive file."""
    row = _session(req)
    for item in _files(req, row):
        if Path(item["name"]).name == req.params["name"]:
            path = session_dir(req.state, row) / item["name"]
            return FileResponse(path, media_type="application/dicom")
    raise HTTPError(400, f"Unable to access the file at: {req.params['name']}")


@route(("POST", "PUT", "DELETE"), SESSION + "/{rest:path}")
def change_subpath(req: EmuRequest) -> Response:
    """Changes below a session (``DELETE .../scans/1`` …) are not supported: 400."""
    _session(req, edit=True)
    raise HTTPError(400, f"{req.method} is not supported on {req.path}")


ROUTES = [
    list_all,
    resync,
    list_projects,
    list_project,
    list_timestamp,
    get_session,
    post_session,
    delete_session_route,
    get_logs,
    get_last_log,
    get_scans,
    get_scan,
    get_scan_resources,
    get_resources,
    get_files,
    get_file,
    change_subpath,
]
