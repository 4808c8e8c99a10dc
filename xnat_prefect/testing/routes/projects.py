"""Project routes: listing, item documents, create/update/delete, routing codes, access, users."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._cascade import delete_project
from xnat_prefect.testing.routes._listing import listing
from xnat_prefect.testing.routes._lookup import project_or_404
from xnat_prefect.testing.store import Row, now_text

VALID_ID = re.compile(r"^[A-Za-z0-9_\-]+$")
DEFAULT_COLUMNS = ("ID", "secondary_ID", "name", "description", "pi_firstname", "pi_lastname")
ALL_COLUMNS = (*DEFAULT_COLUMNS, "keywords", "alias", "note", "accessibility", "insert_date")
FILTERED_COLUMNS = (
    "id",
    "name",
    "description",
    "secondary_id",
    "pi",
    "project_invs",
    "project_access",
    "project_access_img",
    "insert_date",
    "insert_user",
    "user_role",
    "last_accessed",
)
FILTER_TRIGGERS = (
    "accessible",
    "data",
    "prearc_code",
    "owner",
    "member",
    "collaborator",
    "admin",
    "activeSince",
    "recent",
    "favorite",
    "users",
)
FIELD_PARAMS = {
    "name": "name",
    "secondary_ID": "secondary_id",
    "description": "description",
    "keywords": "keywords",
    "pi_firstname": "pi_firstname",
    "pi_lastname": "pi_lastname",
    "note": "note",
}
ROLE_NAMES = {"owner": "Owners", "member": "Members", "collaborator": "Collaborators"}


def _aliases(req: EmuRequest, project_id: str) -> list[str]:
    rows = req.state.store.query("SELECT alias FROM project_aliases WHERE project=?", (project_id,))
    return [str(r["alias"]) for r in rows]


def _row(req: EmuRequest, project: Row) -> dict[str, Any]:
    data = dict(project)
    data["ID"] = project["id"]
    data["secondary_ID"] = project["secondary_id"]
    data["alias"] = ",".join(_aliases(req, project["id"]))
    data["URI"] = f"/data/projects/{project['id']}"
    return data


def _filtered_row(req: EmuRequest, project: Row) -> dict[str, Any]:
    role = req.state.project_role(req.user, project["id"]) or ""
    return {
        "id": project["id"],
        "name": project["name"],
        "description": project["description"],
        "secondary_id": project["secondary_id"],
        "pi": f"{project['pi_lastname']}, {project['pi_firstname']}".strip(", "),
        "project_invs": "",
        "project_access": project["accessibility"],
        "project_access_img": f"/@WEBAPP/images/{project['accessibility'][:2]}.gif",
        "insert_date": project["insert_date"],
        "insert_user": project["insert_user"],
        "user_role": ROLE_NAMES.get(role, ""),
        "last_accessed": "",
        "URI": f"/data/projects/{project['id']}",
    }


@route("GET", "/data/projects")
def list_projects(req: EmuRequest) -> Response:
    """``GET /data/projects``: visible projects (default or "filtered" handler)."""
    state = req.state
    rows = [
        p
        for p in state.store.query("SELECT * FROM projects ORDER BY id")
        if state.can_see_project(req.user, p["id"])
    ]
    if any(req.query.get(t) is not None for t in FILTER_TRIGGERS):
        wanted = [r for r in ("owner", "member", "collaborator") if req.flag(r)]
        if req.flag("accessible") or wanted or req.query.get("data"):
            rows = [p for p in rows if state.can_read(req.user, p["id"])]
        if wanted:
            rows = [p for p in rows if state.project_role(req.user, p["id"]) in wanted]
        table = [_filtered_row(req, p) for p in rows]
        return wire.result_set(table, [*FILTERED_COLUMNS, "URI"], fmt=req.fmt, title="Projects")
    if req.query.get("restrict") in ("edit", "delete"):
        check = state.can_edit if req.query["restrict"] == "edit" else state.can_delete
        rows = [p for p in rows if check(req.user, p["id"])]
    return listing(
        req, [_row(req, p) for p in rows], default=DEFAULT_COLUMNS, available=ALL_COLUMNS
    )


def _item_document(req: EmuRequest, project: Row) -> Response:
    fmt = req.fmt
    fields = {
        "ID": project["id"],
        "secondary_ID": project["secondary_id"],
        "name": project["name"],
        "description": project["description"],
        "keywords": project["keywords"],
        "note": project["note"],
    }
    pi = {"firstname": project["pi_firstname"], "lastname": project["pi_lastname"]}
    if fmt == "json":
        children: list[tuple[str, list[dict[str, Any]]]] = []
        if any(pi.values()):
            children.append(("PI", [{"data_fields": pi, "xsi_type": "xnat:investigatorData"}]))
        aliases = [{"data_fields": {"alias": a}} for a in _aliases(req, project["id"])]
        children.append(("aliases/alias", aliases))
        return wire.json_response(wire.item_document("xnat:projectData", fields, children))
    if fmt == "xml":
        return wire.text_response(
            wire.item_xml("xnat:Project", "xnat:projectData", fields), media_type="text/xml"
        )
    page = f"<html><head><title>{project['id']}</title></head><body>{project['name']}</body></html>"
    return wire.text_response(page, media_type="text/html")


@route("GET", "/data/projects/{project}")
def get_project(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}``: item document (HTML without ``format``)."""
    return _item_document(req, project_or_404(req, req.params["project"]))


def _check_conflicts(req: EmuRequest, project_id: str, values: dict[str, str]) -> None:
    store = req.state.store
    for column in ("name", "secondary_id"):
        value = values.get(column)
        if value and store.one(
            f"SELECT 1 FROM projects WHERE {column}=? AND id<>?", (value, project_id)
        ):
            raise HTTPError(
                409, f"Requested new project conflicts with existing projects: {column}={value}"
            )


@route("PUT", "/data/projects/{project}")
def put_project(req: EmuRequest) -> Response:
    """``PUT /data/projects/{P}``: create (creator becomes owner) or update (owners)."""
    state = req.state
    store = state.store
    ref = req.params["project"]
    values: dict[str, str] = {}
    for param, column in FIELD_PARAMS.items():
        given = req.arg(param)
        if given is not None:
            values[column] = given
    for key, value in req.query.items():
        if key.startswith("xnat:projectData/"):
            column = key.split("/", 1)[1]
            if column in FIELD_PARAMS.values():
                values[column] = value
    accessibility = req.arg("accessibility")
    existing_id = state.resolve_project(ref)
    if existing_id is not None:
        if not state.can_see_project(req.user, existing_id):
            raise HTTPError(404, f"Unable to identify project {ref}")
        if not state.can_delete(req.user, existing_id):
            raise HTTPError(403, f"User {req.login} cannot modify project {existing_id}.")
        _check_conflicts(req, existing_id, values)
        if values:
            sets = ", ".join(f"{column}=?" for column in values)
            store.execute(f"UPDATE projects SET {sets} WHERE id=?", (*values.values(), existing_id))
            store.record_history(
                req.login, "modified", "xnat:projectData", existing_id, existing_id
            )
        return wire.text_response("")
    if not VALID_ID.match(ref):
        raise HTTPError(417, "Invalid character in project ID.")
    if store.one("SELECT 1 FROM deleted_projects WHERE id=?", (ref,)):
        raise HTTPError(403, f"Project {ref} was deleted; its ID cannot be reused.")
    user = req.user
    assert user is not None
    if not user.is_admin and not state.site_config("uiAllowNonAdminProjectCreation"):
        raise HTTPError(403, "Only administrators may create projects on this site.")
    if accessibility is not None and accessibility not in ("private", "protected", "public"):
        raise HTTPError(400, f"Invalid accessibility {accessibility}")
    values.setdefault("name", ref)
    values.setdefault("secondary_id", ref)
    _check_conflicts(req, ref, values)
    with store.tx():
        columns = ["id", "insert_date", "insert_user", "prearchive_code", "accessibility", *values]
        code = int(state.site_config("defaultProjectAutoArchiveSetting") or 4)
        params = [ref, now_text(), req.login, code, accessibility or "private", *values.values()]
        store.execute(
            f"INSERT INTO projects({', '.join(columns)}) VALUES({', '.join('?' * len(columns))})",
            params,
        )
        store.execute(
            "INSERT INTO project_members(project, login, role) VALUES(?,?,'owner')",
            (ref, req.login),
        )
        alias = req.arg("alias")
        if alias:
            store.execute(
                "INSERT OR IGNORE INTO project_aliases(alias, project) VALUES(?,?)", (alias, ref)
            )
        store.record_history(req.login, "created", "xnat:projectData", ref, ref)
    return wire.text_response("")


@route("POST", "/data/projects")
def post_project(req: EmuRequest) -> Response:
    """``POST /data/projects?ID=P``: create from params; 409 when it exists; 200 + URL."""
    ref = req.arg("ID") or req.arg("id") or ""
    if not ref:
        raise HTTPError(400, "Project ID is required.")
    if req.state.resolve_project(ref) is not None:
        raise HTTPError(409, "Project already exists.")
    req.params["project"] = ref
    put_project.handler(req)
    url = f"{req.state.url}/data/projects/{ref}"
    return Response(url, status_code=200, media_type="text/plain", headers={"Location": url})


@route("DELETE", "/data/projects/{project}")
def delete_project_route(req: EmuRequest) -> Response:
    """``DELETE /data/projects/{P}[?removeFiles=true]``: owners only; unknown → 400."""
    state = req.state
    project_id = state.resolve_project(req.params["project"])
    if project_id is None or not state.can_see_project(req.user, project_id):
        raise HTTPError(400, f"Unable to identify project {req.params['project']}")
    if not state.can_delete(req.user, project_id):
        raise HTTPError(403, f"User {req.login} cannot delete project {project_id}.")
    delete_project(state, project_id, remove_files=req.flag("removeFiles"))
    state.store.record_history(req.login, "deleted", "xnat:projectData", project_id, project_id)
    return wire.text_response("")


@route("GET", "/data/projects/{project}/{setting:str}")
def get_project_setting(req: EmuRequest) -> Response:
    """``GET .../prearchive_code|quarantine_code|current_arc|accessibility``: bare text."""
    project = project_or_404(req, req.params["project"])
    setting = req.params["setting"]
    if setting in ("prearchive_code", "quarantine_code", "current_arc", "accessibility"):
        return wire.text_response(str(project[setting]))
    raise HTTPError(400, f"Unsupported project sub-resource: {setting}")


@route("PUT", "/data/projects/{project}/{setting:str}/{value:str}")
def put_project_setting(req: EmuRequest) -> Response:
    """``PUT .../prearchive_code/{n}``, ``quarantine_code``, ``current_arc``, ``accessibility``."""
    state = req.state
    project = project_or_404(req, req.params["project"])
    setting, value = req.params["setting"], req.params["value"]
    if not state.can_delete(req.user, project["id"]):
        raise HTTPError(403, f"User {req.login} cannot modify project {project['id']}.")
    if setting == "prearchive_code":
        if value in ("true", "false"):
            value = "4" if value == "true" else "0"
        if not value.lstrip("-").isdigit():
            raise HTTPError(400, f"Invalid prearchive code {value}")
        if int(value) != 0 and not state.site_config("projectAllowAutoArchive"):
            raise HTTPError(403, "Auto-archive is disabled on this site.")
    elif setting == "quarantine_code":
        if value not in ("0", "1", "true", "false"):
            raise HTTPError(400, f"Invalid quarantine code {value}")
        value = "1" if value in ("1", "true") else "0"
    elif setting == "accessibility":
        if value not in ("private", "protected", "public"):
            raise HTTPError(400, f"Invalid accessibility {value}")
        if value != "private" and not state.site_config("securityAllowNonPrivateProjects"):
            raise HTTPError(403, "Non-private projects are not allowed on this site.")
    elif setting != "current_arc":
        raise HTTPError(400, f"Unsupported project sub-resource: {setting}")
    state.store.execute(f"UPDATE projects SET {setting}=? WHERE id=?", (value, project["id"]))
    state.store.record_history(
        req.login,
        "modified",
        "xnat:projectData",
        project["id"],
        project["id"],
        f"{setting}={value}",
    )
    return wire.text_response(value if setting == "accessibility" else "")


def _members_table(req: EmuRequest, project_id: str) -> Response:
    rows = req.state.store.query(
        "SELECT m.role, u.* FROM project_members m JOIN users u ON u.login = m.login "
        "WHERE m.project=? AND u.enabled=1 ORDER BY m.role, u.login",
        (project_id,),
    )
    table = [
        {
            "GROUP_ID": f"{project_id}_{r['role']}",
            "displayname": ROLE_NAMES[r["role"]],
            "login": r["login"],
            "firstname": r["firstname"],
            "lastname": r["lastname"],
            "email": r["email"],
        }
        for r in rows
    ]
    columns = ["GROUP_ID", "displayname", "login", "firstname", "lastname", "email"]
    return wire.result_set(table, columns, fmt=req.fmt, title="Users")


@route("GET", "/data/projects/{project}/users")
def list_project_users(req: EmuRequest) -> Response:
    """``GET /data/projects/{P}/users``: memberships (owners/admins when restricted)."""
    state = req.state
    project = project_or_404(req, req.params["project"])
    if state.site_config("restrictUserListAccessToAdmins") and not state.can_delete(
        req.user, project["id"]
    ):
        raise HTTPError(403, "Only project owners and administrators may list project users.")
    return _members_table(req, project["id"])


def _role_from_group(project_id: str, group: str) -> str:
    lowered = group.lower()
    for role, display in ROLE_NAMES.items():
        if lowered in (role, display.lower(), f"{project_id.lower()}_{role}"):
            return role
    raise HTTPError(404, f"Unknown group {group} for project {project_id}")


@route(("PUT", "DELETE"), "/data/projects/{project}/users/{group}/{login}")
def change_project_user(req: EmuRequest) -> Response:
    """``PUT|DELETE /data/projects/{P}/users/{group}/{user}``: owners manage members."""
    state = req.state
    project = project_or_404(req, req.params["project"])
    project_id = project["id"]
    if not state.can_delete(req.user, project_id):
        raise HTTPError(403, f"User {req.login} cannot manage users of project {project_id}.")
    role = _role_from_group(project_id, req.params["group"])
    login_ref = req.params["login"]
    user_row = state.store.one(
        "SELECT login FROM users WHERE login=? OR email=? OR CAST(xdat_user_id AS TEXT)=?",
        (login_ref, login_ref, login_ref),
    )
    if user_row is None:
        raise HTTPError(404, f"Unknown user {login_ref}")
    login = user_row["login"]
    if req.method == "PUT":
        state.store.execute(
            "INSERT INTO project_members(project, login, role) VALUES(?,?,?) "
            "ON CONFLICT(project, login) DO UPDATE SET role=excluded.role",
            (project_id, login, role),
        )
    else:
        state.store.execute(
            "DELETE FROM project_members WHERE project=? AND login=? AND role=?",
            (project_id, login, role),
        )
    state.store.record_history(
        req.login,
        "modified",
        "xnat:projectData",
        project_id,
        project_id,
        f"{req.method} {role} {login}",
    )
    return _members_table(req, project_id)


ROUTES = [
    list_projects,
    post_project,
    get_project,
    put_project,
    delete_project_route,
    list_project_users,
    change_project_user,
    get_project_setting,
    put_project_setting,
]
