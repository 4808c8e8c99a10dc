"""Scan routes: listing, item documents, create/update, delete.

Scan routes exist only under ``/data/experiments/{ID}/scans`` and
``/data/projects/{P}/subjects/{S}/experiments/{E}/scans``; the experiment resource answers
``/data/projects/{P}/experiments/{E}/scans`` (prefix routing, see ``experiments``).

* ``GET .../scans``: ``xnat_imagescandata_id, ID, type, quality, xsiType, note,
  series_description, URI`` (``URI`` = ``/data/experiments/{session}/scans/{scan}``); ``xsiType=``.
* ``PUT .../scans/{SCAN}``: a new scan needs a concrete ``xsiType`` (400 for shortcut-only
  params, 417 "Need PUT Contents" for none); an existing one takes shortcuts and its own types'
  xpaths (foreign-type xpaths are ignored), 409 when ``xsiType`` differs; always 200, empty body.
* ``DELETE .../scans/{SCAN}[?removeFiles=true]``: owners only.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route
from xnat_prefect.testing.routes._cascade import delete_scan
from xnat_prefect.testing.routes._items import (
    Node,
    field_changes,
    item_response,
    load_fields,
    merged_fields,
    resource_nodes,
    split_params,
    write_params,
)
from xnat_prefect.testing.routes._listing import listing
from xnat_prefect.testing.routes._lookup import (
    experiment_or_404,
    require_right,
    scan_or_404,
)
from xnat_prefect.testing.store import Row, now_text

BASE_SCAN_TYPE = "xnat:imageScanData"
#: Concrete scan types → modality used when none is given.
SCAN_TYPES: dict[str, str] = {
    "xnat:mrScanData": "MR",
    "xnat:mrsScanData": "MR",
    "xnat:ctScanData": "CT",
    "xnat:petScanData": "PT",
    "xnat:crScanData": "CR",
    "xnat:dxScanData": "DX",
    "xnat:mgScanData": "MG",
    "xnat:usScanData": "US",
    "xnat:xaScanData": "XA",
    "xnat:rfScanData": "RF",
    "xnat:nmScanData": "NM",
    "xnat:scScanData": "SC",
    "xnat:srScanData": "SR",
    "xnat:segScanData": "SEG",
    "xnat:ecgScanData": "ECG",
    "xnat:optScanData": "OPT",
    "xnat:esScanData": "ES",
    "xnat:xcScanData": "XC",
    "xnat:smScanData": "SM",
    "xnat:rtImageScanData": "RTIMAGE",
    "xnat:otherDicomScanData": "OT",
}
#: Shortcut / xpath-tail name → column (the others go to the ``fields`` JSON).
COLUMNS = {
    "type": "type",
    "quality": "quality",
    "note": "note",
    "series_description": "series_description",
    "UID": "uid",
    "frames": "frames",
    "modality": "modality",
}
# fmt: off
EXTRA_FIELDS = (
    "condition", "documentation", "scanner", "coil", "fieldStrength",
    "scanTime", "startTime", "validation_status", "operator",
)
# fmt: on
DEFAULT_COLUMNS = (
    "xnat_imagescandata_id",
    "ID",
    "type",
    "quality",
    "xsiType",
    "note",
    "series_description",
)
ALL_COLUMNS: tuple[str, ...] = (*DEFAULT_COLUMNS, "frames", "UID", "modality", "insert_date")
ALL_COLUMNS += ("last_modified", *EXTRA_FIELDS)


def scan_node(req: EmuRequest, scan: Row) -> Node:
    """A scan as an item-document node (also the ``scans/scan`` children of a session).

    Args:
        req: The request.
        scan: The scan row.

    Returns:
        The node, with its resources as ``file`` children.
    """
    fields = load_fields(scan["fields"])
    data: dict[str, Any] = {
        "ID": scan["id"],
        "type": scan["type"],
        "quality": scan["quality"],
        "note": scan["note"],
        "series_description": scan["series_description"],
        "UID": scan["uid"],
        "frames": scan["frames"],
        "modality": scan["modality"],
        "xnat_imagescandata_id": str(scan["xnat_imagescandata_id"]),
        "image_session_ID": scan["experiment_id"],
    }
    data.update({k: fields[k] for k in EXTRA_FIELDS if fields.get(k)})
    kids = [("file", resource_nodes(req, "scan", str(scan["xnat_imagescandata_id"])))]
    return Node(str(scan["xsi_type"]), data, kids)


def _session(req: EmuRequest) -> Row:
    return experiment_or_404(
        req, req.params["experiment"], req.params.get("project"), req.params.get("subject")
    )


def _list_scans(req: EmuRequest) -> Response:
    session = _session(req)
    rows = []
    for scan in req.state.store.query(
        "SELECT * FROM scans WHERE experiment_id=? ORDER BY xnat_imagescandata_id",
        (session["id"],),
    ):
        fields = load_fields(scan["fields"])
        row: dict[str, Any] = {name: scan[column] for name, column in COLUMNS.items()}
        row.update({name: fields.get(name, "") for name in EXTRA_FIELDS})
        row.update(
            {
                "xnat_imagescandata_id": scan["xnat_imagescandata_id"],
                "ID": scan["id"],
                "xsiType": scan["xsi_type"],
                "insert_date": scan["insert_date"],
                "last_modified": scan["last_modified"],
                "URI": f"/data/experiments/{session['id']}/scans/{scan['id']}",
            }
        )
        rows.append(row)
    wanted = req.query.get("xsiType")
    if wanted and wanted != BASE_SCAN_TYPE:
        rows = [r for r in rows if r["xsiType"] == wanted]
    return listing(req, rows, default=DEFAULT_COLUMNS, available=ALL_COLUMNS)


def _get_scan(req: EmuRequest) -> Response:
    session = _session(req)
    node = scan_node(req, scan_or_404(req, session["id"], req.params["scan"]))
    return item_response(req, node.xsi_type, node.data_fields, node.kids)


def _put_scan(req: EmuRequest) -> Response:
    store = req.state.store
    session = _session(req)
    require_right(req, "edit", session["project"], "scans")
    scan_id = req.params["scan"]
    xsi, params = write_params(req)
    if xsi and xsi not in SCAN_TYPES and xsi != BASE_SCAN_TYPE:
        raise HTTPError(400, f"Invalid xsiType {xsi}: use a scan type such as xnat:mrScanData.")
    existing = store.one(
        "SELECT * FROM scans WHERE experiment_id=? AND id=?", (session["id"], scan_id)
    )
    if existing is not None:
        scan_type = str(existing["xsi_type"])
        if xsi and xsi != BASE_SCAN_TYPE and xsi != scan_type:
            raise HTTPError(409, "Specified xsiType differs from existing xsiType")
        split = split_params(params, (scan_type, BASE_SCAN_TYPE), (scan_type,))
        columns, extras = field_changes(split, COLUMNS, EXTRA_FIELDS)
        if columns or extras or split.custom:
            sets = "".join(f"{column}=?, " for column in columns)
            with store.tx():
                store.execute(
                    f"UPDATE scans SET {sets}fields=?, last_modified=? "
                    "WHERE xnat_imagescandata_id=?",
                    (
                        *columns.values(),
                        merged_fields(existing["fields"], extras, split.custom),
                        now_text(),
                        existing["xnat_imagescandata_id"],
                    ),
                )
                store.record_history(
                    req.login,
                    "modified",
                    scan_type,
                    session["id"],
                    session["project"],
                    f"scan {scan_id}: {','.join(sorted([*columns, *extras, *split.custom]))}",
                )
        return wire.text_response("")
    if not xsi and not params:
        raise HTTPError(417, "Need PUT Contents")
    if not xsi or xsi == BASE_SCAN_TYPE:
        raise HTTPError(
            400,
            f"Cannot create scan {scan_id} as the abstract type {BASE_SCAN_TYPE}: pass a "
            "modality-specific xsiType such as xnat:mrScanData or xnat:ctScanData.",
        )
    split = split_params(params, (xsi, BASE_SCAN_TYPE), (xsi,))
    columns, extras = field_changes(split, COLUMNS, EXTRA_FIELDS)
    columns.setdefault("modality", SCAN_TYPES[xsi])
    now = now_text()
    names = ["experiment_id", "id", "xsi_type", *columns, "fields", "insert_date", "last_modified"]
    values = [
        session["id"],
        scan_id,
        xsi,
        *columns.values(),
        merged_fields("{}", extras, split.custom),
        now,
        now,
    ]
    with store.tx():
        store.execute(
            f"INSERT INTO scans({', '.join(names)}) VALUES({', '.join('?' * len(names))})", values
        )
        store.record_history(
            req.login, "created", xsi, session["id"], session["project"], f"scan {scan_id}"
        )
    return wire.text_response("")


def _delete_scan(req: EmuRequest) -> Response:
    session = _session(req)
    scan = scan_or_404(req, session["id"], req.params["scan"])
    require_right(req, "delete", session["project"], "scans")
    with req.state.store.tx():
        delete_scan(
            req.state, int(scan["xnat_imagescandata_id"]), remove_files=req.flag("removeFiles")
        )
        req.state.store.record_history(
            req.login,
            "deleted",
            scan["xsi_type"],
            session["id"],
            session["project"],
            f"scan {scan['id']}",
        )
    return wire.text_response("")


_BASES = (
    "/data/experiments/{experiment}/scans",
    "/data/projects/{project}/subjects/{subject}/experiments/{experiment}/scans",
)

ROUTES: list[Route] = [
    *(Route(("GET",), base, _list_scans) for base in _BASES),
    *(Route(("GET",), f"{base}/{{scan}}", _get_scan) for base in _BASES),
    *(Route(("PUT",), f"{base}/{{scan}}", _put_scan) for base in _BASES),
    *(Route(("DELETE",), f"{base}/{{scan}}", _delete_scan) for base in _BASES),
]
