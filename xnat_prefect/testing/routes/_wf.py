"""Workflow engine of the emulator (``wrk:workflowData`` rows and their progress).

:mod:`workflows` serves the REST routes and re-exports the functions other modules call
(:func:`create_workflow`, :func:`set_workflow_status`, :func:`get_workflow`, :func:`tick`).
A workflow created with a ``planned_outcome`` is driven here (Queued → Running → outcome after
``run_seconds``/``timing.job_run_seconds``, or after ``timing.job_polls`` status reads); one
created with ``planned_outcome=None`` is driven by its owner, which may register a poll hook
(:func:`add_poll_hook`) to advance on reads. Emulator-only columns: ``planned_outcome``,
``queued_at``/``started_at`` (wall-clock seconds, so a restarted emulator on the same data dir
keeps sensible timings), ``run_seconds`` and ``polls``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from xnat_prefect.testing.http import EmuRequest
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    wrk_workflowData_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    data_type TEXT NOT NULL DEFAULT '',
    pipeline_name TEXT NOT NULL,
    launch_time TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'Queued',
    current_step_id TEXT NOT NULL DEFAULT '',
    current_step_launch_time TEXT NOT NULL DEFAULT '',
    next_step_id TEXT NOT NULL DEFAULT '',
    step_description TEXT NOT NULL DEFAULT '',
    percentage_complete TEXT NOT NULL DEFAULT '0.0',
    external_id TEXT NOT NULL DEFAULT '',
    comments TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '',
    justification TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    job_id TEXT NOT NULL DEFAULT '',
    create_user TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL DEFAULT '',
    src TEXT NOT NULL DEFAULT '',
    mod_time TEXT NOT NULL DEFAULT '',
    planned_outcome TEXT,
    queued_at REAL NOT NULL DEFAULT 0,
    started_at REAL,
    run_seconds REAL,
    polls INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS workflows_item ON workflows(id, pipeline_name);
"""

XSI_TYPE = "wrk:workflowData"
TERMINAL_PREFIXES = ("Complete", "Failed", "Killed")
OUTCOMES = ("Complete", "Failed", "Killed", "Hang")
# wrk:workflowData field name (lower-cased) → column
DOC_NAMES = {
    "wrk_workflowData_id": "wrk_workflowData_id",
    "id": "ID",
    "data_type": "data_type",
    "external_id": "externalID",
    "pipeline_name": "pipeline_name",
    "launch_time": "launch_time",
    "status": "status",
    "current_step_id": "current_step_id",
    "current_step_launch_time": "current_step_launch_time",
    "next_step_id": "next_step_id",
    "step_description": "step_description",
    "percentage_complete": "percentageComplete",
    "comments": "comments",
    "details": "details",
    "justification": "justification",
    "description": "description",
    "job_id": "jobID",
    "create_user": "create_user",
    "category": "category",
    "type": "type",
    "src": "src",
}


PollHook = Callable[[EmulatorState, int], None]
_POLL_HOOKS: list[PollHook] = []


def add_poll_hook(hook: PollHook) -> None:
    """Register a function called (inside the store lock) each time a workflow's status is read.

    Args:
        hook: ``hook(state, workflow_id)``; modules driving their own workflows use it to
            advance on polls (``timing.job_polls``).
    """
    if hook not in _POLL_HOOKS:
        _POLL_HOOKS.append(hook)


def is_terminal(status: str) -> bool:
    """Whether a workflow status is final (XNAT's test: starts with Complete/Failed/Killed).

    Args:
        status: The status text.

    Returns:
        The truth value.
    """
    return status.startswith(TERMINAL_PREFIXES)


def queue_delay(state: EmulatorState) -> float:
    """How long launched work stays Queued before it starts running.

    Args:
        state: Emulator state.

    Returns:
        Seconds (a fraction of ``timing.job_run_seconds``, at most 0.2 s).
    """
    return min(0.2, max(0.0, float(state.timing.job_run_seconds)) / 4)


def run_is_due(
    state: EmulatorState, started_at: float | None, polls: int, run_seconds: float | None = None
) -> bool:
    """Whether a Running job has run long enough (or been polled often enough) to finish.

    Args:
        state: Emulator state.
        started_at: Wall-clock start of the run.
        polls: Status reads so far.
        run_seconds: This job's own run time (None: ``timing.job_run_seconds``).

    Returns:
        True once ``timing.job_polls`` reads happened (when set), else once the run time passed.
    """
    if state.timing.job_polls is not None:
        return polls >= int(state.timing.job_polls)
    duration = state.timing.job_run_seconds if run_seconds is None else run_seconds
    return started_at is not None and time.time() - started_at >= duration


def create_workflow(
    state: EmulatorState,
    *,
    data_id: str,
    data_type: str,
    pipeline_name: str,
    project: str,
    login: str,
    status: str = "Queued",
    planned_outcome: str | None = "Complete",
    details: str = "",
    justification: str = "",
    category: str = "DATA",
    workflow_type: str = "PROCESS",
    comments: str = "",
    run_seconds: float | None = None,
) -> int:
    """Open a workflow row (what every launch does first).

    Args:
        state: Emulator state.
        data_id: ID of the item the work is about (experiment accession ID, project ID…).
        data_type: Its xsi type.
        pipeline_name: Pipeline / wrapper name.
        project: Project (``externalID``).
        login: Creating user.
        status: Initial status.
        planned_outcome: ``Complete``, ``Failed``, ``Killed`` or ``Hang`` to have this module
            drive the run; None when the caller drives it with :func:`set_workflow_status`.
        details: Details text.
        justification: Justification text.
        category: Event category.
        workflow_type: Event type.
        comments: Comments text.
        run_seconds: How long this run stays Running (None: ``timing.job_run_seconds``).

    Returns:
        The new ``wrk_workflowData_id``.

    Raises:
        ValueError: For an unknown planned outcome.
    """
    if planned_outcome is not None and planned_outcome not in OUTCOMES:
        raise ValueError(f"unknown planned outcome {planned_outcome!r}; use one of {OUTCOMES}")
    stamp = now_text()
    return state.store.execute(
        "INSERT INTO workflows(id, data_type, pipeline_name, launch_time, status, external_id, "
        "create_user, details, justification, category, type, comments, mod_time, "
        "planned_outcome, queued_at, percentage_complete, run_seconds) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            data_id,
            data_type,
            pipeline_name,
            stamp,
            status,
            project,
            login,
            details,
            justification,
            category,
            workflow_type,
            comments,
            stamp,
            planned_outcome,
            time.time(),
            "100.0" if status.startswith("Complete") else "0.0",
            run_seconds,
        ),
    )


SETTABLE = {
    "details",
    "comments",
    "step_description",
    "percentage_complete",
    "current_step_id",
    "job_id",
    "justification",
    "description",
    "data_type",
    "id",
    "external_id",
    "pipeline_name",
    "started_at",
    "next_step_id",
}


def set_workflow_status(state: EmulatorState, wf_id: int, status: str, **fields: Any) -> None:
    """Change a workflow's status (and other columns).

    Args:
        state: Emulator state.
        wf_id: ``wrk_workflowData_id``.
        status: New status.
        **fields: Other columns to set (``details``, ``comments``, ``step_description``,
            ``percentage_complete``, ``current_step_id``, ``job_id``…).

    Raises:
        ValueError: For a column that cannot be set this way.
    """
    unknown = set(fields) - SETTABLE
    if unknown:
        raise ValueError(
            f"cannot set workflow columns {sorted(unknown)}; allowed: {sorted(SETTABLE)}"
        )
    values = dict(fields)
    values["status"] = status
    values["mod_time"] = now_text()
    if status.startswith("Complete"):
        values.setdefault("percentage_complete", "100.0")
    sets = ", ".join(f"{column}=?" for column in values)
    state.store.execute(
        f"UPDATE workflows SET {sets} WHERE wrk_workflowData_id=?", (*values.values(), wf_id)
    )


def get_workflow(state: EmulatorState, wf_id: int | str) -> Row | None:
    """One workflow row.

    Args:
        state: Emulator state.
        wf_id: ``wrk_workflowData_id``.

    Returns:
        The row, or None.
    """
    return state.store.one("SELECT * FROM workflows WHERE wrk_workflowData_id=?", (str(wf_id),))


def _advance(state: EmulatorState, row: Row) -> None:
    """Move a self-driven workflow along (Queued → Running → planned outcome)."""
    outcome = row["planned_outcome"]
    if outcome is None or is_terminal(row["status"]):
        return
    wf_id = int(row["wrk_workflowData_id"])
    polls = int(row["polls"])
    status = str(row["status"])
    started_at = row["started_at"]
    if status == "Queued":
        waited = time.time() - float(row["queued_at"]) >= queue_delay(state)
        if not (waited or (state.timing.job_polls is not None and polls >= 1)):
            return
        started_at = time.time()
        set_workflow_status(
            state,
            wf_id,
            "Running",
            started_at=started_at,
            current_step_id="1",
            step_description="Running",
            percentage_complete="50.0",
        )
        status = "Running"
    if status != "Running" or outcome == "Hang":
        return
    if not run_is_due(state, started_at, polls, row["run_seconds"]):
        return
    if outcome == "Complete":
        set_workflow_status(state, wf_id, "Complete", step_description="Complete")
    elif outcome == "Failed":
        set_workflow_status(
            state,
            wf_id,
            "Failed",
            step_description="Failed",
            details=f"{row['pipeline_name']} step 1 exited with status 1 (emulated failure)",
        )
    else:
        set_workflow_status(state, wf_id, "Killed", step_description="Killed")


def record_poll(state: EmulatorState, wf_id: int) -> None:
    """Count one status read of a workflow and let it progress accordingly.

    Args:
        state: Emulator state.
        wf_id: ``wrk_workflowData_id``.
    """
    with state.store.tx():
        state.store.execute(
            "UPDATE workflows SET polls = polls + 1 WHERE wrk_workflowData_id=?", (wf_id,)
        )
        row = get_workflow(state, wf_id)
        if row is None:
            return
        _advance(state, row)
        for hook in _POLL_HOOKS:
            hook(state, wf_id)


def tick(state: EmulatorState) -> bool:
    """Advance every self-driven workflow on time.

    Args:
        state: Emulator state.

    Returns:
        True while some workflow will still progress without client polls.
    """
    pending = False
    rows = state.store.query(
        "SELECT * FROM workflows WHERE planned_outcome IS NOT NULL "
        "AND status IN ('Queued', 'Running')"
    )
    for row in rows:
        with state.store.tx():
            fresh = get_workflow(state, row["wrk_workflowData_id"])
            if fresh is None:
                continue
            _advance(state, fresh)
            after = get_workflow(state, row["wrk_workflowData_id"])
        if after is None or is_terminal(after["status"]) or after["planned_outcome"] == "Hang":
            continue
        if after["status"] == "Queued" or state.timing.job_polls is None:
            pending = True
    return pending


# ----------------------------------------------------------------- permissions and rendering


def _project_of(state: EmulatorState, row: Row) -> str:
    return str(row["external_id"] or "")


def can_read_workflow(req: EmuRequest, row: Row) -> bool:
    """Whether the caller may see a workflow (admins, its creator, readers of its project).

    Args:
        req: The request.
        row: Workflow row.

    Returns:
        The permission.
    """
    user = req.user
    if user is None:
        return False
    if user.is_admin or row["create_user"] == user.login:
        return True
    project = _project_of(req.state, row)
    return bool(project) and req.state.can_read(user, project)


def data_fields(row: Row) -> dict[str, Any]:
    """A workflow's fields with the item-document spelling.

    Args:
        row: Workflow row.

    Returns:
        The fields (the numeric id as an int, everything else text).
    """
    fields: dict[str, Any] = {DOC_NAMES[c]: row[c] for c in DOC_NAMES}
    fields["wrk_workflowData_id"] = int(row["wrk_workflowData_id"])
    return fields


TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d",
)


def parse_time(text: str | None) -> datetime | None:
    """Read a workflow time the way XFT's date properties accept it.

    Args:
        text: ``2013-05-20 13:51:25.089`` (also with ``T``, without milliseconds, or a date).

    Returns:
        The naive local time, or None when blank or unreadable.
    """
    value = (text or "").strip()
    for pattern in TIME_FORMATS:
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            continue
    return None


def epoch_ms(text: str | None) -> int | None:
    """A workflow time as epoch milliseconds (XNAT's JSON dates).

    Args:
        text: The stored time text.

    Returns:
        Milliseconds, or None when unreadable.
    """
    moment = parse_time(text)
    return None if moment is None else int(moment.timestamp() * 1000)


def workflow_json(row: Row) -> dict[str, Any]:
    """A workflow as the batch-launch plugin's ``GET /xapi/workflows/{id}`` shows it.

    Args:
        row: Workflow row.

    Returns:
        The JSON object (dates as epoch milliseconds).
    """
    return {
        "wfid": int(row["wrk_workflowData_id"]),
        "id": row["id"],
        "label": row["id"],
        "itemTime": None,
        "externalId": row["external_id"],
        "pipelineName": row["pipeline_name"],
        "dataType": row["data_type"],
        "comments": row["comments"],
        "details": row["details"],
        "justification": row["justification"],
        "description": row["description"],
        "src": row["src"],
        "type": row["type"],
        "category": row["category"],
        "currentStepLaunchTime": epoch_ms(row["current_step_launch_time"]),
        "launchTime": epoch_ms(row["launch_time"]),
        "currentStepId": row["current_step_id"],
        "status": row["status"],
        "createUser": row["create_user"],
        "nextStepId": row["next_step_id"],
        "stepDescription": row["step_description"],
        "percentageComplete": row["percentage_complete"],
        "jobId": row["job_id"],
        "modTime": epoch_ms(row["mod_time"]),
    }
