"""Workflow routes (``wrk:workflowData``): XNAT's processing and audit records.

Every launch (legacy pipeline, container) creates a workflow; clients poll
``GET /data/workflows/{id}?format=json`` until the status is terminal (starts with ``Complete``,
``Failed`` or ``Killed``). Routes:

* ``GET /data/workflows/{id}`` — item document (``format=json|html``, XML otherwise, as
  ``WorkflowResource``); 404 unknown. Each read counts as a status poll (``timing.job_polls``).
* ``GET /data/workflows?wrk:workflowData/id=..&wrk:workflowData/pipeline_name=..&
  wrk:workflowData/launch_time=..`` — ``getUniqueWorkflow``: at most ONE workflow, matched on
  all three (other params ignored); a missing or unreadable one matches nothing → 404.
* ``PUT /data/workflows[/{id}]`` with ``wrk:workflowData/<field>`` params (also bare ``status``
  and ``data_type``) — create, or update the workflow with the same id, pipeline and launch time
  (new ones need id, launch_time, pipeline_name, data_type → 400; non-creator non-admin → 403).
* ``GET /data/services/workflows[/{pipeline}]?experiment=&project=&status=&display=`` — see
  :mod:`_wf_list` (a document for one experiment's latest run, else ResultSets).
* ``GET /data/services/workflows/workflowid/{id}`` — one workflow by primary key (XML by
  default); unknown or non-numeric → 500, as the restlet's unguarded lookup fails.

The engine (progress, poll hooks) is :mod:`_wf`; this module re-exports what other modules call:
:func:`create_workflow`, :func:`set_workflow_status`, :func:`get_workflow`, :func:`tick`.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._wf import (
    OUTCOMES,
    SCHEMA,
    add_poll_hook,
    can_read_workflow,
    create_workflow,
    get_workflow,
    is_terminal,
    queue_delay,
    record_poll,
    run_is_due,
    set_workflow_status,
    tick,
    workflow_json,
)
from xnat_prefect.testing.routes._wf_list import item_response, service_listing, unique_workflows
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
REQUIRED_NEW = ("id", "launch_time", "pipeline_name", "data_type")
BARE_PARAMS = ("status", "data_type")


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
    return item_response(req, fresh)


@route("GET", "/data/workflows")
def find_workflow(req: EmuRequest) -> Response:
    """``GET /data/workflows?wrk:workflowData/id=..&.../pipeline_name=..&.../launch_time=..``."""
    keys = _xpath_params(req)
    rows = unique_workflows(
        req.state,
        data_id=keys.get("id"),
        pipeline=keys.get("pipeline_name"),
        launch_time=keys.get("launch_time"),
    )
    row = next((r for r in rows if can_read_workflow(req, r)), None)
    if row is None:
        raise HTTPError(404, "Unable to find the specified workflow.")
    wf_id = int(row["wrk_workflowData_id"])
    record_poll(req.state, wf_id)
    fresh = get_workflow(req.state, wf_id)
    assert fresh is not None
    return item_response(req, fresh)


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
    matches = unique_workflows(
        req.state,
        data_id=values.get("id"),
        pipeline=values.get("pipeline_name"),
        launch_time=values.get("launch_time"),
    )
    return _save(req, values, matches[0] if matches else None)


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


@route("GET", "/data/services/workflows/workflowid/{wf_id}")
def workflow_by_key(req: EmuRequest) -> Response:
    """``GET /data/services/workflows/workflowid/{id}``: one workflow by primary key."""
    ref = req.params["wf_id"]
    row = get_workflow(req.state, ref) if ref.isdigit() else None
    if row is None or not can_read_workflow(req, row):
        raise HTTPError(500, "Internal Server Error")
    return item_response(req, row)


@route("GET", "/data/services/workflows")
def list_all_workflows(req: EmuRequest) -> Response:
    """``GET /data/services/workflows``: no pipeline name (XNAT's queries then fail → 404)."""
    return service_listing(req, None)


@route("GET", "/data/services/workflows/{pipeline:path}")
def list_workflows(req: EmuRequest) -> Response:
    """``GET /data/services/workflows/{pipeline}?experiment=&project=&status=&display=``."""
    return service_listing(req, req.params["pipeline"])


ROUTES = [
    get_workflow_route,
    find_workflow,
    put_workflow,
    put_workflow_id,
    workflow_by_key,
    list_all_workflows,
    list_workflows,
]
