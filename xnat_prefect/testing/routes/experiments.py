"""Experiment routes: listings, item documents, create/update/rename/reassign, delete, sharing.

Item URLs: ``/data/experiments/{ID}`` (accession ID only), ``/data/projects/{P}/experiments/{E}``
and ``/data/projects/{P}/subjects/{S}/experiments/{E}`` (label in P, then ID); sub-paths
``/status``, ``/history``, ``/projects`` and ``/projects/{Q}`` (share/move/unshare).

Writes, as XNAT 1.9 does them:

* subject-scoped PUT: create (``xsiType`` required; subject auto-created; 201 + ID), update
  (200 + ID) with shortcuts and xpaths, ``?label=`` rename, ``?subject_ID=`` or a different
  subject in the URL reassigns; custom variables only as ``{xsiType}/fields/field[name=X]/field``
  together with ``xsiType``.
* project-scoped PUT (no subject): existing experiments only; xpaths and ``?label=`` only.
* flat ``PUT /data/experiments/{ID}``: 200 and nothing saved (quirk 7), except that xpaths
  prefixed with the experiment's own type are applied when ``xsiType`` names that type.
* ``GET /data/projects/{P}/experiments/{E}/scans...`` answers the experiment document
  (prefix routing).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route, route
from xnat_prefect.testing.routes._items import (
    Node,
    ParamSplit,
    custom_nodes,
    custom_vars,
    field_changes,
    history_table,
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
    find_item,
    project_or_404,
    readable_project,
    require_right,
    subject_or_404,
)
from xnat_prefect.testing.routes._sharing import (
    check_label,
    ensure_subject_in,
    label_in_project,
    label_taken,
    owned_and_shared,
    projects_table,
    readable_items,
    remove_from_project,
    rename_in_project,
    share_item,
    share_nodes,
)
from xnat_prefect.testing.routes.scans import scan_node
from xnat_prefect.testing.routes.subjects import create_subject
from xnat_prefect.testing.store import Row, now_text

#: Valid experiment types → modality used when none is given.
EXPERIMENT_TYPES: dict[str, str] = {
    "xnat:mrSessionData": "MR",
    "xnat:ctSessionData": "CT",
    "xnat:petSessionData": "PT",
    "xnat:petmrSessionData": "PETMR",
    "xnat:crSessionData": "CR",
    "xnat:otherDicomSessionData": "OT",
    "xnat:qcManualAssessorData": "",
}
ABSTRACT_TYPES = ("xnat:experimentData", "xnat:subjectAssessorData", "xnat:imageSessionData")
#: Shortcut / xpath-tail name → column (other known names go to the ``fields`` JSON).
COLUMNS = {
    "date": "date",
    "time": "time",
    "note": "note",
    "visit_id": "visit_id",
    "modality": "modality",
    "UID": "uid",
    "scanner": "scanner",
    "session_type": "session_type",
}
# fmt: off
EXTRA_FIELDS = (
    "visit", "protocol", "operator", "acquisition_site", "dcmAccessionNumber",
    "dcmPatientId", "dcmPatientName", "dcmPatientBirthDate", "coil", "fieldStrength",
    "tracer",
)
# fmt: on
DEFAULT_COLUMNS = ("ID", "project", "date", "xsiType", "label", "insert_date")
ALL_COLUMNS = (*DEFAULT_COLUMNS, "subject_ID", "subject_label", *COLUMNS)
ALL_COLUMNS += ("last_modified", "insert_user", *EXTRA_FIELDS)


def _own_types(xsi_type: str) -> tuple[str, ...]:
    session = ("xnat:imageSessionData",) if "SessionData" in xsi_type else ()
    return (xsi_type, "xnat:experimentData", "xnat:subjectAssessorData", *session)


def _table_row(exp: Row, label: str, project: str, subject_label: str) -> dict[str, Any]:
    fields = load_fields(exp["fields"])
    row: dict[str, Any] = {name: exp[column] for name, column in COLUMNS.items()}
    row.update({name: fields.get(name, "") for name in EXTRA_FIELDS})
    row.update(
        {
            "ID": exp["id"],
            "project": project,
            "label": label,
            "xsiType": exp["xsi_type"],
            "insert_date": exp["insert_date"],
            "insert_user": exp["insert_user"],
            "last_modified": exp["last_modified"],
            "subject_ID": exp["subject_id"],
            "subject_label": subject_label,
            "URI": f"/data/experiments/{exp['id']}",
        }
    )
    for root in _own_types(exp["xsi_type"]):
        row.update({f"{root}/{name}": row[name] for name in (*COLUMNS, "label", "ID", "project")})
    for name, value in custom_vars(fields).items():
        row[f"{exp['xsi_type']}/fields/field[name={name}]/field"] = value
    return row


def _type_filter(req: EmuRequest, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted = req.query.get("xsiType")
    if not wanted or wanted in ABSTRACT_TYPES[:2]:
        return rows
    if wanted == "xnat:imageSessionData":
        return [r for r in rows if "SessionData" in r["xsiType"]]
    return [r for r in rows if r["xsiType"] == wanted]


def _project_rows(req: EmuRequest, project_id: str, subject_id: str | None) -> list[dict[str, Any]]:
    store = req.state.store
    subject_labels: dict[str, str] = {}
    rows = []
    for exp in owned_and_shared(req, "experiment", project_id):
        if subject_id is not None and exp["subject_id"] != subject_id:
            continue
        if exp["subject_id"] not in subject_labels:
            subject = store.one("SELECT * FROM subjects WHERE id=?", (exp["subject_id"],))
            subject_labels[exp["subject_id"]] = (
                "" if subject is None else label_in_project(req, "subject", subject, project_id)
            )
        rows.append(_table_row(exp, exp["shown"], project_id, subject_labels[exp["subject_id"]]))
    return _type_filter(req, rows)


@route("GET", "/data/projects/{project}/experiments")
def list_project_experiments(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/experiments``: owned and shared-in experiments of P."""
    rows = _project_rows(req, readable_project(req, req.params["project"], "experiments"), None)
    return listing(req, rows, default=DEFAULT_COLUMNS, available=ALL_COLUMNS, paging=True)


@route("GET", "/data/projects/{project}/subjects/{subject}/experiments")
def list_subject_experiments(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/subjects/{S}/experiments``: one subject's experiments in P."""
    project_id = readable_project(req, req.params["project"], "experiments")
    subject = subject_or_404(req, req.params["subject"], project_id)
    rows = _project_rows(req, project_id, subject["id"])
    return listing(req, rows, default=DEFAULT_COLUMNS, available=ALL_COLUMNS, paging=True)


@route("GET", "/data/experiments")
def list_all_experiments(req: EmuRequest) -> Response:
    """``GET /data/experiments``: every readable experiment ("Matching experiments")."""
    found = req.state.store.query("SELECT id, label FROM subjects")
    subjects = {r["id"]: r["label"] for r in found}
    rows = _type_filter(
        req,
        [
            _table_row(e, e["label"], e["project"], subjects.get(e["subject_id"], ""))
            for e in readable_items(req, "experiment")
        ],
    )
    default: tuple[str, ...] = DEFAULT_COLUMNS
    if req.query.get("xsiType"):
        default = (*DEFAULT_COLUMNS, "subject_ID", "subject_label")
    return listing(
        req,
        rows,
        default=default,
        available=ALL_COLUMNS,
        paging=True,
        title="Matching experiments",
    )


def _locate(req: EmuRequest) -> tuple[Row, str]:
    project = req.params.get("project")
    exp = experiment_or_404(req, req.params["experiment"], project, req.params.get("subject"))
    context = str(project_or_404(req, project)["id"]) if project else str(exp["project"])
    return exp, context


def _document(req: EmuRequest, exp: Row) -> Response:
    store = req.state.store
    fields = load_fields(exp["fields"])
    data: dict[str, Any] = {name: exp[column] for name, column in COLUMNS.items()}
    data.update({k: fields[k] for k in EXTRA_FIELDS if fields.get(k)})
    data.update(
        {
            "ID": exp["id"],
            "project": exp["project"],
            "label": exp["label"],
            "subject_ID": exp["subject_id"],
            "insert_date": exp["insert_date"],
            "insert_user": exp["insert_user"],
        }
    )
    scans = store.query(
        "SELECT * FROM scans WHERE experiment_id=? ORDER BY xnat_imagescandata_id", (exp["id"],)
    )
    kids: list[tuple[str, list[Node]]] = [
        ("sharing/share", share_nodes(req, "experiment", exp["id"])),
        ("fields/field", custom_nodes("xnat:experimentData", custom_vars(fields))),
        ("scans/scan", [scan_node(req, s) for s in scans]),
        ("resources/resource", resource_nodes(req, "experiment", exp["id"])),
    ]
    return item_response(req, exp["xsi_type"], data, kids)


def _get_experiment(req: EmuRequest) -> Response:
    return _document(req, _locate(req)[0])


def _split(xsi: str | None, exp_type: str, params: dict[str, str]) -> ParamSplit:
    custom_types = (exp_type,) if xsi == exp_type else ()
    return split_params(params, _own_types(exp_type), custom_types)


def _save(req: EmuRequest, exp: Row, split: ParamSplit, *, shortcuts: bool) -> None:
    store = req.state.store
    if split.tails.get("ID", exp["id"]) != exp["id"]:
        raise HTTPError(400, "ID cannot be modified")
    if split.tails.get("project", exp["project"]) != exp["project"]:
        raise HTTPError(409, "Project must be modified through separate URI.")
    if split.tails.get("label", exp["label"]) != exp["label"]:
        raise HTTPError(400, "Label must be modified through separate URI.")
    columns, extras = field_changes(split, COLUMNS, EXTRA_FIELDS, shortcuts=shortcuts)
    custom = split.custom
    if not (columns or extras or custom):
        return
    require_right(req, "edit", exp["project"], "experiments")
    sets = "".join(f"{column}=?, " for column in columns)
    with store.tx():
        store.execute(
            f"UPDATE experiments SET {sets}fields=?, last_modified=? WHERE id=?",
            (
                *columns.values(),
                merged_fields(exp["fields"], extras, custom),
                now_text(),
                exp["id"],
            ),
        )
        store.record_history(
            req.login,
            "modified",
            exp["xsi_type"],
            exp["id"],
            exp["project"],
            ",".join(sorted([*columns, *extras, *custom])),
        )


def _subject_in(req: EmuRequest, project_id: str, ref: str) -> str:
    subject = find_item(req, "subject", ref, project_id)
    return str(subject["id"]) if subject is not None else create_subject(req, project_id, ref)


def _reassign(req: EmuRequest, exp: Row, subject_id: str) -> Row:
    if subject_id == exp["subject_id"]:
        return exp
    store = req.state.store
    with store.tx():
        store.execute(
            "UPDATE experiments SET subject_id=?, last_modified=? WHERE id=?",
            (subject_id, now_text(), exp["id"]),
        )
        detail = f"subject_ID={subject_id}"
        store.record_history(
            req.login, "modified", exp["xsi_type"], exp["id"], exp["project"], detail
        )
    return store.one("SELECT * FROM experiments WHERE id=?", (exp["id"],)) or exp


def _create(req: EmuRequest, project_id: str, subject_ref: str, label: str) -> str:
    state = req.state
    xsi, params = write_params(req)
    if not xsi:
        raise HTTPError(400, "New experiments need an xsiType (e.g. xsiType=xnat:mrSessionData).")
    check_label(label, "experiment")
    if label_taken(req, "experiment", project_id, label, ""):
        raise HTTPError(409, "Specified label is already in use.")
    split = _split(xsi, xsi, params)
    columns, extras = field_changes(split, COLUMNS, EXTRA_FIELDS)
    columns.setdefault("modality", EXPERIMENT_TYPES[xsi])
    with state.store.tx():
        subject_id = _subject_in(req, project_id, subject_ref)
        exp_id = state.accession_id("E")
        now = now_text()
        names = ["id", "project", "subject_id", "label", "xsi_type", *columns]
        names += ["fields", "insert_date", "insert_user", "last_modified"]
        values = [exp_id, project_id, subject_id, label, xsi, *columns.values()]
        values += [merged_fields("{}", extras, split.custom), now, req.login, now]
        state.store.execute(
            f"INSERT INTO experiments({', '.join(names)}) VALUES({', '.join('?' * len(names))})",
            values,
        )
        state.store.record_history(req.login, "created", xsi, exp_id, project_id)
    return exp_id


def _put_experiment(req: EmuRequest) -> Response:
    xsi, params = write_params(req)
    if xsi and xsi not in EXPERIMENT_TYPES:
        raise HTTPError(400, f"Invalid xsiType {xsi}: use one of {', '.join(EXPERIMENT_TYPES)}.")
    ref = req.params["experiment"]
    if "project" not in req.params:  # flat URL: quirk 7
        flat = experiment_or_404(req, ref)
        require_right(req, "edit", flat["project"], "experiments")
        if xsi == flat["xsi_type"]:
            own = split_params(params, (flat["xsi_type"],), (flat["xsi_type"],))
            _save(req, flat, own, shortcuts=False)
        return wire.text_response(str(flat["id"]))
    context = str(project_or_404(req, req.params["project"])["id"])
    require_right(req, "edit", context, "experiments")
    found = find_item(req, "experiment", ref, context)
    subject_ref = req.params.get("subject")
    if found is None:
        if subject_ref is None:
            raise HTTPError(
                404,
                "Unable to find the specified experiment. Create experiments with PUT "
                "/data/projects/{P}/subjects/{S}/experiments/{label}?xsiType=...",
            )
        split = split_params(params, _own_types(xsi or ""), ())
        label = split.shortcuts.get("label") or split.tails.get("label") or ref
        return wire.text_response(_create(req, context, subject_ref, label), status_code=201)
    exp = found
    new_label = req.arg("label")
    if new_label and new_label != label_in_project(req, "experiment", exp, context):
        rename_in_project(req, "experiment", exp, context, new_label)
        return wire.text_response("")
    if xsi and xsi != exp["xsi_type"]:
        raise HTTPError(409, "Specified xsiType differs from existing xsiType")
    target_subject = req.arg("subject_ID") or subject_ref
    if target_subject is not None and exp["project"] == context:
        exp = _reassign(req, exp, _subject_in(req, context, target_subject))
    _save(req, exp, _split(xsi, exp["xsi_type"], params), shortcuts=subject_ref is not None)
    return wire.text_response(str(exp["id"]))


@route("POST", "/data/projects/{project}/subjects/{subject}/experiments")
def post_experiment(req: EmuRequest) -> Response:
    """``POST .../subjects/{S}/experiments?xsiType=..&label=..``: 200 + URL; 409 when it exists."""
    project_id = str(project_or_404(req, req.params["project"])["id"])
    require_right(req, "edit", project_id, "experiments")
    xsi, params = write_params(req)
    if xsi and xsi not in EXPERIMENT_TYPES:
        raise HTTPError(400, f"Invalid xsiType {xsi}: use one of {', '.join(EXPERIMENT_TYPES)}.")
    split = split_params(params, _own_types(xsi or ""), ())
    label = split.shortcuts.get("label") or split.tails.get("label")
    if not label:
        raise HTTPError(400, "A label is required to create an experiment.")
    if find_item(req, "experiment", label, project_id) is not None:
        raise HTTPError(409, "Specified experiment already exists.")
    exp_id = _create(req, project_id, req.params["subject"], label)
    url = f"{req.state.url}/data/projects/{project_id}/subjects/{req.params['subject']}"
    url += f"/experiments/{exp_id}"
    return Response(url, status_code=200, media_type="text/plain", headers={"Location": url})


def _delete_experiment(req: EmuRequest) -> Response:
    exp, context = _locate(req)
    remove_from_project(req, "experiment", exp, context)
    return wire.text_response("")


def _status(req: EmuRequest) -> Response:
    _locate(req)
    return wire.text_response("active")


def _history(req: EmuRequest) -> Response:
    return history_table(req, _locate(req)[0]["id"])


def _projects(req: EmuRequest) -> Response:
    return projects_table(req, "experiment", _locate(req)[0])


def _put_share(req: EmuRequest) -> Response:
    exp, _context = _locate(req)
    target = str(project_or_404(req, req.params["target"])["id"])
    with req.state.store.tx():
        share_item(req, "experiment", exp, target)
        ensure_subject_in(req, exp["subject_id"], target)
    fresh = req.state.store.one("SELECT * FROM experiments WHERE id=?", (exp["id"],))
    assert fresh is not None
    return _document(req, fresh)


def _delete_share(req: EmuRequest) -> Response:
    exp, _context = _locate(req)
    target = str(project_or_404(req, req.params["target"])["id"])
    remove_from_project(req, "experiment", exp, target)
    return wire.text_response("")


_BASES = (
    "/data/experiments/{experiment}",
    "/data/projects/{project}/experiments/{experiment}",
    "/data/projects/{project}/subjects/{subject}/experiments/{experiment}",
)
_PREFIX_ROUTED = "/data/projects/{project}/experiments/{experiment}/scans"

ROUTES: list[Route] = [
    list_project_experiments,
    list_subject_experiments,
    list_all_experiments,
    post_experiment,
    *(Route(("GET",), base, _get_experiment) for base in _BASES),
    *(Route(("PUT",), base, _put_experiment) for base in _BASES),
    *(Route(("DELETE",), base, _delete_experiment) for base in _BASES),
    *(Route(("GET",), f"{base}/status", _status) for base in _BASES),
    *(Route(("GET",), f"{base}/history", _history) for base in _BASES),
    *(Route(("GET",), f"{base}/projects", _projects) for base in _BASES),
    *(Route(("PUT",), f"{base}/projects/{{target}}", _put_share) for base in _BASES),
    *(Route(("DELETE",), f"{base}/projects/{{target}}", _delete_share) for base in _BASES),
    Route(("GET",), _PREFIX_ROUTED, _get_experiment),
    Route(("GET",), _PREFIX_ROUTED + "/{rest:path}", _get_experiment),
]
