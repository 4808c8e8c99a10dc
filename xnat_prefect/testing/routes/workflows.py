"""Workflow routes (``wrk:workflowData``): XNAT's processing and audit records.

Every launch (legacy pipeline, container) creates a workflow; clients poll
``GET /data/workflows/{id}?format=json`` until the status is terminal (starts with ``Complete``,
``Failed`` or ``Killed``). Routes:

* ``GET /data/workflows/{id}`` — item document (``format=json|xml``, HTML otherwise); 404 unknown.
  Each read counts as a status poll (``timing.job_polls``).
* ``GET /data/workflows?wrk:workflowData/id=..&wrk:workflowData/pipeline_name=..`` — items
  document of every match (404 when none).
* ``PUT /data/workflows[/{id}]`` with ``wrk:workflowData/<field>`` params (also bare ``status``
  and ``data_type``) — create, or update the workflow with the same id, pipeline and launch time
  (new ones need id, launch_time, pipeline_name, data_type → 400; non-creator non-admin → 403).
* ``GET /data/services/workflows/{pipeline}?experiment=&project=&status=`` — a ResultSet
  (``ALL`` or ``*`` as the pipeline lists every pipeline).

The engine (progress, poll hooks) is :mod:`_wf`; this module re-exports what other modules call:
:func:`create_workflow`, :func:`set_workflow_status`, :func:`get_workflow`, :func:`tick`.
"""

from __future__ import annotations

import time
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._wf import (
    OUTCOMES,
    SCHEMA,
    XSI_TYPE,
    add_poll_hook,
    can_read_workflow,
    create_workflow,
    data_fields,
    get_workflow,
    is_terminal,
    queue_delay,
    record_poll,
    run_is_due,
    set_workflow_status,
    tick,
    workflow_json,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

__all__ = [
    "OUTCOMES",
    "ROUTES",
    "SCHEMA",
    "add_poll_hook",
    "can_read_workflow",
    "create_workflow",
    "get_workflow",
    "is_terminal",
    "queue_delay",
    "record_poll",
    "run_is_due",
    "set_workflow_status",
    "tick",
    "workflow_json",
]

FIELD_COLUMNS = {
    "id": "id",
    "data_type": "data_type",
    "pipeline_name": "pipeline_name",
    "launch_time": "launch_time",
    "status": "status",
    "current_step_id": "current_step_id",
    "current_step_launch_time": "current_step_launch_time",
    "next_step_id": "next_step_id",
    "step_description": "step_description",
    "percentagecomplete": "percentage_complete",
    "percentage_complete": "percentage_complete",
    "externalid": "external_id",
    "external_id": "external_id",
    "comments": "comments",
    "details": "details",
    "justification": "justification",
    "description": "description",
    "jobid": "job_id",
    "job_id": "job_id",
    "category": "category",
    "type": "type",
    "src": "src",
}
# column → name in item documents and ResultSets (ItemJSONBuilder spelling)
XML_ELEMENTS = ("comments", "details", "justification", "description")
REQUIRED_NEW = ("id", "launch_time", "pipeline_name", "data_type")
BARE_PARAMS = ("status", "data_type")


def workflow_xml(row: Row) -> str:
    """A workflow as XFT XML (``wrk:Workflow``).

    Args:
        row: Workflow row.

    Returns:
        The XML text.
    """
    fields = data_fields(row)
    attrs = []
    for name, value in fields.items():
        if name in XML_ELEMENTS or name == "wrk_workflowData_id" or value in (None, ""):
            continue
        xml_name = "ExternalID" if name == "externalID" else name
        text = str(value).replace(" ", "T", 1) if name.endswith("launch_time") else str(value)
        attrs.append(f"{xml_name}={quoteattr(text)}")
    inner = "".join(
        f"<wrk:{name}>{escape(str(fields[name]))}</wrk:{name}>"
        for name in XML_ELEMENTS
        if fields.get(name)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<wrk:Workflow {' '.join(attrs)} "
        'xmlns:arc="http://nrg.wustl.edu/arc" xmlns:wrk="http://nrg.wustl.edu/workflow" '
        'xmlns:xdat="http://nrg.wustl.edu/security" xmlns:xnat="http://nrg.wustl.edu/xnat" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{inner}</wrk:Workflow>'
    )


def _items_response(req: EmuRequest, rows: list[Row]) -> Response:
    fmt = req.fmt
    if fmt == "json":
        items = [wire.item_document(XSI_TYPE, data_fields(r))["items"][0] for r in rows]
        return wire.json_response({"items": items})
    if fmt == "xml":
        return wire.text_response(workflow_xml(rows[0]), media_type="text/xml")
    first = rows[0]
    page = (
        f"<html><head><title>Workflow {first['wrk_workflowData_id']}</title></head><body>"
        f"{escape(first['pipeline_name'])}: {escape(first['status'])}</body></html>"
    )
    return wire.text_response(page, media_type="text/html")


def _decoded(value: str) -> str:
    return unquote(value) if "%" in value else value


def _xpath_params(req: EmuRequest, bare: tuple[str, ...] = ()) -> dict[str, str]:
    """``wrk:workflowData/<field>`` params (plus the ``bare`` names), keyed by column."""
    values: dict[str, str] = {}
    merged = {**req.form, **dict(req.query.items())}
    for key, value in merged.items():
        if key.lower().startswith("wrk:workflowdata/"):
            name = key.split("/", 1)[1]
        elif key in bare:
            name = key
        else:
            continue
        column = FIELD_COLUMNS.get(name.lower())
        if column is not None:
            values[column] = _decoded(value)
    return values


# ----------------------------------------------------------------- routes


@route("GET", "/data/workflows/{wf_id}")
def get_workflow_route(req: EmuRequest) -> Response:
    """``GET /data/workflows/{id}``: the item document (each read counts as a status poll)."""
    ref = req.params["wf_id"]
    row = get_workflow(req.state, ref) if ref.isdigit() else None
    if row is None or not can_read_workflow(req, row):
        raise HTTPError(404, f"Unable to find workflow {ref}")
    record_poll(req.state, int(row["wrk_workflowData_id"]))
    fresh = get_workflow(req.state, ref)
    assert fresh is not None
    return _items_response(req, [fresh])


@route("GET", "/data/workflows")
def find_workflows(req: EmuRequest) -> Response:
    """``GET /data/workflows?wrk:workflowData/<field>=..``: items document of the matches."""
    criteria = _xpath_params(req)
    where = " AND ".join(f"{column}=?" for column in criteria) or "1=1"
    rows = req.state.store.query(
        f"SELECT * FROM workflows WHERE {where} ORDER BY wrk_workflowData_id",
        tuple(criteria.values()),
    )
    rows = [r for r in rows if can_read_workflow(req, r)]
    if not rows:
        raise HTTPError(404, "Unable to find the specified workflow.")
    for row in rows:
        record_poll(req.state, int(row["wrk_workflowData_id"]))
    fresh = [get_workflow(req.state, r["wrk_workflowData_id"]) for r in rows]
    return _items_response(req, [r for r in fresh if r is not None])


def _item_project(state: EmulatorState, data_id: str, project: str) -> str:
    if project:
        return state.resolve_project(project) or project
    for table in ("experiments", "subjects"):
        row = state.store.one(f"SELECT project FROM {table} WHERE id=?", (data_id,))
        if row is not None:
            return str(row["project"])
    return state.resolve_project(data_id) or ""


@route("PUT", "/data/workflows")
def put_workflow(req: EmuRequest) -> Response:
    """``PUT /data/workflows``: create, or update the one with the same id/pipeline/launch time."""
    values = _xpath_params(req, BARE_PARAMS)
    existing = None
    if all(values.get(k) for k in ("id", "pipeline_name", "launch_time")):
        existing = req.state.store.one(
            "SELECT * FROM workflows WHERE id=? AND pipeline_name=? AND launch_time=?",
            (values["id"], values["pipeline_name"], values["launch_time"]),
        )
    return _save(req, values, existing)


@route("PUT", "/data/workflows/{wf_id}")
def put_workflow_id(req: EmuRequest) -> Response:
    """``PUT /data/workflows/{id}``: update an existing workflow."""
    ref = req.params["wf_id"]
    row = get_workflow(req.state, ref) if ref.isdigit() else None
    if row is None:
        raise HTTPError(404, f"Unable to find workflow {ref}")
    return _save(req, _xpath_params(req, BARE_PARAMS), row)


def _save(req: EmuRequest, values: dict[str, str], existing: Row | None) -> Response:
    state = req.state
    user = req.user
    assert user is not None
    if existing is not None:
        if not user.is_admin and existing["create_user"] != user.login:
            raise HTTPError(403, f"User {user.login} cannot modify this workflow.")
        if values:
            values["mod_time"] = now_text()
            sets = ", ".join(f"{c}=?" for c in values)
            state.store.execute(
                f"UPDATE workflows SET {sets} WHERE wrk_workflowData_id=?",
                (*values.values(), existing["wrk_workflowData_id"]),
            )
        return wire.text_response("")
    missing = [k for k in REQUIRED_NEW if not values.get(k)]
    if missing:
        names = ", ".join(f"wrk:workflowData/{m}" for m in missing)
        raise HTTPError(400, f"Missing required workflow fields: {names}")
    project = _item_project(state, values["id"], values.get("external_id", ""))
    if not user.is_admin and not (project and state.can_edit(user, project)):
        raise HTTPError(403, f"User {user.login} cannot create workflows for {values['id']}.")
    values.setdefault("status", "Queued")
    values["external_id"] = project
    values["create_user"] = user.login
    values["mod_time"] = now_text()
    columns = list(values)
    state.store.execute(
        f"INSERT INTO workflows({', '.join(columns)}, queued_at) "
        f"VALUES({', '.join('?' * len(columns))}, ?)",
        (*values.values(), time.time()),
    )
    return wire.text_response("")


LIST_COLUMNS = (
    "wrk_workflowData_id",
    "ID",
    "data_type",
    "externalID",
    "pipeline_name",
    "launch_time",
    "status",
    "current_step_id",
    "step_description",
    "percentageComplete",
    "comments",
    "details",
    "jobID",
    "create_user",
)


@route("GET", "/data/services/workflows/{pipeline:path}")
def list_workflows(req: EmuRequest) -> Response:
    """``GET /data/services/workflows/{pipeline}?experiment=&project=&status=``: a ResultSet."""
    pipeline = req.params["pipeline"]
    clauses: list[str] = []
    params: list[str] = []
    if pipeline not in ("ALL", "*", "all"):
        clauses.append("(pipeline_name=? OR pipeline_name LIKE ?)")
        params.extend([pipeline, f"%/{pipeline}"])
    for arg, column in (("experiment", "id"), ("project", "external_id"), ("status", "status")):
        value = req.arg(arg)
        if value:
            clauses.append(f"{column}=?")
            params.append(value)
    where = " AND ".join(clauses) or "1=1"
    rows = req.state.store.query(
        f"SELECT * FROM workflows WHERE {where} ORDER BY wrk_workflowData_id DESC", params
    )
    table = [data_fields(r) for r in rows if can_read_workflow(req, r)]
    return wire.result_set(table, LIST_COLUMNS, fmt=req.fmt, title="Workflows")


ROUTES = [get_workflow_route, find_workflows, put_workflow, put_workflow_id, list_workflows]
