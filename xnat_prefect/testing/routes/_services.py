"""Archive and prearchive batch services (routes served by the ``imports`` module).

* ``POST /data/services/archive`` — one ``src``: archive synchronously, 200 ``text/uri-list``
  (or 303 See Other to ``{siteUrl}/data/archive/...`` for auto-archive sessions unless
  ``auto-archive=false``, or when ``redirect=true``); several ``src``: queued, 200 status table.
* ``POST /data/services/prearchive/move|delete|rebuild?src=...`` — queued unless
  ``async=false``; the reply is the prearchive status table.
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes import _prearc_ops as ops
from xnat_prefect.testing.routes._archiving import ArchiveError, ArchiveRequest, archive_session
from xnat_prefect.testing.routes._prearc import (
    UNASSIGNED,
    PrearcLockedError,
    SessionGoneError,
    delete_session,
    find,
    load,
    project_code,
)
from xnat_prefect.testing.routes._prearc_build import build_session
from xnat_prefect.testing.routes._prearc_http import (
    optional_bool,
    parse_dest,
    parse_overwrite,
    parse_src,
    project_id,
    status_table,
)
from xnat_prefect.testing.store import Row

BATCH_OPS = {"move": "move", "delete": "delete", "rebuild": "build"}


def _sources(req: EmuRequest) -> list[str]:
    return [s.strip() for value in req.args("src") for s in value.split(",") if s.strip()]


def _source_rows(req: EmuRequest, sources: list[str]) -> list[Row]:
    rows = []
    for src in sources:
        project, timestamp, folder = parse_src(src)
        resolved = project_id(req, project, edit=True)
        row = find(req.state, resolved, timestamp, folder)
        if row is None:
            raise HTTPError(404, f"{src} not found.")
        rows.append(row)
    return rows


def _target_project(req: EmuRequest, ref: str | None) -> str | None:
    if not ref:
        return None
    state = req.state
    project = state.resolve_project(ref)
    if project is None:
        raise HTTPError(404, f"Unable to identify project {ref}")
    if not state.can_edit(req.user, project):
        raise HTTPError(403, "Invalid permissions for new project.")
    return project


@route("POST", "/data/services/archive")
def archive_service(req: EmuRequest) -> Response:
    """``POST /data/services/archive``: archive prearchive sessions."""
    state = req.state
    sources = _sources(req)
    target_param = req.arg("project")
    if not sources:
        parts = (req.arg("project"), req.arg("timestamp"), req.arg("folder"))
        if not all(parts):
            raise HTTPError(404, "Unknown prearchive session.")
        sources = ["/prearchive/projects/{}/{}/{}".format(*parts)]
        target_param = None
    dest_value = req.arg("dest")
    dest = parse_dest(dest_value) if dest_value else None
    if dest is not None and dest.area != "archive":
        raise HTTPError(400, f"Invalid destination {dest_value}: archive to /archive/projects/P")
    rows = _source_rows(req, sources)
    target = _target_project(req, (dest.project if dest else None) or target_param)
    request = ArchiveRequest(
        project=target,
        subject=(dest.subject if dest else None) or req.arg("subject"),
        label=(dest.label if dest else None) or req.arg("session") or req.arg("label"),
        overwrite=parse_overwrite(req),
        overwrite_files=req.flag("overwrite_files"),
        login=req.login,
    )
    if len(rows) > 1:
        for row in rows:
            try:
                ops.queue(state, int(row["id"]), "archive", request=asdict(request))
            except PrearcLockedError as exc:
                raise HTTPError(403, str(exc)) from exc
        return status_table(req, [load(state, int(r["id"])) for r in rows])
    row = rows[0]
    if row["project"] == UNASSIGNED and target is None:
        raise HTTPError(
            400, "Sessions in the Unassigned prearchive need a destination (dest= or project=)."
        )
    code = project_code(state, target or row["project"])
    auto = bool(row["aa"]) if row["aa"] is not None else (code is not None and code >= 4)
    try:
        result = archive_session(state, int(row["id"]), request)
    except ArchiveError as exc:
        raise HTTPError(exc.status_code, exc.message) from exc
    if req.flag("redirect") or (auto and optional_bool(req, "auto-archive") is not False):
        site_url = str(state.site_config("siteUrl") or state.url).rstrip("/")
        response = wire.uri_list([result.uri], status_code=303)
        response.headers["Location"] = f"{site_url}{result.uri}"
        return response
    return wire.uri_list([result.uri])


@route("POST", "/data/services/prearchive/{operation}")
def batch_service(req: EmuRequest) -> Response:
    """``POST /data/services/prearchive/{op}?src=...``: move, delete, rebuild (async)."""
    state = req.state
    operation = req.params["operation"]
    op = BATCH_OPS.get(operation)
    if op is None:
        raise HTTPError(
            404, f"Unknown prearchive operation {operation}: use move, delete or rebuild"
        )
    sources = _sources(req)
    if not sources:
        raise HTTPError(400, "Specify the sessions with src=/prearchive/projects/P/TS/FOLDER")
    rows = _source_rows(req, sources)
    params: dict[str, str] = {}
    if op == "move":
        new_project = req.arg("newProject")
        if not new_project:
            raise HTTPError(400, "The move operation needs newProject=PROJECT")
        target = _target_project(req, new_project)
        assert target is not None
        for row in rows:
            clash = find(state, target, row["timestamp"], row["folder"])
            if clash is not None and int(clash["id"]) != int(row["id"]):
                raise HTTPError(
                    409, f"{row['timestamp']}/{row['folder']} already exists in {target}"
                )
        params["project"] = target
    run_async = req.arg("async") is None or req.flag("async")
    survivors = []
    for row in rows:
        session_id = int(row["id"])
        try:
            if run_async:
                ops.queue(state, session_id, op, **params)
            elif op == "delete":
                delete_session(state, session_id)
            elif op == "build":
                build_session(state, session_id)
            else:
                ops.move_session(state, session_id, params["project"])
        except PrearcLockedError as exc:
            raise HTTPError(403, "Operation already in progress on this prearchive entry.") from exc
        except FileExistsError as exc:
            raise HTTPError(409, str(exc)) from exc
        try:
            survivors.append(load(state, session_id))
        except SessionGoneError:
            continue
    return status_table(req, survivors)


ROUTES = [archive_service, batch_service]
