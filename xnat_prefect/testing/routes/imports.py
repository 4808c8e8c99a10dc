"""Import service ``POST /data/services/import`` and the Direct-Archive XAPI.

Handlers: ``DICOM-zip`` (default; zip/tar/tar.gz chosen by the file name extension, which for
raw bodies comes from the Content-Type), ``gradual-DICOM`` (one DICOM file; chosen
automatically for ``Content-Type: application/dicom``) and ``SI`` (synchronous build, then
archive or prearchive). Files land in the prearchive (RECEIVING) exactly as C-STORE files do;
``action=commit`` or any ``dest`` builds synchronously, ``dest=/archive/...`` also archives
synchronously. ``Direct-Archive=true`` sends files to a holding area archived after the quiet
interval. The reply is ``text/uri-list`` (CRLF lines).

The module also exports :func:`store_received_file`, the C-STORE receiver's hand-off.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.dicom_headers import read_header
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes import _prearc_ops as ops
from xnat_prefect.testing.routes import _services
from xnat_prefect.testing.routes._archiving import ArchiveError, ArchiveRequest, archive_session
from xnat_prefect.testing.routes._extract import (
    UploadFormatError,
    copy_to_temp,
    iter_entries,
    kind_for,
)
from xnat_prefect.testing.routes._prearc import (
    DIRECT,
    UNASSIGNED,
    LabelTooLongError,
    NotDicomError,
    PrearcKey,
    PrearcLockedError,
    ReceiveOptions,
    load,
)
from xnat_prefect.testing.routes._prearc_build import build_session
from xnat_prefect.testing.routes._prearc_http import (
    Destination,
    optional_bool,
    parse_dest,
    parse_overwrite,
)
from xnat_prefect.testing.routes._receive import receive_file, store_received_file
from xnat_prefect.testing.store import Row

__all__ = ["ROUTES", "NotDicomError", "PrearcKey", "ReceiveOptions", "store_received_file"]

HANDLERS = {
    "dicom-zip": "DICOM-zip",
    "gradual-dicom": "gradual-DICOM",
    "si": "SI",
    "xar": "XAR",
    "inbox": "inbox",
    "automation": "automation",
}
EXTENSIONS = {
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/x-tar": ".tar",
    "application/x-gzip": ".tar.gz",
    "application/gzip": ".tar.gz",
    "application/x-tgz": ".tar.gz",
    "application/x-compressed-tar": ".tar.gz",
    "application/dicom": ".dcm",
}
_INFLIGHT_LOCK = threading.Lock()


@dataclass
class _Upload:
    name: str
    content_type: str
    stream: IO[bytes] | None = None
    path: Path | None = None


def _handler(req: EmuRequest) -> str:
    given = req.arg("import-handler")
    if given is None:
        if req.content_type == "application/dicom" and not req.uploads:
            return "gradual-DICOM"
        given = str(req.state.site_config("uiDefaultCompressedUploaderImporter") or "DICOM-zip")
    handler = HANDLERS.get(given.strip().lower())
    if handler is None:
        raise HTTPError(404, f"Unknown importer implementation specified: {given}")
    if handler not in ("DICOM-zip", "gradual-DICOM", "SI"):
        raise HTTPError(400, f"The XNAT emulator does not implement the {handler} importer.")
    return handler


def _upload(req: EmuRequest) -> _Upload:
    if len(req.uploads) > 1:
        raise HTTPError(400, "Importer is limited to one uploaded resource at a time.")
    if req.uploads:
        part = req.uploads[0]
        return _Upload(part.filename or "", part.content_type or "", stream=part.file)
    if req.body_path is not None and req.content_type != "application/x-www-form-urlencoded":
        extension = EXTENSIONS.get(req.content_type, "")
        return _Upload(f"upload{extension}", req.content_type, path=req.body_path)
    raise HTTPError(400, "Unable to identify upload format.")


def _project(req: EmuRequest, ref: str | None) -> str | None:
    if not ref or ref == UNASSIGNED:
        return None
    state = req.state
    project = state.resolve_project(ref)
    if project is None or not state.can_see_project(req.user, project):
        raise HTTPError(404, f"Unable to identify project {ref}")
    if not state.can_edit(req.user, project):
        raise HTTPError(403, f"User {req.login} does not have permission to upload to {ref}.")
    return project


def _options(req: EmuRequest, dest: Destination | None) -> ReceiveOptions:
    archive = dest is not None and dest.area == "archive"
    slot = None
    if dest is not None and dest.area == "prearchive" and dest.timestamp and dest.label:
        slot = (dest.timestamp, dest.label)
    project = _project(
        req, (dest.project if dest else None) or req.arg("PROJECT_ID") or req.arg("project")
    )
    if slot is not None and project is None:
        raise HTTPError(400, "A fixed prearchive destination needs a project.")
    subject = (dest.subject if archive and dest else None) or req.arg("SUBJECT_ID")
    session = (dest.label if dest else None) or req.arg("EXPT_LABEL")
    has_overwrite = req.arg("overwrite") is not None or req.arg("override") is not None
    return ReceiveOptions(
        project=project,
        subject=subject or req.arg("subject"),
        session=session or req.arg("session"),
        slot=slot,
        auto_archive=optional_bool(req, "AA", "auto-archive"),
        direct_archive=req.flag("Direct-Archive"),
        overwrite=parse_overwrite(req) if has_overwrite else None,
        login=req.login,
        source=req.arg("SOURCE") or "",
        visit=req.arg("VISIT") or "",
        protocol=req.arg("PROTOCOL") or "",
        timezone=req.arg("TIMEZONE") or "",
        prevent_anon=req.arg("prevent_anon") or "",
        prevent_auto_commit=req.arg("prevent_auto_commit") or "",
    )


def _reply_uri(key: PrearcKey) -> str:
    return key.direct_uri if key.direct else key.uri


@route("POST", "/data/services/import")
def import_service(req: EmuRequest) -> Response:
    """``POST /data/services/import``: DICOM-zip, gradual-DICOM and SI importers."""
    handler = _handler(req)
    dest_value = req.arg("dest")
    dest = parse_dest(dest_value) if dest_value else None
    upload = _upload(req)
    options = _options(req, dest)
    if handler == "gradual-DICOM":
        return _gradual(req, upload, options)
    kind = kind_for(upload.name)
    if kind is None:
        shown = upload.name or upload.content_type or "(no name)"
        raise HTTPError(
            400,
            f"Unsupported format: {shown}. Send the archive as application/zip, "
            "application/x-tar or application/x-gzip, or as a *.zip/*.tar/*.tar.gz file part.",
        )
    action = (req.arg("action") or "").lower()
    ignore = req.flag("Ignore-Unparsable") or action == "commit" or handler == "SI"
    with ops.import_hold(req.state) as held:
        keys = _receive_archive(req, upload, kind, options, ignore=ignore, held=held)
        return _finish_archive_import(req, keys, handler, action, dest, options)


def _finish_archive_import(
    req: EmuRequest,
    keys: list[PrearcKey],
    handler: str,
    action: str,
    dest: Destination | None,
    options: ReceiveOptions,
) -> Response:
    if handler == "SI":
        return _si(req, keys, dest)
    if options.direct_archive or not (action == "commit" or dest is not None):
        return wire.uri_list([_reply_uri(k) for k in keys])
    uris = []
    for key in keys:
        built = _build(req, key)
        archive_now = (dest is not None and dest.area == "archive") or (
            dest is None and ops.auto_archive_applies(req.state, built)
        )
        if archive_now:
            uris.append(_archive(req, key))
        else:
            ops.schedule_auto_archive(req.state, key.session_id)
            uris.append(key.uri)
    return wire.uri_list(uris)


def _receive_archive(
    req: EmuRequest,
    upload: _Upload,
    kind: str,
    options: ReceiveOptions,
    *,
    ignore: bool,
    held: list[int],
) -> list[PrearcKey]:
    state = req.state
    keys: dict[int, PrearcKey] = {}
    with contextlib.ExitStack() as stack:
        stream = upload.stream
        if stream is None:
            assert upload.path is not None
            stream = stack.enter_context(upload.path.open("rb"))
        entries = iter_entries(stream, kind, state.store.tmp_dir)
        stack.callback(entries.close)
        try:
            for entry in entries:
                header = read_header(entry.path)
                if header is None:
                    if ignore:
                        continue
                    raise HTTPError(
                        400,
                        f"Unable to parse {entry.name} as DICOM; send Ignore-Unparsable=true "
                        "to skip files that are not DICOM.",
                    )
                try:
                    key = receive_file(
                        state, entry.path, header, options=options, digest=entry.digest
                    )
                except LabelTooLongError as exc:
                    raise _unreadable(entry.name) from exc
                ops.hold_session(state, held, key.session_id)
                keys.setdefault(key.session_id, key)
        except UploadFormatError as exc:
            raise HTTPError(400, str(exc)) from exc
        except PrearcLockedError as exc:
            raise HTTPError(409, "session document locked") from exc
    return list(keys.values())


def _unreadable(name: str) -> HTTPError:
    """XNAT's reply when storing one file fails for a reason other than a client error.

    ``GradualDicomImporter`` (which DICOM-zip runs per entry) wraps any failure to create the
    session folder or its prearchive row, e.g. a label too long for a folder name, in a 400
    naming the file.
    """
    return HTTPError(400, f"unable to read DICOM object {name}")


def _build(req: EmuRequest, key: PrearcKey) -> Row:
    try:
        built = build_session(req.state, key.session_id)
    except PrearcLockedError as exc:
        raise HTTPError(409, "session document locked") from exc
    if built is None or built["status"] != "READY":
        raise HTTPError(500, "The session could not be built.")
    return built


def _archive(req: EmuRequest, key: PrearcKey) -> str:
    request = ArchiveRequest(
        overwrite=parse_overwrite(req),
        overwrite_files=req.flag("overwrite_files"),
        login=req.login,
    )
    try:
        return archive_session(req.state, key.session_id, request).uri
    except ArchiveError as exc:
        raise HTTPError(exc.status_code, exc.message) from exc


def _si(req: EmuRequest, keys: list[PrearcKey], dest: Destination | None) -> Response:
    if not keys:
        raise HTTPError(400, "Upload did not include parsable files for session generation.")
    built = [_build(req, key) for key in keys]
    to_archive = (dest is not None and dest.area == "archive") or any(
        ops.auto_archive_applies(req.state, row) for row in built
    )
    if to_archive and len(keys) > 1:
        raise HTTPError(400, "Upload included files for multiple imaging sessions.")
    if to_archive:
        return wire.uri_list([_archive(req, keys[0])])
    return wire.uri_list([key.uri for key in keys])


def _gradual(req: EmuRequest, upload: _Upload, options: ReceiveOptions) -> Response:
    state = req.state
    path = upload.path
    if path is None:
        assert upload.stream is not None
        path, _digest = copy_to_temp(upload.stream, state.store.tmp_dir, prefix="gradual-")
    try:
        header = read_header(path)
        if header is None:
            raise HTTPError(400, f"Unable to parse {upload.name or 'the upload'} as DICOM.")
        inflight: set[tuple[str, str]] = state.extras.setdefault("gradual_inflight", set())
        token = (header.study_instance_uid, header.sop_instance_uid)
        with _INFLIGHT_LOCK:
            if token in inflight:
                raise HTTPError(400, "Concurrent file sends of the same data is not supported.")
            inflight.add(token)
        try:
            key = receive_file(state, path, header, options=options)
        except PrearcLockedError as exc:
            raise HTTPError(409, "session document locked") from exc
        except LabelTooLongError as exc:
            raise _unreadable(upload.name or path.name) from exc
        finally:
            with _INFLIGHT_LOCK:
                inflight.discard(token)
    finally:
        if upload.path is None:
            path.unlink(missing_ok=True)
    return wire.uri_list([_reply_uri(key)])


# ----------------------------------------------------------------------------- Direct-Archive


def _direct_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project": row["project"],
        "subject": row["subject"],
        "name": row["name"],
        "folderName": row["folder"],
        "tag": row["tag"],
        "timestamp": row["timestamp"],
        "status": row["status"],
        "uploadDate": row["uploaded"],
        "lastModified": row["lastmod"],
        "scanDate": row["scan_date"],
        "scanTime": row["scan_time"],
        "url": f"/xapi/direct-archive/{row['project']}/{row['tag']}/{row['name']}",
        "location": row["root"],
    }


def _direct_row(req: EmuRequest) -> Row:
    p = req.params
    row = req.state.store.one(
        "SELECT * FROM prearc_sessions WHERE root=? AND project=? AND tag=? AND name=?",
        (DIRECT, p["project"], p["tag"], p["name"]),
    )
    if row is None:
        raise HTTPError(
            404,
            f"Unable to find requested file or resource: direct-archive session "
            f"{p['project']}/{p['tag']}/{p['name']}",
        )
    if not req.state.can_edit(req.user, row["project"]):
        raise HTTPError(403, "")
    return row


@route("GET", "/xapi/direct-archive/{project}/{tag}/{name}")
def get_direct(req: EmuRequest) -> Response:
    """``GET /xapi/direct-archive/{P}/{tag}/{name}``: one holding session as JSON."""
    return wire.json_response(_direct_json(_direct_row(req)))


@route("POST", "/xapi/direct-archive/{project}/{tag}/{name}")
def trigger_direct(req: EmuRequest) -> Response:
    """``POST /xapi/direct-archive/{P}/{tag}/{name}``: archive now (200)."""
    row = _direct_row(req)
    session_id = int(row["id"])
    try:
        build_session(req.state, session_id)
    except PrearcLockedError as exc:
        raise HTTPError(409, "Operation already in progress on this session.") from exc
    if load(req.state, session_id)["status"] == "READY":
        ops.archive_direct(req.state, session_id)
    return wire.text_response("")


@route("POST", "/xapi/direct-archive")
def list_direct(req: EmuRequest) -> Response:
    """``POST /xapi/direct-archive``: the holding sessions the caller may manage (JSON list)."""
    rows = req.state.store.query(
        "SELECT * FROM prearc_sessions WHERE root=? ORDER BY id", (DIRECT,)
    )
    visible = [_direct_json(r) for r in rows if req.state.can_edit(req.user, r["project"])]
    return wire.json_response(visible)


ROUTES = [import_service, get_direct, trigger_direct, list_direct, *_services.ROUTES]
