"""Container Service runs for the emulator: launching, the life cycle, kills, polls.

Nothing runs for real: :func:`launch` opens a workflow and a hidden container record; the
sweeper (:func:`tick`) and status polls (:func:`on_workflow_poll`) then move it along:

``queued`` (workflow ``Queued``) → container ``Created`` then ``Running`` (workflow ``Running``,
its ``comments`` = the container id) → ``Complete`` | ``Failed`` (workflow ``Failed (Running)``)
| ``Killed`` after ``timing.job_run_seconds`` or ``timing.job_polls`` status reads; ``Hang``
stays Running until killed. A launch whose XNAT input cannot be resolved ends as workflow
``Failed (Staging)`` without a container; a wrapper not enabled for the site/project gives a
"failure" LaunchReport (HTTP 500, as the Container Service answers) and a ``Failed (Staging)``
workflow when one was opened.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes import workflows
from xnat_prefect.testing.routes._cs import (
    ENABLED_KEY,
    XNAT_TYPES,
    enabled_for,
    is_enabled,
    now_ms,
    outcomes,
    resolve_item,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

# ----------------------------------------------------------------- life cycle


def _history_item(
    status: str, entity: str, entity_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": int(time.time() * 1e6) % 10**9,
        "status": status,
        "entity-type": entity,
        "entity-id": entity_id,
        "time-recorded": now_ms(),
        "external-timestamp": None,
        "message": extra.get("message"),
        "exitCode": extra.get("exit_code"),
    }


def _update(state: EmulatorState, row_id: int, **values: Any) -> None:
    sets = ", ".join(f"{k}=?" for k in values)
    state.store.execute(f"UPDATE cs_containers SET {sets} WHERE id=?", (*values.values(), row_id))


def _set_status(
    state: EmulatorState,
    row: Row,
    status: str,
    entity: str,
    entity_id: str | None = None,
    **extra: Any,
) -> None:
    history = json.loads(row["history"])
    history.append(_history_item(status, entity, entity_id, **extra))
    values: dict[str, Any] = {
        "status": status,
        "status_time": now_ms(),
        "history": json.dumps(history),
    }
    if extra.get("exit_code") is not None:
        values["exit_code"] = extra["exit_code"]
    for key in ("stage", "container_id", "started_at", "stdout", "stderr"):
        if key in extra:
            values[key] = extra[key]
    _update(state, int(row["id"]), **values)


def _workflow(state: EmulatorState, row: Row, status: str, **fields: Any) -> None:
    if row["workflow_id"]:
        workflows.set_workflow_status(state, int(row["workflow_id"]), status, **fields)


def _total_polls(state: EmulatorState, row: Row) -> int:
    polls = int(row["polls"])
    if row["workflow_id"]:
        wf = workflows.get_workflow(state, row["workflow_id"])
        polls += int(wf["polls"]) if wf is not None else 0
    return polls


def _fresh(state: EmulatorState, row_id: int) -> Row:
    row = state.store.one("SELECT * FROM cs_containers WHERE id=?", (row_id,))
    assert row is not None
    return row


def advance(state: EmulatorState, row_id: int) -> None:
    """Move one launch along its life cycle if its time (or poll count) has come.

    Args:
        state: Emulator state.
        row_id: ``cs_containers.id``.
    """
    with state.store.tx():
        row = _fresh(state, row_id)
        polls = _total_polls(state, row)
        if row["stage"] == "queued":
            waited = time.time() - float(row["queued_at"]) >= workflows.queue_delay(state)
            if not (waited or (state.timing.job_polls is not None and polls >= 1)):
                return
            if row["error"]:
                _update(state, row_id, stage="failed")
                _workflow(state, row, "Failed (Staging)", details=row["error"])
                return
            container_id = secrets.token_hex(32)
            _set_status(state, row, "Created", "system", stage="created", container_id=container_id)
            _workflow(state, row, "Queued", comments=container_id)
            row = _fresh(state, row_id)
        if row["stage"] == "created":
            line = f"Emulated run of {row['docker_image']}: {row['command_line']}\n"
            _set_status(
                state, row, "Running", "event", stage="running", started_at=time.time(), stdout=line
            )
            _workflow(state, row, "Running", step_description="Running", percentage_complete="50.0")
            row = _fresh(state, row_id)
        if row["stage"] != "running" or row["outcome"] == "Hang":
            return
        if not workflows.run_is_due(state, row["started_at"], polls):
            return
        if row["outcome"] == "Failed":
            message = "Emulated failure: the command exited with status 1"
            _set_status(
                state,
                row,
                "Failed",
                "event",
                exit_code="1",
                stage="done",
                stderr=f"{message}\n",
                message=message,
            )
            _workflow(state, row, "Failed (Running)", details=message, step_description="Failed")
        elif row["outcome"] == "Killed":
            kill(state, row, "system")
        else:
            _set_status(state, row, "Finalizing", "system")
            row = _fresh(state, row_id)
            _set_status(
                state,
                row,
                "Complete",
                "event",
                exit_code="0",
                stage="done",
                stdout=str(row["stdout"]) + "Done.\n",
            )
            _workflow(state, row, "Complete", step_description="Complete")


def kill(state: EmulatorState, row: Row, login: str) -> None:
    """Kill a container (and its workflow) unless it already finished.

    Args:
        state: Emulator state.
        row: Container row.
        login: Who killed it (recorded in the history).
    """
    with state.store.tx():
        fresh = _fresh(state, int(row["id"]))
        if fresh["stage"] in ("done", "failed"):
            return
        _set_status(state, fresh, "Killed", "user", login, exit_code="137", stage="done")
        _workflow(state, fresh, "Killed", step_description="Killed", details=f"Killed by {login}")


def on_workflow_poll(state: EmulatorState, wf_id: int) -> None:
    """Poll hook for :mod:`workflows`: a workflow read advances its container.

    Args:
        state: Emulator state.
        wf_id: Workflow id.
    """
    rows = state.store.query(
        "SELECT id FROM cs_containers WHERE workflow_id=? "
        "AND stage IN ('queued', 'created', 'running')",
        (str(wf_id),),
    )
    for row in rows:
        advance(state, int(row["id"]))


def tick(state: EmulatorState) -> bool:
    """Advance every unfinished launch on time.

    Args:
        state: Emulator state.

    Returns:
        True while some launch will still progress without client polls.
    """
    pending = False
    rows = state.store.query(
        "SELECT id FROM cs_containers WHERE stage IN ('queued','created','running')"
    )
    for row in rows:
        advance(state, int(row["id"]))
        after = _fresh(state, int(row["id"]))
        if after["stage"] == "queued":
            pending = True
        elif after["stage"] == "running" and after["outcome"] != "Hang":
            pending = pending or state.timing.job_polls is None
    return pending


# ----------------------------------------------------------------- launching


def _outcome_for(state: EmulatorState, command: dict[str, Any], wrapper: dict[str, Any]) -> str:
    table = outcomes(state)
    for key in (str(wrapper["id"]), str(wrapper["name"]), str(command.get("name", ""))):
        if key in table:
            return table[key]
    return table.get("default", "Complete")


def _input_problems(
    state: EmulatorState, wrapper: dict[str, Any], params: dict[str, str], project: str | None
) -> tuple[str, tuple[str, str, str] | None]:
    """(error text, the item of the first XNAT-typed external input) for a launch."""
    error = ""
    root: tuple[str, str, str] | None = None
    for item in wrapper.get("external-inputs", []):
        name = str(item.get("name", ""))
        kind = str(item.get("type", "")).lower()
        value = params.get(name)
        if value is None:
            if item.get("required") and not error:
                error = f"Missing required input {name}"
            continue
        if kind not in XNAT_TYPES:
            continue
        resolved = resolve_item(state, value, project)
        if root is None:
            root = resolved if resolved[0] else (value, XNAT_TYPES[kind], project or "")
        if not resolved[0] and not error:
            error = f"Could not resolve input {name} = {value}: no such {kind} is visible"
    return error, root


def launch(
    state: EmulatorState,
    *,
    command: dict[str, Any],
    wrapper: dict[str, Any],
    params: dict[str, str],
    project: str | None,
    login: str,
    root: str | None,
) -> tuple[dict[str, Any], int]:
    """Queue one container launch the way the Container Service does.

    Args:
        state: Emulator state.
        command: The command.
        wrapper: The wrapper to run.
        params: Input values.
        project: Launch project (None for site-level launches).
        login: Launching user.
        root: The ``root/{name}`` URL segment (None for the deprecated URLs).

    Returns:
        ``(LaunchReport, HTTP status)``.
    """
    command_id, wrapper_id = int(command["id"]), int(wrapper["id"])
    error, item = _input_problems(state, wrapper, params, project)
    if root is not None and root in params:  # the workflow hangs on the root input's item
        resolved = resolve_item(state, params[root], project)
        raw = (params[root], "xnat:experimentData", project or "")
        item = resolved if resolved[0] else (item or raw)
    wf_id = None
    if item is not None:
        wf_id = workflows.create_workflow(
            state,
            data_id=item[0],
            data_type=item[1],
            pipeline_name=str(wrapper["name"]),
            project=project or item[2],
            login=login,
            planned_outcome=None,
            justification="Container launch",
        )
    enabled = enabled_for(state, wrapper_id) and (
        project is None or enabled_for(state, wrapper_id, project)
    )
    if not enabled:
        where = f"project {project}" if project else "the site"
        message = f'The command wrapper "{wrapper["name"]}" is not enabled for {where}.'
        if wf_id is not None:
            workflows.set_workflow_status(state, wf_id, "Failed (Staging)", details=message)
        report = {"status": "failure", "message": message, "params": params}
        return {**report, "command-id": command_id, "wrapper-id": wrapper_id}, 500
    line = str(command.get("command-line", ""))
    for key, value in params.items():
        line = line.replace(f"#{key.upper()}#", value).replace(f"#{key}#", value)
    externals = {str(i.get("name")) for i in wrapper.get("external-inputs", [])}
    inputs = [
        {
            "id": index + 1,
            "type": "wrapper_external" if key in externals else "raw",
            "name": key,
            "value": value,
            "sensitive": False,
        }
        for index, (key, value) in enumerate(params.items())
    ]
    state.store.execute(
        "INSERT INTO cs_containers(error, command_id, wrapper_id, workflow_id, user_id, project, "
        "docker_image, command_line, inputs, outcome, queued_at) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
        (
            error,
            command_id,
            wrapper_id,
            None if wf_id is None else str(wf_id),
            login,
            project or (item[2] if item else None),
            str(command.get("image", "")),
            line,
            json.dumps(inputs),
            _outcome_for(state, command, wrapper),
            time.time(),
        ),
    )
    reported = str(wf_id) if root is not None and root in params and wf_id is not None else None
    return success_report(params, reported), 200


def success_report(
    params: dict[str, str], workflow_id: str | None, command_id: int = 0, wrapper_id: int = 0
) -> dict[str, Any]:
    """A "success" LaunchReport.

    Args:
        params: The launch's input values.
        workflow_id: The workflow id, or None for ``"To be assigned"``.
        command_id: ``command-id`` as the URL gave it (0 when launched by wrapper id).
        wrapper_id: ``wrapper-id`` as the URL gave it (0 when launched by command + name).

    Returns:
        The report.
    """
    return {
        "status": "success",
        "params": params,
        "id": None,
        "command-id": command_id,
        "wrapper-id": wrapper_id,
        "workflow-id": workflow_id or "To be assigned",
    }


# ----------------------------------------------------------------- request helpers


def launch_params(req: EmuRequest) -> dict[str, str]:
    """A launch's input values: the JSON body object, else query and form parameters.

    Args:
        req: The request.

    Returns:
        Input name → value (as text).

    Raises:
        HTTPError: 400 for a JSON body that is not an object.
    """
    if req.content_type == "application/json" and req.body_path is not None:
        body = req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "There was an error in the request: send a JSON object")
        return {str(k): v if isinstance(v, str) else wire.cell(v) for k, v in body.items()}
    return {**req.form, **dict(req.query.items())}


def bulk_targets(text: str) -> list[str]:
    """The targets of a bulk launch: its root input is a JSON array.

    Args:
        text: The root input's value.

    Returns:
        The targets as text.

    Raises:
        HTTPError: 400 when it is not a JSON array.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HTTPError(400, f"Bad request:\n{exc}") from exc
    if not isinstance(value, list):
        raise HTTPError(400, "Bad request:\nThe root input must be a JSON array of targets.")
    return [str(v) for v in value]


# ----------------------------------------------------------------- control API (not XNAT)


@route(("GET", "PUT"), "/emulator/containers/enabled", auth=False)
def plugin_switch(req: EmuRequest) -> Response:
    """``GET|PUT /emulator/containers/enabled`` (``{"enabled": bool}``): install/uninstall."""
    if req.method == "PUT":
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise HTTPError(400, 'Send {"enabled": true|false}.')
        req.state.extras[ENABLED_KEY] = body["enabled"]
    return wire.json_response({"enabled": is_enabled(req.state)})


@route(("GET", "POST", "DELETE"), "/emulator/containers/outcomes", auth=False)
def planned_outcomes(req: EmuRequest) -> Response:
    """``POST /emulator/containers/outcomes`` JSON ``{wrapper id|name|"default": outcome}``."""
    table = outcomes(req.state)
    if req.method == "DELETE":
        table.clear()
        table["default"] = "Complete"
    elif req.method == "POST":
        body = req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "Send a JSON object of wrapper id or name to outcome.")
        bad = {k: v for k, v in body.items() if v not in workflows.OUTCOMES}
        if bad:
            raise HTTPError(400, f"Bad outcomes {bad}; use one of {workflows.OUTCOMES}.")
        table.update({str(k): str(v) for k, v in body.items()})
    return wire.json_response(dict(table))
