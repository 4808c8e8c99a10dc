"""Workflow look-ups and renderings shared by :mod:`workflows` (XNAT's two query paths).

* :func:`unique_workflows` — ``WorkflowUtils.getUniqueWorkflow``: the rows whose ``ID``,
  ``pipeline_name`` and ``launch_time`` all equal the given values. XNAT builds the query from
  all three; a missing one becomes ``IS NULL`` and matches nothing (every workflow has them).
* :func:`service_listing` — ``WorkflowsRestlet`` (``GET /data/services/workflows/{pipeline}``):

  - with a readable ``experiment`` (accession ID, or label within ``project``): the workflows of
    that experiment whose pipeline name contains ``{pipeline}`` (SQL ``LIKE '%name%'`` on the
    lower-cased name, case-insensitive); ``display=LATEST`` (the default) answers the newest
    one as a single workflow DOCUMENT (404 when none), any other ``display`` a ResultSet;
  - otherwise (no experiment, or one the caller cannot read): a raw-SQL table over the whole
    site (not permission-filtered, as in XNAT) of the LATEST workflow per item among the
    pipelines of the comma list (case-sensitive ``LIKE '%name%'``), then ``status`` and
    ``project`` (``externalID``) filters; columns ``label`` (the experiment's), ``id``,
    ``externalid``, ``pipeline_name``, ``launch_time``, ``jobid``, ``status``,
    ``current_step_launch_time``, ``current_step_id`` — no workflow id.

  ``param_*`` filters and ``columns=`` read workflow parameters, which the emulator's
  workflows never have: those queries answer empty tables. Without ``format`` a table is CSV
  (``application/vnd.ms-excel``) and a document XML, as the restlet's only variant makes them.
"""

from __future__ import annotations

import re
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.routes._lookup import can_read_item, find_item
from xnat_prefect.testing.routes._wf import XSI_TYPE, can_read_workflow, data_fields, parse_time
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

LATEST = "LATEST"
XML_ELEMENTS = ("comments", "details", "justification", "description")
# ItemSearch.executeToTable: one column per wrk:workflowData field, named by its XML path
# without the element (meta fields left out); XNAT's order is a hash order.
LIST_COLUMNS = (
    "wrk_workflowData_id",
    "ID",
    "data_type",
    "ExternalID",
    "pipeline_name",
    "launch_time",
    "status",
    "current_step_id",
    "current_step_launch_time",
    "next_step_id",
    "step_description",
    "percentageComplete",
    "comments",
    "details",
    "justification",
    "description",
    "jobID",
    "category",
    "type",
    "src",
)
SITE_COLUMNS = (
    "label",
    "id",
    "externalid",
    "pipeline_name",
    "launch_time",
    "jobid",
    "status",
    "current_step_launch_time",
    "current_step_id",
)
EXCEL = "application/vnd.ms-excel"


# ----------------------------------------------------------------- rendering


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


def item_response(req: EmuRequest, row: Row) -> Response:
    """One workflow document: ``format=json``, ``format=html``, else XML (XNAT's default).

    Args:
        req: The request (its ``format``).
        row: Workflow row.

    Returns:
        The response.
    """
    fmt = req.fmt
    if fmt == "json":
        return wire.json_response(wire.item_document(XSI_TYPE, data_fields(row)))
    if fmt == "html":
        page = (
            f"<html><head><title>Workflow {row['wrk_workflowData_id']}</title></head><body>"
            f"{escape(row['pipeline_name'])}: {escape(row['status'])}</body></html>"
        )
        return wire.text_response(page, media_type="text/html")
    return wire.text_response(workflow_xml(row), media_type="text/xml")


def table_response(
    req: EmuRequest, rows: list[dict[str, str]], columns: tuple[str, ...], title: str | None
) -> Response:
    """A workflow ResultSet in the requested format (CSV as ``vnd.ms-excel`` without one).

    Args:
        req: The request.
        rows: Table rows.
        columns: Column names.
        title: ``title`` of the ResultSet (None: none).

    Returns:
        The response.
    """
    fmt = req.fmt
    if fmt is None:
        response = wire.result_set(rows, columns, fmt="csv")
        response.headers["content-type"] = EXCEL
        return response
    if fmt not in ("json", "xml", "csv"):
        fmt = "html"
    return wire.result_set(
        rows,
        columns,
        fmt=fmt,
        title=title,
        sort_by=req.query.get("sortBy"),
        sort_desc=(req.query.get("sortOrder") or "").upper() == "DESC",
    )


# ----------------------------------------------------------------- matching


def like(value: str, pattern: str, *, fold: bool) -> bool:
    """SQL ``LIKE`` (``%`` any run, ``_`` one character).

    Args:
        value: The column value.
        pattern: The LIKE pattern.
        fold: Compare case-insensitively.

    Returns:
        Whether the value matches.
    """
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if fold else 0)) is not None


def unique_workflows(
    state: EmulatorState, *, data_id: str | None, pipeline: str | None, launch_time: str | None
) -> list[Row]:
    """``getUniqueWorkflow``: rows with this item ID, pipeline name AND launch time.

    Args:
        state: Emulator state.
        data_id: ``wrk:workflowData/ID``.
        pipeline: ``pipeline_name``.
        launch_time: ``launch_time`` text (compared as a time, to the millisecond).

    Returns:
        The matches, oldest first; empty when any key is missing or unreadable.
    """
    when = parse_time(launch_time)
    if not data_id or not pipeline or when is None:
        return []
    rows = state.store.query(
        "SELECT * FROM workflows WHERE id=? AND pipeline_name=? ORDER BY wrk_workflowData_id",
        (data_id, pipeline),
    )
    return [r for r in rows if _same_instant(parse_time(r["launch_time"]), when)]


def _same_instant(stored: datetime | None, wanted: datetime) -> bool:
    return stored is not None and abs((stored - wanted).total_seconds()) < 0.0005


def _launch_key(row: Row) -> tuple[float, int]:
    moment = parse_time(row["launch_time"])
    return (moment.timestamp() if moment else 0.0, int(row["wrk_workflowData_id"]))


# ----------------------------------------------------------------- the listing service


def service_listing(req: EmuRequest, pipeline: str | None) -> Response:
    """``GET /data/services/workflows[/{pipeline}]`` as ``WorkflowsRestlet`` answers it.

    Args:
        req: The request (``experiment``, ``project``, ``status``, ``display``, ``format``).
        pipeline: The path's pipeline name (a comma list for the site table), or None.

    Returns:
        A workflow document or a ResultSet.

    Raises:
        HTTPError: 404 as XNAT's error paths answer.
    """
    query = req.query
    experiment_ref = query.get("experiment")
    experiment = None
    if experiment_ref is not None:
        experiment = _readable_experiment(req, experiment_ref, query.get("project"))
    if experiment is not None:
        return _for_experiment(req, pipeline, experiment)
    return _site_table(req, pipeline)


def _readable_experiment(req: EmuRequest, ref: str, project: str | None) -> Row | None:
    row = find_item(req, "experiment", ref, None)
    if row is None and project is not None:
        project_id = req.state.resolve_project(project)
        row = find_item(req, "experiment", ref, project_id) if project_id else None
    if row is None or not can_read_item(req, "experiment", row["id"]):
        return None
    return row


def _param_filters(req: EmuRequest) -> bool:
    return any(key.startswith("param_") for key in req.query)


def _for_experiment(req: EmuRequest, pipeline: str | None, experiment: Row) -> Response:
    if _param_filters(req):
        return table_response(req, [], SITE_COLUMNS, None)
    if pipeline is None:
        raise HTTPError(
            404,
            f"Unable to find workflow entry for pipeline null and experiment.{experiment['id']}",
        )
    status = req.query.get("status")
    rows = [
        r
        for r in req.state.store.query(
            "SELECT * FROM workflows WHERE id=? ORDER BY wrk_workflowData_id", (experiment["id"],)
        )
        if (status is None or r["status"] == status)
        and like(r["pipeline_name"], f"%{pipeline.lower()}%", fold=True)
        and can_read_workflow(req, r)
    ]
    display = req.query.get("display") or LATEST
    if display.upper() == LATEST:
        if not rows:
            raise HTTPError(
                404,
                f"Unable to find workflow entry for pipeline {pipeline} and "
                f"experiment.{experiment['id']}",
            )
        return item_response(req, max(rows, key=_launch_key))
    table = [{**data_fields(r), "ExternalID": r["external_id"]} for r in rows]
    return table_response(req, table, LIST_COLUMNS, "All workflows")


def _site_table(req: EmuRequest, pipeline: str | None) -> Response:
    query = req.query
    status = query.get("status")
    title = f"All {status if status is not None else 'null'} workflows"  # Java's "All " + null
    if _param_filters(req):
        return table_response(req, [], (*SITE_COLUMNS, "name", "parameter"), title)
    if query.get("columns") is not None:
        extra = tuple(c.strip() for c in str(query.get("columns")).split(","))
        return table_response(req, [], (*SITE_COLUMNS, *extra), title)
    names = [p for p in (pipeline or "").split(",")] if (pipeline or "").strip() else []
    if not names:
        raise HTTPError(404, "Unable to find workflow entry with pipeline_name null")
    matching = [
        r
        for r in req.state.store.query("SELECT * FROM workflows ORDER BY wrk_workflowData_id")
        if any(like(r["pipeline_name"], f"%{name}%", fold=False) for name in names)
    ]
    newest: dict[str, float] = {}
    for row in matching:
        stamp = _launch_key(row)[0]
        newest[row["id"]] = max(newest.get(row["id"], stamp), stamp)
    project = query.get("project")
    latest = [
        r
        for r in matching
        if _launch_key(r)[0] == newest[r["id"]]
        and (status is None or r["status"] == status)
        and (project is None or r["external_id"] == project)
    ]
    latest.sort(key=lambda r: (r["id"], -_launch_key(r)[0]))
    return table_response(req, [_site_row(req.state, r) for r in latest], SITE_COLUMNS, title)


def _site_row(state: EmulatorState, row: Row) -> dict[str, str]:
    experiment = state.store.one("SELECT label FROM experiments WHERE id=?", (row["id"],))
    return {
        "label": "" if experiment is None else str(experiment["label"]),
        "id": row["id"],
        "externalid": row["external_id"],
        "pipeline_name": row["pipeline_name"],
        "launch_time": row["launch_time"],
        "jobid": row["job_id"],
        "status": row["status"],
        "current_step_launch_time": row["current_step_launch_time"],
        "current_step_id": row["current_step_id"],
    }
