"""Container Service data for the emulator: commands, wrapper enablement, container records.

Used by :mod:`containers` (routes) and :mod:`_cs_run` (launches and their life cycle).
Commands are stored whole as JSON (ids filled in); ``cs_wrappers`` indexes wrapper ids;
``cs_enabled`` holds site (``project=''``) and project enablement; ``cs_containers`` holds
launches (``stage`` queued → created → running → done, or failed before a container existed).
Planned outcomes per wrapper id or name come from the control map :func:`outcomes`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS cs_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cs_wrappers (
    id INTEGER PRIMARY KEY,
    command_id INTEGER NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cs_enabled (
    wrapper_id INTEGER NOT NULL,
    project TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    PRIMARY KEY (wrapper_id, project)
);
CREATE TABLE IF NOT EXISTS cs_containers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT NOT NULL DEFAULT 'queued',
    error TEXT NOT NULL DEFAULT '',
    command_id INTEGER NOT NULL,
    wrapper_id INTEGER NOT NULL,
    container_id TEXT NOT NULL DEFAULT '',
    workflow_id TEXT,
    user_id TEXT NOT NULL,
    project TEXT,
    status TEXT NOT NULL DEFAULT '',
    status_time INTEGER,
    docker_image TEXT NOT NULL DEFAULT '',
    command_line TEXT NOT NULL DEFAULT '',
    inputs TEXT NOT NULL DEFAULT '[]',
    history TEXT NOT NULL DEFAULT '[]',
    outcome TEXT NOT NULL DEFAULT 'Complete',
    queued_at REAL NOT NULL,
    started_at REAL,
    polls INTEGER NOT NULL DEFAULT 0,
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    exit_code TEXT
);
"""

ENABLED_KEY = "containers_enabled"
OUTCOMES_KEY = "containers_outcomes"
XNAT_TYPES = {
    "project": "xnat:projectData",
    "subject": "xnat:subjectData",
    "session": "xnat:imageSessionData",
    "scan": "xnat:imageScanData",
    "assessor": "xnat:imageAssessorData",
    "resource": "xnat:resourceCatalog",
}
ID_LISTS = ("mounts", "inputs", "outputs")
WRAPPER_ID_LISTS = ("external-inputs", "derived-inputs", "output-handlers")


def is_enabled(state: EmulatorState) -> bool:
    """Whether the emulated Container Service plugin is installed (on by default).

    Args:
        state: Emulator state.

    Returns:
        The flag.
    """
    return bool(state.extras.get(ENABLED_KEY, True))


def outcomes(state: EmulatorState) -> dict[str, str]:
    """The planned outcome per wrapper id or name (``default`` for the rest).

    Args:
        state: Emulator state.

    Returns:
        The live, mutable map.
    """
    found = state.extras.setdefault(OUTCOMES_KEY, {"default": "Complete"})
    assert isinstance(found, dict)
    return found


def now_ms() -> int:
    """Epoch milliseconds (Jackson's date format).

    Returns:
        The time.
    """
    return int(time.time() * 1000)


# ----------------------------------------------------------------- commands and wrappers


def validate_command(body: Any) -> list[str]:
    """Problems that make a command JSON invalid (CS answers 400 "Invalid command").

    Args:
        body: Parsed request body.

    Returns:
        Problem texts (empty when valid).
    """
    if not isinstance(body, dict):
        return ["The command must be a JSON object."]
    problems = []
    if not str(body.get("name") or "").strip():
        problems.append("Command name cannot be blank.")
    if body.get("type", "docker") == "docker" and not str(body.get("image") or "").strip():
        problems.append('Command "image" cannot be blank.')
    wrappers = body.get("xnat", [])
    if not isinstance(wrappers, list):
        return [*problems, 'Command "xnat" must be a list of wrappers.']
    for index, wrapper in enumerate(wrappers):
        if not isinstance(wrapper, dict) or not str(wrapper.get("name") or "").strip():
            problems.append(f"Command wrapper {index}: name cannot be blank.")
    return problems


def _number_items(state: EmulatorState, items: Any) -> list[Any]:
    numbered = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            item = {**item, "id": item.get("id") or state.store.next_value("cs_item")}
        numbered.append(item)
    return numbered


def prepare_command(state: EmulatorState, body: dict[str, Any], command_id: int) -> dict[str, Any]:
    """Fill ids and defaults into a command (wrappers keep ids they already have).

    Args:
        state: Emulator state.
        body: Valid command JSON.
        command_id: The command's id.

    Returns:
        The stored form.
    """
    command: dict[str, Any] = {
        "type": "docker",
        "version": "",
        "schema-version": "1.0",
        "description": "",
        "command-line": "",
        "override-entrypoint": False,
        "environment-variables": {},
        "ports": {},
        **body,
        "id": command_id,
    }
    for key in ID_LISTS:
        command[key] = _number_items(state, command.get(key, []))
    wrappers = []
    for wrapper in command.get("xnat", []) or []:
        wrapper_id = int(wrapper.get("id") or 0)
        known = state.store.one(
            "SELECT 1 FROM cs_wrappers WHERE id=? AND command_id=?", (wrapper_id, command_id)
        )
        if not wrapper_id or known is None:
            wrapper_id = state.store.next_value("cs_wrapper")
        filled = {"description": "", "contexts": [], **wrapper, "id": wrapper_id}
        for key in WRAPPER_ID_LISTS:
            filled[key] = _number_items(state, filled.get(key, []))
        wrappers.append(filled)
    command["xnat"] = wrappers
    return command


def save_command(state: EmulatorState, command: dict[str, Any]) -> None:
    """Store a prepared command and re-index its wrappers.

    Args:
        state: Emulator state.
        command: Output of :func:`prepare_command`.
    """
    store = state.store
    with store.tx():
        store.execute(
            "INSERT INTO cs_commands(id, body) VALUES(?, ?) "
            "ON CONFLICT(id) DO UPDATE SET body=excluded.body",
            (command["id"], json.dumps(command)),
        )
        keep = [int(w["id"]) for w in command["xnat"]]
        stale = store.query("SELECT id FROM cs_wrappers WHERE command_id=?", (command["id"],))
        for row in stale:
            if int(row["id"]) not in keep:
                store.execute("DELETE FROM cs_enabled WHERE wrapper_id=?", (row["id"],))
        store.execute("DELETE FROM cs_wrappers WHERE command_id=?", (command["id"],))
        for wrapper in command["xnat"]:
            store.execute(
                "INSERT INTO cs_wrappers(id, command_id, name) VALUES(?,?,?)",
                (wrapper["id"], command["id"], wrapper["name"]),
            )


def delete_command(state: EmulatorState, command_id: int) -> None:
    """Remove a command, its wrappers and their enablement (no-op when unknown).

    Args:
        state: Emulator state.
        command_id: Command id.
    """
    store = state.store
    with store.tx():
        for row in store.query("SELECT id FROM cs_wrappers WHERE command_id=?", (command_id,)):
            store.execute("DELETE FROM cs_enabled WHERE wrapper_id=?", (row["id"],))
        store.execute("DELETE FROM cs_wrappers WHERE command_id=?", (command_id,))
        store.execute("DELETE FROM cs_commands WHERE id=?", (command_id,))


def get_command(state: EmulatorState, command_id: int | str) -> dict[str, Any] | None:
    """A stored command.

    Args:
        state: Emulator state.
        command_id: Its id.

    Returns:
        The command JSON, or None.
    """
    row = state.store.one("SELECT body FROM cs_commands WHERE id=?", (str(command_id),))
    if row is None:
        return None
    command: dict[str, Any] = json.loads(row["body"])
    return command


def all_commands(state: EmulatorState) -> list[dict[str, Any]]:
    """Every stored command, by id.

    Args:
        state: Emulator state.

    Returns:
        The commands.
    """
    rows = state.store.query("SELECT body FROM cs_commands ORDER BY id")
    return [json.loads(r["body"]) for r in rows]


def find_wrapper(
    state: EmulatorState,
    *,
    wrapper_id: int | None = None,
    command_id: int | None = None,
    name: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Find a wrapper by id, or by command id plus wrapper name (or id as text).

    Args:
        state: Emulator state.
        wrapper_id: Wrapper id.
        command_id: Command id (with ``name``).
        name: Wrapper name or id text.

    Returns:
        ``(command, wrapper)`` or None.
    """
    if wrapper_id is not None:
        row = state.store.one("SELECT command_id FROM cs_wrappers WHERE id=?", (wrapper_id,))
        command = get_command(state, row["command_id"]) if row is not None else None
    else:
        command = get_command(state, command_id) if command_id is not None else None
    if command is None:
        return None
    for wrapper in command["xnat"]:
        if wrapper_id is not None and int(wrapper["id"]) == wrapper_id:
            return command, wrapper
        if wrapper_id is None and name in (wrapper["name"], str(wrapper["id"])):
            return command, wrapper
    return None


def enabled_for(state: EmulatorState, wrapper_id: int, project: str = "") -> bool:
    """Whether a wrapper is enabled for the site (``project=""``) or a project.

    Args:
        state: Emulator state.
        wrapper_id: Wrapper id.
        project: Project ID, or "" for the site.

    Returns:
        The flag (new wrappers are disabled everywhere, as in the Container Service).
    """
    row = state.store.one(
        "SELECT enabled FROM cs_enabled WHERE wrapper_id=? AND project=?", (wrapper_id, project)
    )
    return bool(row is not None and row["enabled"])


def set_enabled(state: EmulatorState, wrapper_id: int, project: str, enabled: bool) -> None:
    """Enable or disable a wrapper for the site (``project=""``) or a project.

    Args:
        state: Emulator state.
        wrapper_id: Wrapper id.
        project: Project ID, or "".
        enabled: The new flag.
    """
    state.store.execute(
        "INSERT INTO cs_enabled(wrapper_id, project, enabled) VALUES(?,?,?) "
        "ON CONFLICT(wrapper_id, project) DO UPDATE SET enabled=excluded.enabled",
        (wrapper_id, project, int(enabled)),
    )


# ----------------------------------------------------------------- XNAT inputs


def resolve_item(state: EmulatorState, value: str, project: str | None) -> tuple[str, str, str]:
    """Resolve an input value (accession ID, label, or archive URI) to an XNAT item.

    Args:
        state: Emulator state.
        value: ``XNAT_E00001``, ``/archive/experiments/XNAT_E00001``,
            ``/archive/projects/P/subjects/S/experiments/E``, a project ID…
        project: Launch project (for labels).

    Returns:
        ``(id, xsi_type, project)``; empty strings when nothing matches.
    """
    text = value.strip()
    for prefix in ("/data", "/REST"):
        if text.startswith(prefix + "/"):
            text = text[len(prefix) :]
    parts = [p for p in text.split("/") if p and p != "archive"]
    kinds: dict[str, str] = {}
    for key, ref in zip(parts[::2], parts[1::2], strict=False):
        kinds[key] = ref
    scope = kinds.get("projects") or project
    store = state.store
    candidates = []
    if "experiments" in kinds or len(parts) == 1:
        ref = kinds.get("experiments", parts[0] if parts else "")
        candidates.append(("experiments", ref))
    if "subjects" in kinds or len(parts) == 1:
        candidates.append(("subjects", kinds.get("subjects", parts[0] if parts else "")))
    for table, ref in candidates:
        row = store.one(f"SELECT * FROM {table} WHERE id=?", (ref,))
        if row is None and scope:
            row = store.one(f"SELECT * FROM {table} WHERE project=? AND label=?", (scope, ref))
        if row is not None:
            xsi = row["xsi_type"] if table == "experiments" else "xnat:subjectData"
            return str(row["id"]), str(xsi), str(row["project"])
    ref = kinds.get("projects", parts[0] if len(parts) == 1 else "")
    found = state.resolve_project(ref) if ref else None
    if found:
        return found, "xnat:projectData", found
    return "", "", ""


# ----------------------------------------------------------------- containers


def container_row(state: EmulatorState, ref: str) -> Row | None:
    """A visible (created) container by database id or container id.

    Args:
        state: Emulator state.
        ref: ``id`` or ``container-id``.

    Returns:
        The row, or None.
    """
    column = "id" if ref.isdigit() else "container_id"
    return state.store.one(
        f"SELECT * FROM cs_containers WHERE {column}=? AND stage IN ('created','running','done')",
        (ref,),
    )


def container_json(row: Row) -> dict[str, Any]:
    """A container as ``/xapi/containers`` shows it.

    Args:
        row: Container row.

    Returns:
        The JSON object.
    """
    return {
        "id": int(row["id"]),
        "command-id": int(row["command_id"]),
        "status": row["status"],
        "status-time": row["status_time"],
        "wrapper-id": int(row["wrapper_id"]),
        "container-id": row["container_id"],
        "workflow-id": row["workflow_id"],
        "user-id": row["user_id"],
        "project": row["project"],
        "backend": "docker",
        "swarm": False,
        "service-id": None,
        "task-id": None,
        "node-id": None,
        "docker-image": row["docker_image"],
        "command-line": row["command_line"],
        "override-entrypoint": False,
        "working-directory": None,
        "subtype": "docker",
        "parent-source-object-name": None,
        "env": {},
        "ports": {},
        "mounts": [],
        "inputs": json.loads(row["inputs"]),
        "outputs": [],
        "history": json.loads(row["history"]),
        "log-paths": [],
        "reserve-memory": None,
        "limit-memory": None,
        "limit-cpu": None,
        "runtime": None,
        "ipc-mode": None,
    }


def available_wrappers(state: EmulatorState, project: str, xsi_type: str) -> list[dict[str, Any]]:
    """Wrappers usable on an xsi type (``/xapi/commands/available``), with their enablement.

    Args:
        state: Emulator state.
        project: Project ID.
        xsi_type: Type of the item the user looks at.

    Returns:
        ``CommandSummaryForContext`` objects.
    """
    rows = []
    for command in all_commands(state):
        for wrapper in command["xnat"]:
            contexts = wrapper.get("contexts", [])
            if contexts and xsi_type not in contexts:
                continue
            externals = wrapper.get("external-inputs", [])
            enabled = enabled_for(state, wrapper["id"]) and enabled_for(
                state, wrapper["id"], project
            )
            rows.append(
                {
                    "command-id": command["id"],
                    "command-name": command.get("name"),
                    "command-description": command.get("description", ""),
                    "wrapper-id": wrapper["id"],
                    "wrapper-name": wrapper["name"],
                    "wrapper-description": wrapper.get("description", ""),
                    "image-name": command.get("image"),
                    "image-type": command.get("type", "docker"),
                    "enabled": enabled,
                    "root-element-name": externals[0]["name"] if externals else None,
                }
            )
    return rows


def wrapper_config(wrapper: dict[str, Any]) -> dict[str, Any]:
    """A wrapper's launch configuration (``GET .../wrappers/{id}/config``).

    Args:
        wrapper: The wrapper.

    Returns:
        ``{"inputs": {name: {...}}, "outputs": {name: {...}}}``.
    """
    inputs = {
        str(item["name"]): {
            "default-value": item.get("default-value"),
            "matcher": item.get("matcher"),
            "user-settable": item.get("user-settable", True),
            "advanced": item.get("advanced", False),
            "required": item.get("required", False),
        }
        for key in ("external-inputs", "derived-inputs")
        for item in wrapper.get(key, [])
    }
    outputs = {
        str(item["name"]): {"type": item.get("type", "Resource"), "label": item.get("label")}
        for item in wrapper.get("output-handlers", [])
    }
    return {"inputs": inputs, "outputs": outputs}
