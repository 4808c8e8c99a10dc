"""Resource routes: ``<parent>/resources`` listings and ``<parent>/resources/{RES}`` objects.

* ``GET <parent>/resources``: XNAT's fixed resource table (no ``URI`` column; ``columns=`` and
  filter parameters are ignored, as ``CatalogResourceList`` does), title ``Resources``;
  ``all=true`` on experiments adds scan resources; ``cache_file_stats=true`` recomputes the
  cached file counts first.
* ``GET <parent>/resources/{RES}``: the catalog XML (``cat:Catalog``), whatever ``format`` says.
* ``PUT|POST``: create an empty catalog resource (``format``/``content``/``description``/``tags``
  set its attributes; ``format`` is NOT a response format here); 409 when it exists.
* ``DELETE``: remove resources (comma lists) with their files; unknown ones are a silent 200.
"""

from __future__ import annotations

import posixpath
import shutil
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route
from xnat_prefect.testing.routes._cascade import resource_dir
from xnat_prefect.testing.routes._catalogs import (
    catalog_rows,
    create_resource,
    refresh_stats,
    resource_attributes,
)
from xnat_prefect.testing.routes._resources import (
    PARENT_TEMPLATES,
    RESOURCE_COLUMNS,
    ResourceInfo,
    candidates,
    require_parent_right,
    resolve_parent,
    select_resources,
)

CATALOG_NS = (
    'xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def list_resources(req: EmuRequest) -> Response:
    """``GET <parent>/resources``: the resource table of a project/subject/experiment/scan.

    Args:
        req: The request.

    Returns:
        The ResultSet (``totalRecords`` and title ``Resources``; no URI column).
    """
    parent = resolve_parent(req, req.params, write=False)
    infos = candidates(req.state, parent)
    if req.flag("cache_file_stats"):
        for info in infos:
            refresh_stats(req.state, info.id)
        infos = candidates(req.state, parent)
    return wire.result_set(
        [info.listing_row() for info in infos],
        RESOURCE_COLUMNS,
        fmt=req.fmt if req.fmt in ("json", "xml", "csv", "html") else "json",
        title="Resources",
        sort_by=req.query.get("sortBy"),
        sort_desc=(req.query.get("sortOrder") or "").upper() == "DESC",
    )


def catalog_xml(req: EmuRequest, info: ResourceInfo) -> str:
    """Render a resource's catalog document, as XNAT stores it next to the files.

    Args:
        req: The request.
        info: The resource.

    Returns:
        The ``cat:Catalog`` XML text.
    """
    row = info.row
    attrs = f"ID={quoteattr(info.label)}"
    if row["description"]:
        attrs += f" description={quoteattr(str(row['description']))}"
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', f"<cat:Catalog {CATALOG_NS} {attrs}>"]
    tags = [t for t in str(row["tags"] or "").split(",") if t]
    if tags:
        parts.append(
            "<cat:tags>" + "".join(f"<cat:tag>{escape(t)}</cat:tag>" for t in tags) + "</cat:tags>"
        )
    entries = catalog_rows(req.state, [info.id])[info.id]
    parts.append("<cat:entries>")
    for entry in entries:
        path = str(entry["path"])
        extra = "".join(
            f" {name}={quoteattr(str(entry[name]))}"
            for name in ("format", "content")
            if entry[name]
        )
        uid = str(entry["uid"] or "")
        if uid:  # DICOM entries carry the SOP Instance UID (cat:dcmEntry), as in XNAT
            extra += f" UID={quoteattr(uid)}"
        entry_type = "cat:dcmEntry" if uid else "cat:entryType"
        parts.append(
            f"<cat:entry URI={quoteattr(path)} ID={quoteattr(path)} "
            f"name={quoteattr(posixpath.basename(path))} digest={quoteattr(str(entry['digest']))} "
            f'size="{entry["size"]}"{extra} xsi:type="{entry_type}"/>'
        )
    parts.append("</cat:entries></cat:Catalog>")
    return "\n".join(parts)


def _get(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=False)
    found = select_resources(req, parent, req.params["resource"])
    if not found:
        raise HTTPError(404, "Unable to find the specified catalog.")
    return Response(catalog_xml(req, found[0]), media_type="text/xml")


def _create(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=True)
    require_parent_right(req, "edit", parent)
    label = req.params["resource"]
    create_resource(
        req.state,
        parent,
        label,
        attributes=resource_attributes(req),
        login=req.login,
        exist_ok=False,
    )
    return wire.text_response("")


def _delete(req: EmuRequest) -> Response:
    parent = resolve_parent(req, req.params, write=True)
    require_parent_right(req, "delete", parent)
    state = req.state
    store = state.store
    for info in select_resources(req, parent, req.params["resource"], anywhere=False):
        with store.tx():
            store.execute("DELETE FROM files WHERE resource_id=?", (info.id,))
            store.execute("DELETE FROM resources WHERE xnat_abstractresource_id=?", (info.id,))
            store.record_history(
                req.login, "deleted", "xnat:resourceCatalog", str(info.id), parent.project_id
            )
        shutil.rmtree(resource_dir(state, info.id), ignore_errors=True)
    return wire.text_response("")


def resource_endpoint(req: EmuRequest) -> Response:
    """``<parent>/resources/{RES}``: GET catalog XML, PUT/POST create, DELETE remove.

    Args:
        req: The request.

    Returns:
        The response.
    """
    if req.method in ("GET", "HEAD"):
        return _get(req)
    if req.method == "DELETE":
        return _delete(req)
    return _create(req)


def _routes() -> list[Route]:
    routes = []
    for parent in PARENT_TEMPLATES:
        routes.append(Route(("GET",), f"{parent}/resources", list_resources))
        routes.append(
            Route(
                ("GET", "PUT", "POST", "DELETE"),
                f"{parent}/resources/{{resource}}",
                resource_endpoint,
            )
        )
    return routes


ROUTES: list[Route] = _routes()
