"""Item audit trail: ``GET /data/services/audit/{xsiType}/{id}`` (XNAT's ``AuditRestlet``).

XNAT has no ``/data/audit`` route (it stays the dispatcher's loud 404 here too). The audit
service finds the item by its primary key (``xnat:projectData`` ID, ``xnat:subjectData`` and
experiment accession IDs, a scan's ``xnat_imagescandata_id``, ``xdat:user``'s numeric
``xdat_user_id``; a deleted item is found through its history) and answers
``WorkflowBasedHistoryBuilder``'s JSON (``format=html`` gives a page instead)::

    {"events": [{"event_id", "event_action", "event_date" (epoch ms), "event_user",
                 "event_type", "event_reason", "event_category", "event_status",
                 "changesets": []}]}

Events come from:

* the workflows of the item — for a project those with ``ID`` = the project or (``externalID``
  = the project and ``category`` ≠ ``DATA``); for a subject also its experiments' workflows.
  ``event_action`` is the pipeline name without folder and extension (``getOnlyPipelineName``);
  empty fields are left out, as ``JSONObject.put(key, null)`` drops them;
* the emulator's ``history`` table (every module's ``Store.record_history``), standing for the
  workflow XNAT writes for each data change: ``event_action`` = the history action (``created``,
  ``modified``, ``shared``…; XNAT's own texts read ``Added via web service`` etc.),
  ``event_type`` ``WEB_SERVICE``, ``event_category`` ``DATA``, ``event_status`` ``Complete``,
  ``event_reason`` = the row's details; ``event_id`` = the change time in epoch ms (XNAT's
  number for a change without a workflow id), made unique within one reply.

``dateFormat`` (Java ``SimpleDateFormat`` letters ``yyyy MM dd HH hh mm ss SSS a``) prints
``event_date`` as text. ``changesets`` stay empty (``includeDetails`` is not modelled). XNAT's
event order is a hash order; the emulator lists oldest first. Unknown or unreadable items →
404; ``xdat:user`` trails are visible to administrators and the user.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._lookup import can_read_item
from xnat_prefect.testing.routes._wf import can_read_workflow, epoch_ms, parse_time
from xnat_prefect.testing.store import Row

ABSTRACT_EXPERIMENTS = {"xnat:experimentdata", "xnat:subjectassessordata", "xnat:imagesessiondata"}
ABSTRACT_SCANS = {"xnat:imagescandata"}
JAVA_DATE = re.compile(r"'[^']*'|y+|M+|d+|H+|h+|m+|s+|S+|a+|E+")


class _Item:
    """What the audit is about: its kind, key, project and the ids whose history counts."""

    def __init__(self, kind: str, key: str, project: str, history_ids: list[str]) -> None:
        self.kind = kind
        self.key = key
        self.project = project
        self.history_ids = history_ids


def _experiment_type_matches(requested: str, actual: str) -> bool:
    return requested == actual.lower() or requested in ABSTRACT_EXPERIMENTS


def _find(req: EmuRequest, xsi_type: str, key: str) -> _Item | None:
    store = req.state.store
    lowered = xsi_type.lower()
    if lowered == "xnat:projectdata":
        row = store.one("SELECT id FROM projects WHERE id=?", (key,))
        return None if row is None else _Item("project", key, key, [key])
    if lowered == "xnat:subjectdata":
        row = store.one("SELECT project FROM subjects WHERE id=?", (key,))
        if row is None:
            return None
        experiments = store.query("SELECT id FROM experiments WHERE subject_id=?", (key,))
        ids = [key, *(str(e["id"]) for e in experiments)]
        return _Item("subject", key, str(row["project"]), ids)
    if lowered == "xdat:user":
        user = (
            store.one("SELECT login FROM users WHERE xdat_user_id=?", (key,))
            if key.isdigit()
            else None
        )
        return None if user is None else _Item("user", key, "", [str(user["login"])])
    experiment = store.one("SELECT project, xsi_type FROM experiments WHERE id=?", (key,))
    if experiment is not None and _experiment_type_matches(lowered, experiment["xsi_type"]):
        return _Item("experiment", key, str(experiment["project"]), [key])
    if key.isdigit():
        scan = store.one(
            "SELECT s.xsi_type, e.id AS experiment, e.project FROM scans s "
            "JOIN experiments e ON e.id = s.experiment_id WHERE s.xnat_imagescandata_id=?",
            (key,),
        )
        if scan is not None and lowered in (scan["xsi_type"].lower(), *ABSTRACT_SCANS):
            return _Item("scan", key, str(scan["project"]), [])
    return None


def _from_history(req: EmuRequest, xsi_type: str, key: str) -> _Item | None:
    """A deleted item, found through its history (XNAT falls back to ``{type}_history``)."""
    rows = req.state.store.query(
        "SELECT project FROM history WHERE item_id=? AND lower(xsi_type)=lower(?) ORDER BY id",
        (key, xsi_type),
    )
    if not rows or xsi_type.lower() == "xdat:user":
        return None
    return _Item("deleted", key, str(rows[-1]["project"]), [key])


def _readable(req: EmuRequest, item: _Item) -> bool:
    user = req.user
    if user is None:
        return False
    if item.kind == "user":
        login = item.history_ids[0]
        return user.is_admin or user.login == login
    if item.kind in ("subject", "experiment"):
        return can_read_item(req, item.kind, item.key)
    return user.is_admin or bool(item.project and req.state.can_read(user, item.project))


def _workflows(req: EmuRequest, item: _Item) -> list[Row]:
    store = req.state.store
    if item.kind == "project":
        rows = store.query(
            "SELECT * FROM workflows WHERE id=? OR (external_id=? AND category != 'DATA') "
            "ORDER BY wrk_workflowData_id",
            (item.key, item.key),
        )
    else:
        ids = item.history_ids if item.kind == "subject" else [item.key]
        marks = ",".join("?" * len(ids))
        rows = store.query(
            f"SELECT * FROM workflows WHERE id IN ({marks}) ORDER BY wrk_workflowData_id", ids
        )
    return [r for r in rows if can_read_workflow(req, r)]


def _history(req: EmuRequest, item: _Item) -> list[Row]:
    if not item.history_ids:
        return []
    marks = ",".join("?" * len(item.history_ids))
    params: list[str] = list(item.history_ids)
    clause = ""
    if item.kind == "project":
        clause = " AND lower(xsi_type)='xnat:projectdata'"
    elif item.kind == "user":
        clause = " AND lower(xsi_type)='xdat:user'"
    return req.state.store.query(
        f"SELECT * FROM history WHERE item_id IN ({marks}){clause} ORDER BY id", params
    )


def only_pipeline_name(name: str) -> str:
    """``getOnlyPipelineName``: the name without folders and without its extension.

    Args:
        name: The workflow's ``pipeline_name``.

    Returns:
        ``/pipelines/x/DicomToNifti.xml`` → ``DicomToNifti``.
    """
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def java_date(moment: datetime, pattern: str) -> str:
    """Format a time with the common ``SimpleDateFormat`` letters (others stay literal).

    Args:
        moment: The time.
        pattern: ``yyyy-MM-dd HH:mm:ss.SSS`` style pattern.

    Returns:
        The text.
    """

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        letter, width = token[0], len(token)
        if letter == "'":
            return token[1:-1]
        values = {
            "y": f"{moment.year:04d}" if width != 2 else f"{moment.year % 100:02d}",
            "M": moment.strftime("%b") if width == 3 else f"{moment.month:0{width}d}",
            "d": f"{moment.day:0{width}d}",
            "H": f"{moment.hour:0{width}d}",
            "h": f"{(moment.hour % 12) or 12:0{width}d}",
            "m": f"{moment.minute:0{width}d}",
            "s": f"{moment.second:0{width}d}",
            "S": f"{moment.microsecond // 1000:0{width}d}",
            "a": "AM" if moment.hour < 12 else "PM",
            "E": moment.strftime("%a"),
        }
        return values[letter]

    return JAVA_DATE.sub(one, pattern)


def _date(text: str, date_format: str | None) -> Any:
    moment = parse_time(text)
    if moment is None:
        return None
    return epoch_ms(text) if date_format is None else java_date(moment, date_format)


def _events(req: EmuRequest, item: _Item) -> list[dict[str, Any]]:
    date_format = req.query.get("dateFormat")
    events: list[tuple[float, dict[str, Any]]] = []
    taken: set[int] = set()
    for row in _workflows(req, item):
        event: dict[str, Any] = {
            "event_id": int(row["wrk_workflowData_id"]),
            "event_action": only_pipeline_name(row["pipeline_name"]),
            "event_date": _date(row["launch_time"], date_format),
            "event_user": row["create_user"] or None,
            "event_type": row["type"] or None,
            "event_reason": row["justification"] or None,
            "event_category": row["category"] or None,
            "event_status": row["status"] or None,
            "changesets": [],
        }
        taken.add(event["event_id"])
        events.append((_sort_key(row["launch_time"]), event))
    for row in _history(req, item):
        number = epoch_ms(row["timestamp"]) or 0
        while number in taken:
            number += 1
        taken.add(number)
        event = {
            "event_id": number,
            "event_action": row["action"],
            "event_date": _date(row["timestamp"], date_format),
            "event_user": row["login"],
            "event_type": "WEB_SERVICE",
            "event_reason": row["details"] or None,
            "event_category": "DATA",
            "event_status": "Complete",
            "changesets": [],
        }
        events.append((_sort_key(row["timestamp"]), event))
    events.sort(key=lambda pair: (pair[0], pair[1]["event_id"]))
    return [{k: v for k, v in e.items() if v is not None} for _, e in events]


def _sort_key(text: str) -> float:
    moment = parse_time(text)
    return moment.timestamp() if moment else 0.0


def _page(xsi_type: str, key: str, events: list[dict[str, Any]]) -> Response:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(e.get(k, '')))}</td>"
            for k in ("event_date", "event_action", "event_user", "event_status")
        )
        + "</tr>"
        for e in events
    )
    page = (
        f"<html><head><title>History of {html.escape(xsi_type)} {html.escape(key)}</title>"
        "</head><body><table><tr><th>Date</th><th>Action</th><th>User</th><th>Status</th></tr>"
        f"{rows}</table></body></html>"
    )
    return wire.text_response(page, media_type="text/html")


@route("GET", "/data/services/audit/{xsi_type}/{item_id}")
def item_history(req: EmuRequest) -> Response:
    """``GET /data/services/audit/{xsiType}/{id}``: the item's workflow-based history."""
    xsi_type, key = req.params["xsi_type"], req.params["item_id"]
    item = _find(req, xsi_type, key) or _from_history(req, xsi_type, key)
    if item is None or not _readable(req, item):
        raise HTTPError(404, f"Unable to find {xsi_type} {key}")
    events = _events(req, item)
    if req.fmt == "html":
        return _page(xsi_type, key, events)
    return wire.json_response({"events": events})


ROUTES = [item_history]
