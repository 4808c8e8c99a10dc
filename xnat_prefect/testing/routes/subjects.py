"""Subject routes: listings, item documents, create/update/rename, delete, sharing.

* ``GET /data/projects/{P}/subjects`` (owned and shared-in subjects, shared ones with their label
  in P) and ``GET /data/subjects`` (site-wide, readable only); ``columns=``, shortcut filters,
  ``limit``/``offset`` (which drop ``totalRecords``).
* ``GET|PUT|DELETE /data/projects/{P}/subjects/{S}`` (label in P, then accession ID) and
  ``/data/subjects/{ID}`` (accession ID only); ``/status``, ``/projects``.
* ``PUT|DELETE .../projects/{Q}[?label=L][&primary=true]``: share, move, unshare.

Demographics and the other extra shortcuts live in the ``fields`` JSON (see ``_items``).
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
    item_response,
    load_fields,
    merged_fields,
    resource_nodes,
    split_params,
    write_params,
)
from xnat_prefect.testing.routes._listing import listing
from xnat_prefect.testing.routes._lookup import (
    find_item,
    project_or_404,
    readable_project,
    require_right,
    subject_or_404,
)
from xnat_prefect.testing.routes._sharing import (
    check_label,
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
from xnat_prefect.testing.store import Row, now_text

SUBJECT_TYPE = "xnat:subjectData"
DEFAULT_COLUMNS = ("ID", "project", "label", "insert_date", "insert_user")
# fmt: off
DEMOGRAPHICS = (
    "gender", "yob", "dob", "age", "handedness",
    "ses", "education", "educationDesc", "race", "ethnicity",
    "weight", "height", "gestational_age", "post_menstrual_age", "birth_weight",
)
# fmt: on
EXTRA_FIELDS = ("group", "src", "initials", "pi_firstname", "pi_lastname")
ALL_COLUMNS = (*DEFAULT_COLUMNS, *EXTRA_FIELDS, *DEMOGRAPHICS, "last_modified")
DEMOGRAPHICS_XPATH = "xnat:subjectData/demographics[@xsi:type=xnat:demographicData]/"
#: Xpath tails (after ``xnat:subjectData/``) → stored field name.
TAILS: dict[str, str] = {
    "group": "group",
    "src": "src",
    "initials": "initials",
    "investigator/firstname": "pi_firstname",
    "investigator/lastname": "pi_lastname",
    **{f"demographics/{name}": name for name in DEMOGRAPHICS},
}


def _table_row(subject: Row, label: str) -> dict[str, Any]:
    fields = load_fields(subject["fields"])
    row: dict[str, Any] = {
        "ID": subject["id"],
        "project": subject["project"],
        "label": label,
        "insert_date": subject["insert_date"],
        "insert_user": subject["insert_user"],
        "last_modified": subject["last_modified"],
        "URI": f"/data/subjects/{subject['id']}",
    }
    for name in (*EXTRA_FIELDS, *DEMOGRAPHICS):
        row[name] = fields.get(name, "")
    for name in ("ID", "project", "label", "insert_date", "insert_user", "group", "src"):
        row[f"{SUBJECT_TYPE}/{name}"] = row[name]
    for name in DEMOGRAPHICS:
        row[DEMOGRAPHICS_XPATH + name] = row[name]
    for name, value in custom_vars(fields).items():
        row[f"{SUBJECT_TYPE}/fields/field[name={name}]/field"] = value
    return row


@route("GET", "/data/projects/{project}/subjects")
def list_project_subjects(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/subjects``: owned and shared-in subjects of P."""
    project_id = readable_project(req, req.params["project"], "subjects")
    table = [_table_row(r, r["shown"]) for r in owned_and_shared(req, "subject", project_id)]
    return listing(req, table, default=DEFAULT_COLUMNS, available=ALL_COLUMNS, paging=True)


@route("GET", "/data/subjects")
def list_all_subjects(req: EmuRequest) -> Response:
    """``GET /data/subjects``: every subject the caller may read (primary project and label)."""
    table = [_table_row(r, r["label"]) for r in readable_items(req, "subject")]
    return listing(req, table, default=DEFAULT_COLUMNS, available=ALL_COLUMNS, paging=True)


def _document(req: EmuRequest, subject: Row) -> Response:
    store = req.state.store
    fields = load_fields(subject["fields"])
    data = {
        "ID": subject["id"],
        "project": subject["project"],
        "label": subject["label"],
        "group": fields.get("group"),
        "src": fields.get("src"),
        "initials": fields.get("initials"),
        "insert_date": subject["insert_date"],
        "insert_user": subject["insert_user"],
    }
    demographics = {name: fields.get(name) for name in DEMOGRAPHICS if fields.get(name)}
    pi = {"firstname": fields.get("pi_firstname"), "lastname": fields.get("pi_lastname")}
    experiments = store.query(
        "SELECT * FROM experiments WHERE subject_id=? ORDER BY id", (subject["id"],)
    )
    kids: list[tuple[str, list[Node]]] = [
        ("demographics", [Node("xnat:demographicData", demographics)] if demographics else []),
        ("investigator", [Node("xnat:investigatorData", pi)] if any(pi.values()) else []),
        ("fields/field", custom_nodes(SUBJECT_TYPE, custom_vars(fields))),
        ("sharing/share", share_nodes(req, "subject", subject["id"])),
        ("resources/resource", resource_nodes(req, "subject", subject["id"])),
        (
            "experiments/experiment",
            [
                Node(
                    e["xsi_type"],
                    {
                        "ID": e["id"],
                        "project": e["project"],
                        "label": e["label"],
                        "date": e["date"],
                        "modality": e["modality"],
                    },
                )
                for e in experiments
            ],
        ),
    ]
    return item_response(req, SUBJECT_TYPE, data, kids)


def _subject(req: EmuRequest) -> Row:
    return subject_or_404(req, req.params["subject"], req.params.get("project"))


@route("GET", "/data/projects/{project}/subjects/{subject}")
def get_project_subject(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/subjects/{S}``: item document (HTML without ``format``)."""
    return _document(req, _subject(req))


@route("GET", "/data/subjects/{subject}")
def get_subject(req: EmuRequest) -> Response:
    """``GET /data/subjects/{ID}``: item document by accession ID."""
    return _document(req, _subject(req))


def _subject_status(req: EmuRequest) -> Response:
    _subject(req)
    return wire.text_response("active")


def _subject_projects(req: EmuRequest) -> Response:
    return projects_table(req, "subject", _subject(req))


def _values(split: ParamSplit) -> tuple[dict[str, str], dict[str, str]]:
    values = {k: v for k, v in split.shortcuts.items() if k in TAILS.values()}
    for tail, value in split.tails.items():
        if tail in TAILS:
            values[TAILS[tail]] = value
    return values, split.custom


def _insert(req: EmuRequest, project_id: str, label: str | None, split: ParamSplit) -> str:
    state = req.state
    if label is not None:
        check_label(label, "subject")
        if label_taken(req, "subject", project_id, label, ""):
            raise HTTPError(409, "Specified label is already in use.")
    values, custom = _values(split)
    with state.store.tx():
        subject_id = state.accession_id("S")
        now = now_text()
        state.store.execute(
            "INSERT INTO subjects(id, project, label, fields, insert_date, insert_user, "
            "last_modified) VALUES(?,?,?,?,?,?,?)",
            (
                subject_id,
                project_id,
                label or subject_id,
                merged_fields("{}", values, custom),
                now,
                req.login,
                now,
            ),
        )
        state.store.record_history(req.login, "created", SUBJECT_TYPE, subject_id, project_id)
    return subject_id


def create_subject(req: EmuRequest, project_id: str, label: str) -> str:
    """Create an empty subject (experiment PUTs auto-create their subject this way).

    Args:
        req: The request (for the acting user).
        project_id: Owning project ID.
        label: Subject label.

    Returns:
        The new accession ID.

    Raises:
        HTTPError: 417 for an invalid label, 409 when it is taken.
    """
    return _insert(req, project_id, label, ParamSplit())


def _check_immutables(split: ParamSplit, subject: Row, context: str, shown: str) -> None:
    new_id = split.tails.get("ID") or split.shortcuts.get("ID")
    if new_id and new_id != subject["id"]:
        raise HTTPError(400, "ID cannot be modified")
    project = split.tails.get("project") or split.shortcuts.get("project")
    if project and project not in (subject["project"], context):
        raise HTTPError(409, "Project must be modified through separate URI.")
    label = split.tails.get("label")
    if label and label not in (subject["label"], shown):
        raise HTTPError(400, "Label must be modified through separate URI.")


def _put_subject(req: EmuRequest) -> Response:
    store = req.state.store
    ref = req.params["subject"]
    if "project" in req.params:
        context = str(project_or_404(req, req.params["project"])["id"])
        subject = find_item(req, "subject", ref, context)
    else:
        subject = subject_or_404(req, ref)
        context = str(subject["project"])
    require_right(req, "edit", context, "subjects")
    xsi, params = write_params(req)
    if xsi and xsi != SUBJECT_TYPE:
        raise HTTPError(400, f"Invalid xsiType {xsi} for a subject: use {SUBJECT_TYPE}.")
    split = split_params(params, (SUBJECT_TYPE,), (SUBJECT_TYPE,))
    if subject is None:
        label = split.shortcuts.get("label") or split.tails.get("label") or ref
        return wire.text_response(_insert(req, context, label, split), status_code=201)
    shown = label_in_project(req, "subject", subject, context)
    new_label = split.shortcuts.get("label")
    if new_label and new_label != shown:
        rename_in_project(req, "subject", subject, context, new_label)
        return wire.text_response("")
    _check_immutables(split, subject, context, shown)
    values, custom = _values(split)
    if values or custom:
        require_right(req, "edit", subject["project"], "subjects")
        with store.tx():
            store.execute(
                "UPDATE subjects SET fields=?, last_modified=? WHERE id=?",
                (merged_fields(subject["fields"], values, custom), now_text(), subject["id"]),
            )
            store.record_history(
                req.login,
                "modified",
                SUBJECT_TYPE,
                subject["id"],
                subject["project"],
                ",".join(sorted([*values, *custom])),
            )
    return wire.text_response(str(subject["id"]))


def _delete_subject(req: EmuRequest) -> Response:
    subject = _subject(req)
    if "project" in req.params:
        context = str(project_or_404(req, req.params["project"])["id"])
    else:
        context = str(subject["project"])
    remove_from_project(req, "subject", subject, context)
    return wire.text_response("")


@route("POST", "/data/projects/{project}/subjects")
def post_subject(req: EmuRequest) -> Response:
    """``POST /data/projects/{P}/subjects``: create from params/XML; 200 + URL; 409 if it exists."""
    project_id = str(project_or_404(req, req.params["project"])["id"])
    require_right(req, "edit", project_id, "subjects")
    _xsi, params = write_params(req)
    split = split_params(params, (SUBJECT_TYPE,), (SUBJECT_TYPE,))
    label = split.shortcuts.get("label") or split.tails.get("label")
    if label and find_item(req, "subject", label, project_id) is not None:
        raise HTTPError(409, "Subject already exists.")
    subject_id = _insert(req, project_id, label, split)
    url = f"{req.state.url}/data/projects/{project_id}/subjects/{subject_id}"
    return Response(url, status_code=200, media_type="text/plain", headers={"Location": url})


def _share_subject(req: EmuRequest) -> Row:
    ref = req.params["subject"]
    if "project" in req.params:
        return _subject(req)
    row = req.state.store.one("SELECT * FROM subjects WHERE id=?", (ref,))
    if row is None and req.state.store.one("SELECT 1 FROM subjects WHERE label=?", (ref,)):
        raise HTTPError(
            403, f"{ref} is a label: sharing through /data/subjects takes the accession ID."
        )
    return _subject(req)


def _put_share(req: EmuRequest) -> Response:
    subject = _share_subject(req)
    target = str(project_or_404(req, req.params["target"])["id"])
    share_item(req, "subject", subject, target)
    fresh = req.state.store.one("SELECT * FROM subjects WHERE id=?", (subject["id"],))
    assert fresh is not None
    return _document(req, fresh)


def _delete_share(req: EmuRequest) -> Response:
    subject = _share_subject(req)
    target = str(project_or_404(req, req.params["target"])["id"])
    if not remove_from_project(req, "subject", subject, target):
        raise HTTPError(403, "Subject is not assigned to specified project")
    return wire.text_response("")


_BASES = ("/data/projects/{project}/subjects/{subject}", "/data/subjects/{subject}")

ROUTES: list[Route] = [
    list_project_subjects,
    post_subject,
    list_all_subjects,
    get_project_subject,
    get_subject,
    *(Route(("PUT",), base, _put_subject) for base in _BASES),
    *(Route(("DELETE",), base, _delete_subject) for base in _BASES),
    *(Route(("GET",), f"{base}/status", _subject_status) for base in _BASES),
    *(Route(("GET",), f"{base}/projects", _subject_projects) for base in _BASES),
    *(Route(("PUT",), f"{base}/projects/{{target}}", _put_share) for base in _BASES),
    *(Route(("DELETE",), f"{base}/projects/{{target}}", _delete_share) for base in _BASES),
]
