"""The legacy pipeline engine (deprecated in XNAT 1.8+, still seen on old sites).

XNAT routes emulated:

* ``GET /data/projects/{P}/pipelines`` — owners/admins (else 403). ``format=json`` (default):
  a ResultSet with XNAT's columns ``Applies To, Generates, Name, Description, Path, Datatype``;
  ``format=xml``: the project's ``arc:project`` pipeline spec.
* ``DELETE /data/projects/{P}/pipelines?path=&datatype=`` — remove one (417 without both).
* ``GET /data/projects/{P}/pipelines/{STEP}[/experiments/{E}]`` — the ``arc:pipelineData``
  definition XML; 404 for an unknown step.
* ``POST /data/projects/{P}/pipelines/{STEP}/experiments/{E}`` — launch: opens a workflow
  (``Queued``, ``pipeline_name`` = STEP) and answers 200 with an empty body (fire-and-forget).
  Unknown project or experiment → 400; an unknown STEP answers 200 and nothing runs (no
  workflow), as ``ProjtExptPipelineResource`` only logs the failed launch. Special steps run
  inline as a Complete workflow named like XNAT's events: ``triggerPipelines`` and
  ``fixScanTypes`` → ``Triggered Pipelines``, ``pullDataFromHeaders`` → ``Pulled Data from
  DICOM``; ``triggerPipelines`` by a user who cannot edit does nothing (200), the other two
  answer 403.

The workflow then runs Queued → Running → the pipeline's ``outcome`` (``Complete``, ``Failed``
with details text, ``Killed``, or ``Hang`` = Running forever) after ``run_seconds`` (default
``timing.job_run_seconds``) or after ``timing.job_polls`` status reads; the progress itself is
driven by :mod:`workflows` (its ``tick`` and poll counting).

Control route (not XNAT): ``POST /emulator/pipelines`` with JSON ``{project, name, description,
path, datatype, generates, outcome, run_seconds}`` seeds a pipeline; ``GET /emulator/pipelines``
lists them; ``DELETE /emulator/pipelines?project=&name=`` removes them.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes import workflows
from xnat_prefect.testing.routes._lookup import find_item, project_or_404
from xnat_prefect.testing.store import Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    datatype TEXT NOT NULL DEFAULT 'xnat:imageSessionData',
    generates TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT 'Complete',
    run_seconds REAL,
    PRIMARY KEY (project, name)
);
"""

COLUMNS = ("Applies To", "Generates", "Name", "Description", "Path", "Datatype")
INLINE_STEPS = {
    "triggerPipelines": "Triggered Pipelines",
    "pullDataFromHeaders": "Pulled Data from DICOM",
    "fixScanTypes": "Triggered Pipelines",
}
DISPLAY_NAMES = {
    "xnat:mrSessionData": "MR Session",
    "xnat:petSessionData": "PET Session",
    "xnat:ctSessionData": "CT Session",
    "xnat:imageSessionData": "Image Session",
    "xnat:subjectData": "Subject",
    "xnat:projectData": "Project",
}
ARC_NS = 'xmlns:arc="http://nrg.wustl.edu/arc"'


def _pipelines(req: EmuRequest, project_id: str) -> list[Row]:
    return req.state.store.query(
        "SELECT * FROM pipelines WHERE project=? ORDER BY name", (project_id,)
    )


def _table_row(row: Row) -> dict[str, str]:
    return {
        "Applies To": DISPLAY_NAMES.get(row["datatype"], row["datatype"]),
        "Generates": row["generates"],
        "Name": row["name"],
        "Description": row["description"],
        "Path": row["path"],
        "Datatype": row["datatype"],
    }


def _arc_project_xml(project_id: str, rows: list[Row]) -> str:
    by_type: dict[str, list[Row]] = {}
    for row in rows:
        by_type.setdefault(row["datatype"], []).append(row)
    parts = []
    for xsi_type, items in by_type.items():
        pipes = "".join(
            "<arc:pipeline>"
            f"<arc:location>{escape(r['path'])}</arc:location>"
            f"<arc:name>{escape(r['name'])}</arc:name>"
            f"<arc:description>{escape(r['description'])}</arc:description>"
            "</arc:pipeline>"
            for r in items
        )
        parts.append(f"<arc:descendant xsiType={quoteattr(xsi_type)}>{pipes}</arc:descendant>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<arc:project id={quoteattr(project_id)} {ARC_NS}><arc:pipelines>"
        f"<arc:descendants>{''.join(parts)}</arc:descendants></arc:pipelines></arc:project>"
    )


def _listing(req: EmuRequest, project_id: str) -> Response:
    rows = _pipelines(req, project_id)
    if req.fmt == "xml":
        return wire.text_response(_arc_project_xml(project_id, rows), media_type="text/xml")
    return wire.result_set([_table_row(r) for r in rows], COLUMNS, fmt=req.fmt)


@route("GET", "/data/projects/{project}/pipelines")
def list_pipelines(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/pipelines``: the project's pipelines (owners and admins)."""
    project = project_or_404(req, req.params["project"])
    if not req.state.can_delete(req.user, project["id"]):
        raise HTTPError(403, "")
    return _listing(req, project["id"])


@route("DELETE", "/data/projects/{project}/pipelines")
def delete_pipeline(req: EmuRequest) -> Response:
    """``DELETE /data/projects/{P}/pipelines?path=&datatype=``: remove one pipeline."""
    project = project_or_404(req, req.params["project"])
    path, datatype = req.arg("path"), req.arg("datatype")
    if not path or not datatype:
        raise HTTPError(417, "Expecting path and datatype as query parameters")
    if not req.state.can_delete(req.user, project["id"]):
        raise HTTPError(403, "User unauthorized to remove pipeline from project")
    req.state.store.execute(
        "DELETE FROM pipelines WHERE project=? AND (path=? OR name=?) AND datatype=?",
        (project["id"], path, path, datatype),
    )
    return _listing(req, project["id"])


def _pipeline_or_none(req: EmuRequest, project_id: str, step: str) -> Row | None:
    return req.state.store.one(
        "SELECT * FROM pipelines WHERE project=? AND name=?", (project_id, step)
    )


def _definition(req: EmuRequest) -> Response:
    project = project_or_404(req, req.params["project"])
    step = req.params["step"]
    row = _pipeline_or_none(req, project["id"], step)
    if row is None:
        raise HTTPError(404, f"No pipeline {step} is configured for project {project['id']}")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<arc:pipelineData {ARC_NS}>"
        f"<arc:location>{escape(row['path'])}</arc:location>"
        f"<arc:name>{escape(row['name'])}</arc:name>"
        f"<arc:description>{escape(row['description'])}</arc:description>"
        f"<arc:parameters/></arc:pipelineData>"
    )
    return wire.text_response(body, media_type="text/xml")


@route("GET", "/data/projects/{project}/pipelines/{step}")
def get_pipeline(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/pipelines/{STEP}``: the pipeline definition XML."""
    return _definition(req)


@route("GET", "/data/projects/{project}/pipelines/{step}/experiments/{experiment}")
def get_pipeline_for_experiment(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/pipelines/{STEP}/experiments/{E}``: the definition XML."""
    return _definition(req)


@route("POST", "/data/projects/{project}/pipelines/{step}/experiments/{experiment}")
def launch_pipeline(req: EmuRequest) -> Response:
    """``POST .../pipelines/{STEP}/experiments/{E}``: queue a run; 200 with an empty body."""
    state = req.state
    ref, step = req.params["project"], req.params["step"]
    project_id = state.resolve_project(ref)
    if project_id is None or not state.can_see_project(req.user, project_id):
        raise HTTPError(400, f"Unable to identify project {ref}")
    exp_ref = req.params["experiment"]
    experiment = find_item(req, "experiment", exp_ref, project_id) or find_item(
        req, "experiment", exp_ref, None
    )
    if experiment is None or not state.can_read(req.user, experiment["project"]):
        raise HTTPError(400, f"Unable to identify experiment {exp_ref}")
    if not state.can_edit(req.user, project_id):
        if step == "triggerPipelines":
            return wire.text_response("")  # XNAT skips the run for non-editors and says 200
        raise HTTPError(403, f"User {req.login} cannot launch pipelines in {project_id}.")
    common: dict[str, Any] = {
        "data_id": experiment["id"],
        "data_type": experiment["xsi_type"],
        "project": project_id,
        "login": req.login,
    }
    if step in INLINE_STEPS:
        workflows.create_workflow(
            state,
            pipeline_name=INLINE_STEPS[step],
            status="Complete",
            planned_outcome=None,
            **common,
        )
        return wire.text_response("")
    pipeline = _pipeline_or_none(req, project_id, step)
    if pipeline is None:
        return wire.text_response("")  # XNAT logs "an issue launching pipeline" and says 200
    workflows.create_workflow(
        state,
        pipeline_name=step,
        planned_outcome=pipeline["outcome"],
        justification="Pipeline launch",
        run_seconds=pipeline["run_seconds"],
        **common,
    )
    return wire.text_response("")


# ----------------------------------------------------------------- control API (not XNAT)


@route("POST", "/emulator/pipelines", auth=False)
def seed_pipeline(req: EmuRequest) -> Response:
    """``POST /emulator/pipelines`` with JSON ``{project, name, outcome, run_seconds, ...}``."""
    body = req.json()
    if not isinstance(body, dict) or not body.get("project") or not body.get("name"):
        raise HTTPError(400, "Send a JSON object with at least project and name.")
    outcome = str(body.get("outcome", "Complete"))
    if outcome not in workflows.OUTCOMES:
        raise HTTPError(400, f"Bad outcome {outcome!r}; use one of {workflows.OUTCOMES}.")
    run_seconds = body.get("run_seconds")
    if run_seconds is not None and not isinstance(run_seconds, int | float):
        raise HTTPError(400, "run_seconds must be a number.")
    name = str(body["name"])
    values = (
        str(body["project"]),
        name,
        str(body.get("description", "")),
        str(body.get("path", f"/pipelines/{name}.xml")),
        str(body.get("datatype", "xnat:imageSessionData")),
        str(body.get("generates", "")),
        outcome,
        run_seconds,
    )
    req.state.store.execute(
        "INSERT INTO pipelines(project, name, description, path, datatype, generates, outcome, "
        "run_seconds) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(project, name) DO UPDATE SET "
        "description=excluded.description, path=excluded.path, datatype=excluded.datatype, "
        "generates=excluded.generates, outcome=excluded.outcome, run_seconds=excluded.run_seconds",
        values,
    )
    row = _pipeline_or_none(req, values[0], name)
    assert row is not None
    return wire.json_response(dict(row), status_code=201)


@route("GET", "/emulator/pipelines", auth=False)
def seeded_pipelines(req: EmuRequest) -> Response:
    """``GET /emulator/pipelines``: every seeded pipeline."""
    rows = req.state.store.query("SELECT * FROM pipelines ORDER BY project, name")
    return wire.json_response([dict(r) for r in rows])


@route("DELETE", "/emulator/pipelines", auth=False)
def unseed_pipelines(req: EmuRequest) -> Response:
    """``DELETE /emulator/pipelines[?project=][&name=]``: remove seeded pipelines."""
    clauses, params = [], []
    for column in ("project", "name"):
        value = req.arg(column)
        if value:
            clauses.append(f"{column}=?")
            params.append(value)
    where = " AND ".join(clauses) or "1=1"
    req.state.store.execute(f"DELETE FROM pipelines WHERE {where}", params)
    return wire.json_response({"removed": True})


ROUTES = [
    list_pipelines,
    delete_pipeline,
    get_pipeline,
    get_pipeline_for_experiment,
    launch_pipeline,
    seed_pipeline,
    seeded_pipelines,
    unseed_pipelines,
]
