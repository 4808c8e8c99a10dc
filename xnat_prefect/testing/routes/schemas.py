"""Data-model discovery routes: XSD schemas, search element metadata, access levels, scanners.

These are what a schema-driven client (xnatpy) reads while it connects and builds its object
model: ``GET /xapi/schemas`` (the schema names) and ``GET /xapi/schemas/{name}`` (each XSD),
then ``GET /data/search/elements`` and ``/data/search/elements/{type}`` (searchable data types
and their display fields). The XSDs live in ``xnat_prefect/testing/schemas/*.xsd`` and describe
only the types the emulator implements. The small listings xnatpy exposes as session
properties live here too: ``/xapi/access/projects``, ``/data/archive/scanners``,
``/data/archive/scan_types``.
"""

from __future__ import annotations

import functools
import html
from importlib import resources
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._listing import listing

SCHEMA_PACKAGE = "xnat_prefect.testing"
SCHEMA_DIR = "schemas"

_SESSION = ("SESSION_ID", "LABEL", "PROJECT", "SUBJECT_ID", "SUBJECT_LABEL", "DATE", "TIME")
_SESSION_TAIL = (
    "SCANNER",
    "MODALITY",
    "UID",
    "NOTE",
    "INSERT_DATE",
    "INSERT_USER",
    "LAST_MODIFIED",
)
_SCAN = ("ID", "IMAGE_SESSION_ID", "TYPE", "SERIES_DESCRIPTION", "QUALITY", "NOTE", "FRAMES")

#: Searchable data types: element name → (singular, plural, display field ids).
ELEMENTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "xnat:projectData": (
        "Project",
        "Projects",
        (
            "ID",
            "SECONDARY_ID",
            "NAME",
            "DESCRIPTION",
            "KEYWORDS",
            "PI",
            "PROJECT_ACCESS",
            "INSERT_DATE",
            "INSERT_USER",
            "LAST_MODIFIED",
        ),
    ),
    "xnat:subjectData": (
        "Subject",
        "Subjects",
        (
            "SUBJECT_ID",
            "SUBJECT_LABEL",
            "PROJECT",
            "GROUP",
            "SRC",
            "GENDER_TEXT",
            "HANDEDNESS_TEXT",
            "DOB",
            "YOB",
            "AGE",
            "EDUC",
            "SES",
            "RACE",
            "ETHNICITY",
            "INSERT_DATE",
            "INSERT_USER",
            "LAST_MODIFIED",
        ),
    ),
    "xnat:mrSessionData": (
        "MR Session",
        "MR Sessions",
        (*_SESSION, *_SESSION_TAIL, "FIELDSTRENGTH", "COIL"),
    ),
    "xnat:petSessionData": (
        "PET Session",
        "PET Sessions",
        (*_SESSION, *_SESSION_TAIL, "TRACER"),
    ),
    "xnat:ctSessionData": ("CT Session", "CT Sessions", (*_SESSION, *_SESSION_TAIL)),
    "xnat:petmrSessionData": (
        "PET-MR Session",
        "PET-MR Sessions",
        (*_SESSION, *_SESSION_TAIL, "TRACER"),
    ),
    "xnat:otherDicomSessionData": (
        "Other DICOM Session",
        "Other DICOM Sessions",
        (*_SESSION, *_SESSION_TAIL),
    ),
    "xnat:mrScanData": ("MR Scan", "MR Scans", (*_SCAN, "PARAMETERS_TR", "PARAMETERS_TE")),
    "xnat:petScanData": ("PET Scan", "PET Scans", _SCAN),
    "xnat:ctScanData": ("CT Scan", "CT Scans", _SCAN),
    "xnat:otherDicomScanData": ("Other DICOM Scan", "Other DICOM Scans", _SCAN),
}

_FIELD_TYPES = {
    "DATE": "date",
    "DOB": "date",
    "INSERT_DATE": "date",
    "LAST_MODIFIED": "date",
    "TIME": "time",
    "YOB": "integer",
    "EDUC": "integer",
    "SES": "integer",
    "FRAMES": "integer",
    "AGE": "float",
    "PARAMETERS_TR": "float",
    "PARAMETERS_TE": "float",
}

ELEMENT_COLUMNS = ["ELEMENT_NAME", "SINGULAR", "PLURAL", "SECURED", "COUNT"]
FIELD_COLUMNS = ["FIELD_ID", "HEADER", "SUMMARY", "TYPE", "REQUIRES_VALUE", "DESC", "ELEMENT_NAME"]
ROLE_ORDER = ("owner", "member", "collaborator")


@functools.cache
def schema_names() -> tuple[str, ...]:
    """The schemas the emulator serves (file stems of ``schemas/*.xsd``), sorted.

    Returns:
        Names such as ``("security", "xdat", "xnat")``.
    """
    folder = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_DIR)
    return tuple(
        sorted(p.name[: -len(".xsd")] for p in folder.iterdir() if p.name.endswith(".xsd"))
    )


@functools.cache
def schema_text(name: str) -> str:
    """The XSD document of one schema.

    Args:
        name: Schema name as listed by :func:`schema_names`.

    Returns:
        The XML text.

    Raises:
        HTTPError: 404 when the emulator has no such schema.
    """
    if name not in schema_names():
        raise HTTPError(404, f"No schema named {name} (available: {', '.join(schema_names())})")
    return resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_DIR, f"{name}.xsd").read_text("utf-8")


@route("GET", "/", auth=False)
def home(req: EmuRequest) -> Response:
    """``GET /``: the site's front page; anonymous callers are sent to the login page.

    A request with Basic credentials gets a new JSESSIONID cookie here (the dispatcher opens
    the session), which is how xnatpy logs in with an alias token.
    """
    if req.user is None:
        raise HTTPError(302, "", headers={"Location": "/app/template/Login.vm"})
    login = html.escape(req.user.login)
    page = (
        "<!DOCTYPE html>\n<html><head><title>XNAT</title></head><body>"
        '<span id="user_info">Logged in as: &nbsp;'
        f'<a href="/app/template/XDATScreen_UpdateUser.vm">{login}</a></span></body></html>'
    )
    return wire.text_response(page, media_type="text/html")


@route("GET", "/xapi/schemas")
def list_schemas(req: EmuRequest) -> Response:
    """``GET /xapi/schemas``: JSON array of schema names."""
    return wire.json_response(list(schema_names()))


@route("GET", "/xapi/schemas/{schema:path}")
def get_schema(req: EmuRequest) -> Response:
    """``GET /xapi/schemas/{name}`` (also ``{namespace}/{name}``): the XSD as application/xml."""
    return wire.text_response(schema_text(req.params["schema"]), media_type="application/xml")


def _readable_projects(req: EmuRequest) -> list[str]:
    rows = req.state.store.query("SELECT id FROM projects ORDER BY id")
    return [str(r["id"]) for r in rows if req.state.can_read(req.user, str(r["id"]))]


def _counts(req: EmuRequest) -> dict[str, int]:
    projects = _readable_projects(req)
    counts = {"xnat:projectData": len(projects)}
    if not projects:
        return counts
    marks = ",".join("?" * len(projects))
    store = req.state.store
    row = store.one(f"SELECT COUNT(*) AS n FROM subjects WHERE project IN ({marks})", projects)
    counts["xnat:subjectData"] = int(row["n"]) if row else 0
    for item in store.query(
        f"SELECT xsi_type, COUNT(*) AS n FROM experiments WHERE project IN ({marks}) "
        "GROUP BY xsi_type",
        projects,
    ):
        counts[str(item["xsi_type"])] = int(item["n"])
    for item in store.query(
        "SELECT s.xsi_type, COUNT(*) AS n FROM scans s JOIN experiments e "
        f"ON e.id = s.experiment_id WHERE e.project IN ({marks}) GROUP BY s.xsi_type",
        projects,
    ):
        counts[str(item["xsi_type"])] = int(item["n"])
    return counts


@route("GET", "/data/search/elements")
def search_elements(req: EmuRequest) -> Response:
    """``GET /data/search/elements``: searchable data types with item counts."""
    counts = _counts(req)
    rows = [
        {
            "ELEMENT_NAME": name,
            "SINGULAR": singular,
            "PLURAL": plural,
            "SECURED": "true",
            "COUNT": counts.get(name, 0),
        }
        for name, (singular, plural, _fields) in ELEMENTS.items()
    ]
    return wire.result_set(rows, ELEMENT_COLUMNS, fmt=req.fmt, title="Elements")


@route("GET", "/data/search/elements/{element}")
def search_element_fields(req: EmuRequest) -> Response:
    """``GET /data/search/elements/{xsiType}``: the display fields of one data type."""
    name = req.params["element"]
    known = {key.lower(): key for key in ELEMENTS}
    if name.lower() not in known:
        raise HTTPError(404, f"Unknown data type: {name}")
    name = known[name.lower()]
    singular, _plural, fields = ELEMENTS[name]
    rows = [
        {
            "FIELD_ID": field,
            "HEADER": field.replace("_", " ").title(),
            "SUMMARY": f"{singular} {field.replace('_', ' ').lower()}",
            "TYPE": _FIELD_TYPES.get(field, "string"),
            "REQUIRES_VALUE": "false",
            "DESC": "",
            "ELEMENT_NAME": name,
        }
        for field in fields
    ]
    return wire.result_set(rows, FIELD_COLUMNS, fmt=req.fmt, title=name)


@route("GET", "/xapi/access/projects")
def access_projects(req: EmuRequest) -> Response:
    """``GET /xapi/access/projects``: the caller's projects and role in each (JSON array).

    Projects the caller can read without a role (admins, public projects) are listed without a
    ``role`` key.
    """
    state = req.state
    result: list[dict[str, Any]] = []
    for project in state.store.query("SELECT * FROM projects ORDER BY id"):
        project_id = str(project["id"])
        if not state.can_read(req.user, project_id):
            continue
        entry: dict[str, Any] = {
            "ID": project_id,
            "name": project["name"],
            "secondary_ID": project["secondary_id"],
            "accessibility": project["accessibility"],
        }
        role = state.project_role(req.user, project_id)
        if role in ROLE_ORDER:
            entry["role"] = role
        result.append(entry)
    return wire.json_response(result)


@route("GET", "/data/scanners")
def scanners(req: EmuRequest) -> Response:
    """``GET /data/archive/scanners[?modality=MR]``: distinct scanner names of readable sessions."""
    projects = _readable_projects(req)
    rows: list[dict[str, Any]] = []
    if projects:
        marks = ",".join("?" * len(projects))
        sql = (
            f"SELECT DISTINCT scanner FROM experiments WHERE scanner <> '' AND project IN ({marks})"
        )
        params: list[str] = list(projects)
        modality = req.query.get("modality")
        if modality:
            sql += " AND UPPER(modality) = UPPER(?)"
            params.append(modality)
        rows = [
            {"scanner": r["scanner"]} for r in req.state.store.query(sql + " ORDER BY 1", params)
        ]
    return listing(req, rows, default=["scanner"], available=["scanner"], uri=False)


@route("GET", "/data/scan_types")
def scan_types(req: EmuRequest) -> Response:
    """``GET /data/archive/scan_types[?modality=MR]``: distinct scan types of readable sessions."""
    projects = _readable_projects(req)
    rows: list[dict[str, Any]] = []
    if projects:
        marks = ",".join("?" * len(projects))
        sql = (
            "SELECT DISTINCT s.type AS type FROM scans s JOIN experiments e "
            f"ON e.id = s.experiment_id WHERE s.type <> '' AND e.project IN ({marks})"
        )
        params: list[str] = list(projects)
        modality = req.query.get("modality")
        if modality:
            sql += " AND UPPER(s.modality) = UPPER(?)"
            params.append(modality)
        found = req.state.store.query(sql + " ORDER BY 1", params)
        rows = [{"type": r["type"]} for r in found]
    return listing(req, rows, default=["type"], available=["type"], uri=False)


ROUTES = [
    home,
    list_schemas,
    get_schema,
    search_elements,
    search_element_fields,
    access_projects,
    scanners,
    scan_types,
]
