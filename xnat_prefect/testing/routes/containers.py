"""Container Service routes (the XNAT ``containers`` plugin, as seen by clients).

* Commands: ``GET /xapi/commands`` (array; wrappers under ``xnat``; ``name``/``version``/
  ``image`` filters), ``GET /xapi/commands/{id}``, ``POST /xapi/commands`` → 201 + bare id,
  ``POST /xapi/commands/{id}`` full replace (unknown → 500; ``PUT`` → 405),
  ``DELETE /xapi/commands/{id}`` → 204 even when unknown, ``POST /xapi/commands/{id}/wrappers``
  → 201 + id, ``DELETE /xapi/wrappers/{id}`` → 204, ``GET /xapi/commands/available``.
* Enablement (new wrappers start disabled everywhere): site
  ``PUT /xapi/commands/{cid}/wrappers/{name}/enabled|disabled``,
  ``PUT /xapi/wrappers/{wid}/enabled|disabled``, ``GET .../enabled`` → ``true|false``; project
  forms under ``/xapi/projects/{P}/...`` → ``{"enabled-for-site", "enabled-for-project",
  "project"}``. Wrapper configs: ``GET [/xapi/projects/{P}]/wrappers/{wid}/config``.
* Launch: every URL form (``root/{x}/launch`` and the deprecated ones, ``wrapper`` or
  ``wrappers``) with a JSON body or query/form params → LaunchReport (see :mod:`_cs_run`).
  Unknown wrapper → "success" with ``"workflow-id": "To be assigned"`` and nothing runs;
  unknown project → 500 "There was an error in the request : null".
* Containers: ``GET /xapi/containers``, ``POST /xapi/containers`` (filter body ignored),
  ``GET /xapi/projects/{P}/containers``, ``GET|DELETE /xapi/containers/{id}`` (404 "No container
  with ID {id}"), ``POST [/xapi/projects/{P}]/xapi/containers/{id}/kill``, logs
  ``/logs`` (zip) and ``/logs/{stdout|stderr}`` (text, 204 when empty, 500 when unknown).
* Batch-launch plugin: ``GET /xapi/workflows/{id}`` (a workflow as a JSON object).

Control routes (not XNAT): ``GET|PUT /emulator/containers/enabled`` (``{"enabled": false}``
uninstalls the plugin: every route above answers 404 and ``/xapi/plugins`` drops it) and
``GET|POST|DELETE /emulator/containers/outcomes`` (JSON ``{wrapper id or name: "Complete" |
"Failed" | "Killed" | "Hang", "default": ...}``).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route, route
from xnat_prefect.testing.routes import _cs, _cs_run, workflows
from xnat_prefect.testing.routes._cs import SCHEMA, is_enabled
from xnat_prefect.testing.routes._cs_run import planned_outcomes, plugin_switch, tick
from xnat_prefect.testing.store import Row

__all__ = ["ROUTES", "SCHEMA", "is_enabled", "tick"]

workflows.add_poll_hook(_cs_run.on_workflow_poll)
CS = "/xapi"


def _require_cs(req: EmuRequest) -> None:
    if not is_enabled(req.state):
        raise HTTPError(
            404,
            f"XNAT emulator: no route for {req.method} {req.path} (the Container Service plugin "
            "is not installed; PUT /emulator/containers/enabled to install it)",
        )


def _admin(req: EmuRequest) -> None:
    _require_cs(req)
    if req.user is None or not req.user.is_admin:
        raise HTTPError(403, "")


# ----------------------------------------------------------------- commands


@route("GET", "/xapi/commands")
def list_commands(req: EmuRequest) -> Response:
    """``GET /xapi/commands[?name=&version=&image=]``: every command with its wrappers."""
    _require_cs(req)
    if req.query.get("version") and not req.query.get("name"):
        raise HTTPError(400, 'Bad request:\nIf "version" is specified, must specify "name" too.')
    commands = _cs.all_commands(req.state)
    for key in ("name", "version", "image"):
        wanted = req.query.get(key)
        if wanted:
            commands = [c for c in commands if str(c.get(key, "")) == wanted]
    return wire.json_response(commands)


def _command_body(req: EmuRequest) -> dict[str, Any]:
    body = req.json()
    problems = _cs.validate_command(body)
    if problems:
        raise HTTPError(400, "Invalid command:\n\t" + "\n\t".join(problems))
    assert isinstance(body, dict)
    return body


@route("POST", "/xapi/commands")
def create_command(req: EmuRequest) -> Response:
    """``POST /xapi/commands`` (admin): store a command → 201 with the bare new id."""
    _admin(req)
    body = _command_body(req)
    body.pop("id", None)
    if req.query.get("image"):
        body["image"] = req.query["image"]
    for other in _cs.all_commands(req.state):
        if all(other.get(k) == body.get(k) for k in ("name", "version", "image")):
            raise HTTPError(
                400,
                f"Bad request:\nA command with name {body.get('name')}, version "
                f"{body.get('version', '')} and image {body.get('image')} already exists.",
            )
    body["xnat"] = [{k: v for k, v in w.items() if k != "id"} for w in body.get("xnat", [])]
    command_id = req.state.store.next_value("cs_command")
    _cs.save_command(req.state, _cs.prepare_command(req.state, body, command_id))
    return wire.json_response(command_id, status_code=201)


@route("GET", "/xapi/commands/{command_id:int}")
def get_command(req: EmuRequest) -> Response:
    """``GET /xapi/commands/{id}``: one command (404 when unknown)."""
    _require_cs(req)
    command = _cs.get_command(req.state, req.params["command_id"])
    if command is None:
        raise HTTPError(404, f"Could not find command with id {req.params['command_id']}.")
    return wire.json_response(command)


@route("POST", "/xapi/commands/{command_id:int}")
def replace_command(req: EmuRequest) -> Response:
    """``POST /xapi/commands/{id}`` (admin): full replace; omitting ``xnat`` drops wrappers."""
    _admin(req)
    command_id = int(req.params["command_id"])
    if _cs.get_command(req.state, command_id) is None:
        raise HTTPError(500, f"An unexpected error occurred: no command entity {command_id}")
    body = _command_body(req)
    body.setdefault("xnat", [])
    _cs.save_command(req.state, _cs.prepare_command(req.state, body, command_id))
    return wire.text_response("")


@route("DELETE", "/xapi/commands/{command_id:int}")
def delete_command(req: EmuRequest) -> Response:
    """``DELETE /xapi/commands/{id}`` (admin): 204, even for unknown ids."""
    _admin(req)
    _cs.delete_command(req.state, int(req.params["command_id"]))
    return Response(status_code=204)


@route("POST", "/xapi/commands/{command_id:int}/wrappers")
def add_wrapper(req: EmuRequest) -> Response:
    """``POST /xapi/commands/{id}/wrappers`` (admin): add a wrapper → 201 + its id."""
    _admin(req)
    command = _cs.get_command(req.state, req.params["command_id"])
    if command is None:
        raise HTTPError(404, f"Could not find command with id {req.params['command_id']}.")
    wrapper = req.json()
    if not isinstance(wrapper, dict) or not str(wrapper.get("name") or "").strip():
        raise HTTPError(400, "Invalid command:\n\tCommand wrapper name cannot be blank.")
    wrapper.pop("id", None)
    command["xnat"] = [*command["xnat"], wrapper]
    prepared = _cs.prepare_command(req.state, command, int(command["id"]))
    _cs.save_command(req.state, prepared)
    return wire.json_response(int(prepared["xnat"][-1]["id"]), status_code=201)


@route("DELETE", "/xapi/wrappers/{wrapper_id:int}")
def delete_wrapper(req: EmuRequest) -> Response:
    """``DELETE /xapi/wrappers/{id}`` (admin): 204; 404 when unknown."""
    _admin(req)
    found = _cs.find_wrapper(req.state, wrapper_id=int(req.params["wrapper_id"]))
    if found is None:
        raise HTTPError(404, f"Could not find wrapper with id {req.params['wrapper_id']}.")
    command, wrapper = found
    command["xnat"] = [w for w in command["xnat"] if w["id"] != wrapper["id"]]
    _cs.save_command(req.state, command)
    return Response(status_code=204)


def _available(req: EmuRequest, project: str, xsi_type: str) -> Response:
    return wire.json_response(_cs.available_wrappers(req.state, project, xsi_type))


@route("GET", "/xapi/commands/available")
def available(req: EmuRequest) -> Response:
    """``GET /xapi/commands/available?project=&xsiType=``: wrappers usable on a type."""
    project = _project_id(req, req.query.get("project") or "", launch=False)
    return _available(req, project, req.query.get("xsiType") or "")


@route("GET", "/xapi/projects/{project}/commands/available")
def project_available(req: EmuRequest) -> Response:
    """``GET /xapi/projects/{P}/commands/available?xsiType=``."""
    project = _project_id(req, req.params["project"], launch=False)
    return _available(req, project, req.query.get("xsiType") or "")


# ----------------------------------------------------------------- wrappers: lookup, enablement


def _project_id(req: EmuRequest, ref: str, *, launch: bool) -> str:
    _require_cs(req)
    project_id = req.state.resolve_project(ref)
    if project_id is None or not req.state.can_see_project(req.user, project_id):
        if launch:
            raise HTTPError(500, "There was an error in the request : null")
        raise HTTPError(404, f"Unable to find project {ref}")
    if not req.state.can_read(req.user, project_id):
        raise HTTPError(403, "")
    return project_id


def _wrapper(req: EmuRequest) -> tuple[dict[str, Any], dict[str, Any]] | None:
    params = req.params
    if "wrapper_id" in params:
        return _cs.find_wrapper(req.state, wrapper_id=int(params["wrapper_id"]))
    return _cs.find_wrapper(
        req.state, command_id=int(params["command_id"]), name=params["wrapper_name"]
    )


def _wrapper_or_404(req: EmuRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    found = _wrapper(req)
    if found is None:
        ref = req.params.get("wrapper_id") or req.params.get("wrapper_name")
        raise HTTPError(404, f"Could not find command wrapper {ref}.")
    return found


def _site_enabled(req: EmuRequest) -> Response:
    _admin(req)
    _command, wrapper = _wrapper_or_404(req)
    wid = int(wrapper["id"])
    if req.method == "GET":
        return wire.json_response(_cs.enabled_for(req.state, wid))
    _cs.set_enabled(req.state, wid, "", req.path.endswith("/enabled"))
    return wire.text_response("")


def _project_enabled(req: EmuRequest) -> Response:
    project_id = _project_id(req, req.params["project"], launch=False)
    check = req.state.can_edit if req.method == "GET" else req.state.can_delete
    if not check(req.user, project_id):
        raise HTTPError(403, f"User {req.login} does not have access to project {project_id}.")
    _command, wrapper = _wrapper_or_404(req)
    wid = int(wrapper["id"])
    if req.method == "PUT":
        _cs.set_enabled(req.state, wid, project_id, req.path.endswith("/enabled"))
        return wire.text_response("")
    return wire.json_response(
        {
            "enabled-for-site": _cs.enabled_for(req.state, wid),
            "enabled-for-project": _cs.enabled_for(req.state, wid, project_id),
            "project": project_id,
        }
    )


def _config(req: EmuRequest) -> Response:
    if "project" in req.params:
        _project_id(req, req.params["project"], launch=False)
    _require_cs(req)
    _command, wrapper = _wrapper_or_404(req)
    return wire.json_response(_cs.wrapper_config(wrapper))


SITE_WRAPPER = ("/commands/{command_id:int}/wrappers/{wrapper_name}", "/wrappers/{wrapper_id:int}")
PROJECT_WRAPPER = tuple(f"/projects/{{project}}{p}" for p in SITE_WRAPPER)


def _bind(methods: str | tuple[str, ...], path: str, handler: Any) -> Route:
    def serve(req: EmuRequest) -> Response:
        result: Response = handler(req)
        return result

    serve.__doc__ = f"``{methods} {path}``."
    return route(methods, path)(serve)


WRAPPER_ROUTES: list[Route] = []
for _base in SITE_WRAPPER:
    WRAPPER_ROUTES.append(_bind("GET", f"{CS}{_base}/enabled", _site_enabled))
    WRAPPER_ROUTES.append(_bind("PUT", f"{CS}{_base}/enabled", _site_enabled))
    WRAPPER_ROUTES.append(_bind("PUT", f"{CS}{_base}/disabled", _site_enabled))
    WRAPPER_ROUTES.append(_bind("GET", f"{CS}{_base}/config", _config))
for _base in PROJECT_WRAPPER:
    WRAPPER_ROUTES.append(_bind("GET", f"{CS}{_base}/enabled", _project_enabled))
    WRAPPER_ROUTES.append(_bind("PUT", f"{CS}{_base}/enabled", _project_enabled))
    WRAPPER_ROUTES.append(_bind("PUT", f"{CS}{_base}/disabled", _project_enabled))
    WRAPPER_ROUTES.append(_bind("GET", f"{CS}{_base}/config", _config))


# ----------------------------------------------------------------- launch


def _url_ids(req: EmuRequest) -> tuple[int, int]:
    return int(req.params.get("command_id", 0)), int(req.params.get("wrapper_id", 0))


def _launch(req: EmuRequest) -> Response:
    _require_cs(req)
    project = (
        _project_id(req, req.params["project"], launch=True) if "project" in req.params else None
    )
    params = _cs_run.launch_params(req)
    command_id, wrapper_id = _url_ids(req)
    found = _wrapper(req)
    if found is None:
        return wire.json_response(_cs_run.success_report(params, None, command_id, wrapper_id))
    command, wrapper = found
    report, status = _cs_run.launch(
        req.state,
        command=command,
        wrapper=wrapper,
        params=params,
        project=project,
        login=req.login,
        root=req.params.get("root"),
    )
    report.update({"command-id": command_id, "wrapper-id": wrapper_id})
    return wire.json_response(report, status_code=status)


def _bulk_launch(req: EmuRequest) -> Response:
    _require_cs(req)
    project = (
        _project_id(req, req.params["project"], launch=True) if "project" in req.params else None
    )
    params = _cs_run.launch_params(req)
    root = req.params["root"]
    command_id, wrapper_id = _url_ids(req)
    found = _wrapper(req)
    successes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for target in _cs_run.bulk_targets(params.get(root, "[]")):
        one = {**params, root: target}
        if found is None:
            report = _cs_run.success_report(one, None, command_id, wrapper_id)
        else:
            report, _status = _cs_run.launch(
                req.state,
                command=found[0],
                wrapper=found[1],
                params=one,
                project=project,
                login=req.login,
                root=None,
            )
            report.update({"command-id": command_id, "wrapper-id": wrapper_id})
        (successes if report["status"] == "success" else failures).append(report)
    return wire.json_response(
        {
            "bulk-launch-id": f"bulk-{req.login}{req.state.store.next_value('cs_bulk')}",
            "pipeline-name": found[1]["name"] if found else req.params.get("wrapper_name", ""),
            "successes": successes,
            "failures": failures,
        }
    )


LAUNCH_BASES = (
    "/commands/{command_id:int}/wrappers/{wrapper_name}",
    "/wrappers/{wrapper_id:int}",
    "/projects/{project}/commands/{command_id:int}/wrappers/{wrapper_name}",
    "/projects/{project}/wrappers/{wrapper_id:int}",
    "/projects/{project}/wrapper/{wrapper_id:int}",
)
LAUNCH_ROUTES: list[Route] = []
for _base in LAUNCH_BASES:
    LAUNCH_ROUTES.append(_bind("POST", f"{CS}{_base}/root/{{root}}/launch", _launch))
    LAUNCH_ROUTES.append(_bind("POST", f"{CS}{_base}/launch", _launch))
    LAUNCH_ROUTES.append(_bind("POST", f"{CS}{_base}/root/{{root}}/bulklaunch", _bulk_launch))


# ----------------------------------------------------------------- containers


def _may_control(req: EmuRequest, row: Row) -> bool:
    user = req.user
    if user is None:
        return False
    project = str(row["project"] or "")
    return (
        user.is_admin
        or row["user_id"] == user.login
        or bool(project and req.state.can_delete(user, project))
    )


def _visible(req: EmuRequest, project: str | None = None) -> list[Row]:
    sql = "SELECT * FROM cs_containers WHERE stage IN ('created', 'running', 'done')"
    params: tuple[str, ...] = ()
    if project is not None:
        sql += " AND project=?"
        params = (project,)
    rows = req.state.store.query(sql + " ORDER BY id", params)
    if req.flag("nonfinalized"):
        rows = [r for r in rows if r["stage"] != "done"]
    return [r for r in rows if _may_control(req, r)]


@route("GET", "/xapi/containers")
def list_containers(req: EmuRequest) -> Response:
    """``GET /xapi/containers[?nonfinalized=true]``: the caller's (admins: all) containers."""
    _require_cs(req)
    return wire.json_response([_cs.container_json(r) for r in _visible(req)])


@route("POST", "/xapi/containers")
def query_containers(req: EmuRequest) -> Response:
    """``POST /xapi/containers`` with a paging/filter body: the visible containers."""
    _require_cs(req)
    return wire.json_response([_cs.container_json(r) for r in _visible(req)])


@route("GET", "/xapi/projects/{project}/containers")
def project_containers(req: EmuRequest) -> Response:
    """``GET /xapi/projects/{P}/containers``."""
    project_id = _project_id(req, req.params["project"], launch=False)
    return wire.json_response([_cs.container_json(r) for r in _visible(req, project_id)])


def _container_or_404(req: EmuRequest) -> Row:
    _require_cs(req)
    ref = req.params["container"]
    row = _cs.container_row(req.state, ref)
    if row is None:
        raise HTTPError(404, f"No container with ID {ref}")
    return row


@route("GET", "/xapi/containers/{container}")
def get_container(req: EmuRequest) -> Response:
    """``GET /xapi/containers/{id}``: one container (each read counts as a status poll)."""
    row = _container_or_404(req)
    req.state.store.execute(
        "UPDATE cs_containers SET polls = polls + 1 WHERE id=?", (int(row["id"]),)
    )
    _cs_run.advance(req.state, int(row["id"]))
    fresh = _container_or_404(req)
    data = _cs.container_json(fresh)
    if not _may_control(req, fresh):
        data.update(
            {"command-line": "[REDACTED]", "inputs": [], "history": [], "mounts": [], "env": {}}
        )
    return wire.json_response(data)


@route("DELETE", "/xapi/containers/{container}")
def delete_container(req: EmuRequest) -> Response:
    """``DELETE /xapi/containers/{id}``: 204 (owners and admins)."""
    row = _container_or_404(req)
    if not _may_control(req, row):
        raise HTTPError(403, f"User {req.login} cannot delete container {row['id']}")
    req.state.store.execute("DELETE FROM cs_containers WHERE id=?", (row["id"],))
    return Response(status_code=204)


def _kill(req: EmuRequest) -> Response:
    if "project" in req.params:
        _project_id(req, req.params["project"], launch=False)
    row = _container_or_404(req)
    if not _may_control(req, row):
        raise HTTPError(403, f"User {req.login} cannot kill container {row['id']}")
    _cs_run.kill(req.state, row, req.login)
    return wire.text_response(str(row["container_id"]))


@route("POST", "/xapi/containers/{container}/kill")
def kill_container(req: EmuRequest) -> Response:
    """``POST /xapi/containers/{id}/kill``: status Killed (workflow Killed); text = its id."""
    return _kill(req)


@route("POST", "/xapi/projects/{project}/containers/{container}/kill")
def kill_project_container(req: EmuRequest) -> Response:
    """``POST /xapi/projects/{P}/containers/{id}/kill``."""
    return _kill(req)


@route("POST", "/xapi/containers/{container}/finalize", admin=True)
def finalize_container(req: EmuRequest) -> Response:
    """``POST /xapi/containers/{id}/finalize`` (admin): nothing left to do in the emulator."""
    _container_or_404(req)
    return wire.text_response("")


def _log_row(req: EmuRequest) -> Row:
    _require_cs(req)
    row = _cs.container_row(req.state, req.params["container"])
    if row is None:
        raise HTTPError(500, f"No container with ID {req.params['container']}")
    if not _may_control(req, row):
        raise HTTPError(403, "")
    return row


@route("GET", "/xapi/containers/{container}/logs")
def container_logs_zip(req: EmuRequest) -> Response:
    """``GET /xapi/containers/{id}/logs``: stdout and stderr in a zip."""
    row = _log_row(req)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stdout.log", row["stdout"])
        archive.writestr("stderr.log", row["stderr"])
    name = f"{row['container_id'] or row['id']}.zip"
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@route("GET", "/xapi/containers/{container}/logs/{stream}")
def container_log(req: EmuRequest) -> Response:
    """``GET /xapi/containers/{id}/logs/{stdout|stderr}``: text, 204 when empty."""
    row = _log_row(req)
    text = str(row["stdout"] if "stdout" in req.params["stream"] else row["stderr"])
    if not text:
        return Response(status_code=204)
    return wire.text_response(text)


# ----------------------------------------------------------------- batch-launch plugin


@route("GET", "/xapi/workflows/{wf_id:int}")
def xapi_workflow(req: EmuRequest) -> Response:
    """``GET /xapi/workflows/{id}`` (batch-launch plugin): the workflow as JSON (a poll)."""
    _require_cs(req)
    row = workflows.get_workflow(req.state, req.params["wf_id"])
    if row is None or not workflows.can_read_workflow(req, row):
        raise HTTPError(404, f"No workflow with ID {req.params['wf_id']}")
    workflows.record_poll(req.state, int(row["wrk_workflowData_id"]))
    row = workflows.get_workflow(req.state, req.params["wf_id"])
    assert row is not None
    return wire.json_response(workflows.workflow_json(row))


# ----------------------------------------------------------------- control API (not XNAT)


ROUTES = [
    list_commands,
    create_command,
    available,
    get_command,
    replace_command,
    delete_command,
    add_wrapper,
    delete_wrapper,
    project_available,
    *WRAPPER_ROUTES,
    *LAUNCH_ROUTES,
    list_containers,
    query_containers,
    project_containers,
    get_container,
    delete_container,
    kill_container,
    kill_project_container,
    finalize_container,
    container_logs_zip,
    container_log,
    xapi_workflow,
    plugin_switch,
    planned_outcomes,
]
