"""File routes: listings, downloads (single files, zip/tar archives), uploads, deletes.

Served below every resource parent (see ``_resources.PARENT_TEMPLATES``):

* ``GET <parent>/files`` and ``GET <parent>/resources/{RES}/files``: the file table, or with
  ``format=zip|tar|tar.gz`` a streamed archive in XNAT's layout;
* ``GET .../files/{path}``: one file (``FileResponse``: Range, content type by extension),
  a folder listing (trailing ``/``), a wildcard match, or a member of a stored zip
  (``archive.zip!inner/path``; ``listContents=true`` lists it);
* ``PUT|POST <parent>/resources/{RES}/files[/{path}]``: upload (raw body or multipart),
  auto-creating the resource; ``overwrite``, ``extract``, ``format``/``content``/``tags``,
  ``update-stats=false``;
* ``DELETE <parent>/resources/{RES}/files/{path}``: a file or a whole folder.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import zipfile
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import FileResponse, Response, StreamingResponse

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route
from xnat_prefect.testing.routes._archive import (
    ARCHIVE_FORMATS,
    CHUNK,
    Entry,
    archive_response,
    entry_name,
)
from xnat_prefect.testing.routes._cascade import resource_dir
from xnat_prefect.testing.routes._catalogs import (
    catalog_rows,
    create_resource,
    refresh_stats,
    resource_attributes,
)
from xnat_prefect.testing.routes._resources import (
    PARENT_TEMPLATES,
    Parent,
    ResourceInfo,
    clean_relpath,
    is_read,
    require_parent_right,
    resolve_parent,
    select_resources,
)
from xnat_prefect.testing.routes._upload import UPLOAD_TYPES, FileStore, archive_kind, remove_files
from xnat_prefect.testing.store import Row

FILE_COLUMNS = (
    "Name",
    "Size",
    "URI",
    "collection",
    "file_tags",
    "file_format",
    "file_content",
    "cat_ID",
    "digest",
)
MEDIA_TYPES = {
    "xml": "text/xml",
    "txt": "text/plain",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "pdf": "application/pdf",
    "html": "text/html",
    "htm": "text/html",
    "svg": "image/svg+xml",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
Match = tuple[ResourceInfo, Row]


def media_type_for(name: str) -> str:
    """XNAT's download content type for a file name (by extension).

    Args:
        name: File name.

    Returns:
        The media type; ``application/octet-stream`` for anything unlisted.
    """
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return MEDIA_TYPES.get(extension, "application/octet-stream")


def _not_found(req: EmuRequest, message: str) -> Response:
    if req.flag("accept-not-found"):
        return Response(status_code=204)
    raise HTTPError(404, message)


def _disk(req: EmuRequest, info: ResourceInfo, relpath: str) -> Path:
    return resource_dir(req.state, info.id).joinpath(*relpath.split("/"))


def _filtered(req: EmuRequest, matches: list[Match]) -> list[Match]:
    formats = req.query.getlist("file_format")
    contents = req.query.getlist("file_content")

    def keep(value: str, wanted: list[str]) -> bool:
        return not wanted or (value or "NULL") in wanted or value in wanted

    return [
        (info, row)
        for info, row in matches
        if keep(row["format"], formats) and keep(row["content"], contents)
    ]


def _table(req: EmuRequest, parent: Parent, matches: list[Match], *, single: bool) -> Response:
    locator = (req.query.get("locator") or "URI").lower()
    key = {"absolutepath": "absolutePath", "projectpath": "projectPath"}.get(locator, "URI")
    rows = []
    for info, row in _filtered(req, matches):
        relpath = str(row["path"])
        if key == "absolutePath":
            where = str(_disk(req, info, relpath))
        elif key == "projectPath":
            where = str(_disk(req, info, relpath).relative_to(req.state.store.archive_dir))
        elif single:
            where = f"{parent.single_base}/resources/{info.id}/files/{relpath}"
        else:
            where = f"{info.stored_base}/files/{relpath}"
        rows.append(
            {
                "Name": posixpath.basename(relpath),
                "Size": row["size"],
                key: where,
                "collection": info.label,
                "file_tags": row["tags"],
                "file_format": row["format"],
                "file_content": row["content"],
                "cat_ID": info.id,
                "digest": row["digest"],
            }
        )
    columns = [key if c == "URI" else c for c in FILE_COLUMNS]
    return wire.result_set(
        rows,
        columns,
        fmt=req.fmt if req.fmt in ("json", "xml", "csv", "html") else "json",
        total_records=False,
        title="Files",
        column_meta=[{"key": key, "serverRoot": ""}],
        sort_by=req.query.get("sortBy"),
        sort_desc=(req.query.get("sortOrder") or "").upper() == "DESC",
    )


def _archive(req: EmuRequest, parent: Parent, matches: list[Match], *, flat: bool) -> Response:
    fmt = req.fmt or "zip"
    structure = req.query.get("structure") or "default"
    entries = []
    for info, row in _filtered(req, matches):
        relpath = str(row["path"])
        disk = _disk(req, info, relpath)
        if not disk.is_file():
            continue
        name = (
            relpath
            if flat
            else entry_name(info, relpath, structure=structure, fmt=fmt, disk_path=disk)
        )
        entries.append(Entry(name, disk))
    if not entries:
        return _not_found(req, "Unable to find file.")
    return archive_response(
        entries, fmt=fmt, download_name=parent.label, compression=req.query.get("compression")
    )


def _path_matches(req: EmuRequest, resources: list[ResourceInfo], relpath: str) -> list[Match]:
    """Entries under a folder (trailing ``/``) or matching a ``*`` pattern."""
    folder = req.raw_path.endswith("/")
    recursive = (req.query.get("recursive") or "").lower() not in ("false", "0")
    rows = catalog_rows(req.state, [r.id for r in resources])
    found: list[Match] = []
    for info in resources:
        for row in rows[info.id]:
            path = str(row["path"])
            if folder:
                prefix = f"{relpath}/" if relpath else ""
                if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                    found.append((info, row))
            elif "*" in relpath and fnmatch.fnmatchcase(path, relpath):
                found.append((info, row))
    return found


def _exact(req: EmuRequest, resources: list[ResourceInfo], relpath: str) -> Match | None:
    for info in resources:
        row = req.state.store.one(
            "SELECT * FROM files WHERE resource_id=? AND path=?", (info.id, relpath)
        )
        if row is not None:
            return info, row
    return None


def _member_bytes(disk: Path, inner: str) -> Iterator[bytes]:
    with zipfile.ZipFile(disk) as archive, archive.open(inner) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _zip_member(req: EmuRequest, resources: list[ResourceInfo], relpath: str) -> Response | None:
    lower = relpath.lower()
    for marker in (".zip!", ".zip/"):
        cut = lower.find(marker)
        if cut < 0:
            continue
        found = _exact(req, resources, relpath[: cut + 4])
        if found is None:
            return None
        disk = _disk(req, found[0], str(found[1]["path"]))
        inner = relpath[cut + 5 :]
        try:
            with zipfile.ZipFile(disk) as archive:
                archive.getinfo(inner)
        except (KeyError, OSError, zipfile.BadZipFile):
            return _not_found(req, "Unable to find file.")

        return StreamingResponse(_member_bytes(disk, inner), media_type=media_type_for(inner))
    return None


def _one_file(req: EmuRequest, parent: Parent, match: Match) -> Response:
    info, row = match
    relpath = str(row["path"])
    disk = _disk(req, info, relpath)
    if not disk.is_file():
        return _not_found(req, "Unable to find file.")
    name = posixpath.basename(relpath)
    fmt = req.fmt
    if fmt in ARCHIVE_FORMATS and not name.lower().endswith(ARCHIVE_FORMATS[fmt][1]):
        return archive_response(
            [Entry(name, disk)],
            fmt=fmt,
            download_name=parent.label,
            compression=req.query.get("compression"),
        )
    if req.flag("listContents") and name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(disk) as archive:
                listed = [
                    {"File Name": i.filename, "Size": i.file_size} for i in archive.infolist()
                ]
        except zipfile.BadZipFile as exc:
            raise HTTPError(415, str(exc)) from exc
        return wire.result_set(listed, ["File Name", "Size"], fmt=req.fmt, total_records=False)
    return FileResponse(
        disk,
        media_type=media_type_for(name),
        filename=name,
        headers={"Cache-Control": "must-revalidate"},
    )


def _read(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=False)
    selector = req.params.get("resource")
    resources = select_resources(req, parent, selector)
    if selector is not None and not resources:
        return _not_found(req, "Unable to find the specified catalog.")
    raw_path = req.params.get("path", "")
    archive = req.fmt in ARCHIVE_FORMATS
    if not raw_path:
        rows = catalog_rows(req.state, [r.id for r in resources])
        matches = [(info, row) for info in resources for row in rows[info.id]]
        if archive:
            return _archive(req, parent, matches, flat=False)
        single = selector is not None and len(resources) == 1
        return _table(req, parent, matches, single=single)
    relpath = clean_relpath(raw_path)
    found = _exact(req, resources, relpath) if relpath else None
    if found is not None:
        return _one_file(req, parent, found)
    member = _zip_member(req, resources, relpath)
    if member is not None:
        return member
    if req.raw_path.endswith("/") or "*" in relpath:
        matches = _path_matches(req, resources, relpath)
        if archive:
            return _archive(req, parent, matches, flat=True)
        if matches or req.raw_path.endswith("/"):
            single = selector is not None and len(resources) == 1
            return _table(req, parent, matches, single=single)
    return _not_found(req, "Unable to find file.")


def _no_data(req: EmuRequest) -> HTTPError:
    size = req.body_path.stat().st_size if req.body_path is not None else 0
    if size == 0:
        return HTTPError(
            400,
            f"You tried to {req.method} to this service, but didn't provide any data (found "
            "request entity size of 0). Please check the format of your service request.",
        )
    return HTTPError(
        400,
        f"You tried to {req.method} a payload of {size} bytes to this service, but didn't "
        "provide any data. If you think you sent data to upload, you can try to "
        f"{req.method} with the query-string parameter inbody=true or use "
        "multipart/form-data encoding.",
    )


def _upload(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=True)
    require_parent_right(req, "edit", parent)
    relpath = clean_relpath(req.params.get("path", ""))
    content_type = req.content_type
    inbody = req.flag("inbody")
    if inbody and content_type == "multipart/form-data":
        raise HTTPError(
            406,
            "In-body File posts must include the file directly as the body of the message "
            "(not as part of multi-part form data).",
        )
    raw = inbody or content_type in UPLOAD_TYPES
    uploads = [u for u in req.uploads if u.filename]
    if (raw and req.body_path is None) or (not raw and not uploads):
        raise _no_data(req)
    attributes = resource_attributes(req)
    label = req.params["resource"].split(",")[0].strip()
    existing = select_resources(req, parent, label, anywhere=False)
    if existing:
        resource_id = existing[0].id
    else:
        resource_id = create_resource(
            req.state, parent, label, attributes=attributes, login=req.login, exist_ok=True
        )
    store = FileStore(
        req.state,
        resource_id,
        overwrite=req.flag("overwrite"),
        attributes={k: v for k, v in attributes.items() if k != "description"},
    )
    extract = req.flag("extract")
    if raw:
        assert req.body_path is not None
        name = relpath or "upload" + UPLOAD_TYPES.get(content_type, ".unsupported")
        kind = archive_kind(name) if extract else None
        if kind is not None:
            store.extract(req.body_path, kind)
        else:
            store.move(name, req.body_path)
    else:
        for upload in uploads:
            filename = posixpath.basename(str(upload.filename).replace("\\", "/"))
            target = relpath if relpath and len(uploads) == 1 else posixpath.join(relpath, filename)
            target = clean_relpath(target, allow_empty=False)
            kind = archive_kind(filename) if extract else None
            if kind is not None:
                store.extract(upload.file, kind)
            else:
                store.copy(target, upload.file)
    if (req.arg("update-stats") or "").lower() not in ("false", "0"):
        refresh_stats(req.state, resource_id)
    duplicates = store.outcome.duplicates
    if duplicates and not req.flag("overwrite"):
        body = json.dumps({"duplicates": duplicates})
        return Response(body, status_code=200, media_type="text/html")
    return wire.text_response("")


def _delete(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=True)
    require_parent_right(req, "delete", parent)
    resources = select_resources(req, parent, req.params["resource"], anywhere=False)
    relpath = clean_relpath(req.params.get("path", ""), allow_empty=False)
    rows = catalog_rows(req.state, [r.id for r in resources])
    doomed: dict[int, list[str]] = {}
    for info in resources:
        paths = [str(r["path"]) for r in rows[info.id]]
        if relpath in paths:
            hits = [relpath]
        elif "*" in relpath:
            hits = [p for p in paths if fnmatch.fnmatchcase(p, relpath)]
        else:
            hits = [p for p in paths if p.startswith(f"{relpath}/")]
        if hits:
            doomed[info.id] = hits
    if not doomed:
        raise HTTPError(404, "No matched files")
    keep_bytes = (req.arg("removeFiles") or "").lower() in ("false", "0")
    store = req.state.store
    for resource_id, paths in doomed.items():
        with store.tx():
            for path in paths:
                store.execute(
                    "DELETE FROM files WHERE resource_id=? AND path=?", (resource_id, path)
                )
        if not keep_bytes:
            remove_files(req.state, resource_id, paths)
        refresh_stats(req.state, resource_id)
    return wire.text_response("")


def files_endpoint(req: EmuRequest) -> Response:
    """Every files URL: GET/HEAD read, PUT/POST upload, DELETE remove.

    Args:
        req: The request.

    Returns:
        The response.
    """
    if is_read(req):
        return _read(req)
    if req.method == "DELETE":
        return _delete(req)
    return _upload(req)


def _routes() -> list[Route]:
    routes = []
    for parent in PARENT_TEMPLATES:
        base = f"{parent}/resources/{{resource}}/files"
        routes.append(
            Route(("GET", "PUT", "POST", "DELETE"), f"{base}/{{path:path}}", files_endpoint)
        )
        routes.append(Route(("GET", "PUT", "POST"), base, files_endpoint))
        routes.append(Route(("GET",), f"{parent}/files/{{path:path}}", files_endpoint))
        routes.append(Route(("GET",), f"{parent}/files", files_endpoint))
    return routes


ROUTES: list[Route] = _routes()
