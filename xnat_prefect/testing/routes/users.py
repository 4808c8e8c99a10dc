"""User administration: ``/data/users`` and the ``/xapi/users`` API (XNAT ``UsersApi``).

Access levels as in XNAT: *admin* routes answer 403 with an empty body to others; *user*
routes (``/xapi/users/{u}``, ``.../enabled``, ``.../roles``, ``.../groups``, ``.../projects``,
``/active/{u}``) allow the user themselves or an administrator; listing routes (``/data/users``,
``/xapi/users``, ``/profiles``) are admin-only while the site preference
``restrictUserListAccessToAdmins`` is true (the default). Unknown users → 404.

Roles live in the ``user_roles`` table, except ``Administrator``, which is ``users.is_admin``.
Groups are project memberships (``{P}_owner``, ``{P}_member``, ``{P}_collaborator``).
``GET /xapi/users/username`` is served by :mod:`auth` (an earlier module).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.store import Row, now_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_roles (
    login TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (login, role)
);
"""

ADMIN_ROLE = "Administrator"
KNOWN_ROLES = (ADMIN_ROLE, "non_expiring")
USER_COLUMNS = ("xdat_user_id", "login", "firstname", "lastname", "email")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")
GROUP = re.compile(r"^(?P<project>.+)_(?P<role>owner|member|collaborator)$")


# ----------------------------------------------------------------- helpers


def _epoch_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000)
    except ValueError:
        return None


def _row(req: EmuRequest, login: str) -> Row | None:
    return req.state.store.one("SELECT * FROM users WHERE login=?", (login,))


def _row_or_404(req: EmuRequest, login: str) -> Row:
    row = _row(req, login)
    if row is None:
        raise HTTPError(404, f"Unable to find requested file or resource: user {login}")
    return row


def _is_admin(req: EmuRequest) -> bool:
    return req.user is not None and req.user.is_admin


def _self_or_admin(req: EmuRequest, login: str) -> None:
    """XNAT's ``AccessLevel.User``: the named user or an administrator (else empty 403)."""
    if not _is_admin(req) and req.login != login:
        raise HTTPError(403, "")


def _list_access(req: EmuRequest) -> None:
    if not _is_admin(req) and req.state.site_config("restrictUserListAccessToAdmins"):
        raise HTTPError(403, "")


def user_json(row: Row) -> dict[str, Any]:
    """A user as XNAT's XAPI ``User`` bean serializes it (secured: no password or salt).

    Args:
        row: ``users`` row.

    Returns:
        The JSON object.
    """
    return {
        "id": int(row["xdat_user_id"]),
        "username": row["login"],
        "firstName": row["firstname"],
        "lastName": row["lastname"],
        "email": row["email"],
        "enabled": bool(row["enabled"]),
        "verified": bool(row["verified"]),
        "secured": True,
        "lastModified": _epoch_ms(row["created"]),
        "lastSuccessfulLogin": _epoch_ms(row["last_login"]),
        "authorization": None,
    }


def _roles(req: EmuRequest, row: Row) -> list[str]:
    rows = req.state.store.query(
        "SELECT role FROM user_roles WHERE login=? ORDER BY role", (row["login"],)
    )
    roles = [str(r["role"]) for r in rows if r["role"] != ADMIN_ROLE]
    return [ADMIN_ROLE, *roles] if row["is_admin"] else roles


def _groups(req: EmuRequest, login: str) -> list[str]:
    rows = req.state.store.query(
        "SELECT project, role FROM project_members WHERE login=? ORDER BY project", (login,)
    )
    return [f"{r['project']}_{r['role']}" for r in rows]


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise HTTPError(400, f"There was an error in the request: invalid flag {value}")
    return lowered == "true"


# ----------------------------------------------------------------- listings


@route("GET", "/data/users")
def list_users(req: EmuRequest) -> Response:
    """``GET /data/users``: enabled users (admins only while the list is restricted)."""
    _list_access(req)
    rows = req.state.store.query("SELECT * FROM users WHERE enabled=1 ORDER BY login")
    return wire.result_set([dict(r) for r in rows], USER_COLUMNS, fmt=req.fmt, title="Projects")


@route("GET", "/xapi/users")
def usernames(req: EmuRequest) -> Response:
    """``GET /xapi/users``: every username."""
    _list_access(req)
    rows = req.state.store.query("SELECT login FROM users ORDER BY login")
    return wire.json_response([r["login"] for r in rows])


@route("GET", "/xapi/users/profiles")
def profiles(req: EmuRequest) -> Response:
    """``GET /xapi/users/profiles``: every user object."""
    _list_access(req)
    rows = req.state.store.query("SELECT * FROM users ORDER BY login")
    return wire.json_response([user_json(r) for r in rows])


@route("GET", "/xapi/users/current")
def current_profiles(req: EmuRequest) -> Response:
    """``GET /xapi/users/current``: enabled users' objects."""
    _list_access(req)
    rows = req.state.store.query("SELECT * FROM users WHERE enabled=1 ORDER BY login")
    return wire.json_response([user_json(r) for r in rows])


@route("GET", "/xapi/users/profile")
def own_profile(req: EmuRequest) -> Response:
    """``GET /xapi/users/profile``: the caller's user object."""
    return wire.json_response(user_json(_row_or_404(req, req.login)))


@route("GET", "/xapi/users/profile/{login}")
def profile(req: EmuRequest) -> Response:
    """``GET /xapi/users/profile/{u}``: one user object (list access rules)."""
    if req.params["login"] != req.login:
        _list_access(req)
    return wire.json_response(user_json(_row_or_404(req, req.params["login"])))


@route("GET", "/xapi/users/projects")
def editable_projects(req: EmuRequest) -> Response:
    """``GET /xapi/users/projects``: IDs of the projects the caller may edit."""
    if _is_admin(req):
        rows = req.state.store.query("SELECT id FROM projects ORDER BY id")
    else:
        rows = req.state.store.query(
            "SELECT project AS id FROM project_members WHERE login=? "
            "AND role IN ('owner', 'member') ORDER BY project",
            (req.login,),
        )
    return wire.json_response([r["id"] for r in rows])


# ----------------------------------------------------------------- sessions


@route("GET", "/xapi/users/active", admin=True)
def active_users(req: EmuRequest) -> Response:
    """``GET /xapi/users/active``: ``{login: {"sessions": [...], "count": n}}``."""
    found = req.state.active_sessions()
    found.pop("guest", None)
    return wire.json_response(
        {login: {"sessions": ids, "count": len(ids)} for login, ids in found.items()}
    )


@route(("GET", "DELETE"), "/xapi/users/active/{login}")
def user_sessions(req: EmuRequest) -> Response:
    """``GET|DELETE /xapi/users/active/{u}``: list or kill a user's sessions (304 when none)."""
    login = req.params["login"]
    _self_or_admin(req, login)
    _row_or_404(req, login)
    ids = req.state.active_sessions(login).get(login, [])
    if not ids:
        return Response(status_code=304)
    if req.method == "GET":
        return wire.json_response(ids)
    killed = req.state.expire_sessions(login)
    return wire.json_response([s for s in killed if s != req.jsession_id])


# ----------------------------------------------------------------- roles (site-wide)


@route("GET", "/xapi/users/roles", admin=True)
def all_roles(req: EmuRequest) -> Response:
    """``GET /xapi/users/roles``: every role name on the site."""
    rows = req.state.store.query("SELECT DISTINCT role FROM user_roles")
    return wire.json_response(sorted({*KNOWN_ROLES, *(r["role"] for r in rows)}))


def _role_members(req: EmuRequest, role: str) -> list[str]:
    if role == ADMIN_ROLE:
        rows = req.state.store.query("SELECT login FROM users WHERE is_admin=1 ORDER BY login")
    else:
        rows = req.state.store.query(
            "SELECT login FROM user_roles WHERE role=? ORDER BY login", (role,)
        )
    return [r["login"] for r in rows]


@route("GET", "/xapi/users/rolemap", admin=True)
def role_map(req: EmuRequest) -> Response:
    """``GET /xapi/users/rolemap``: ``{role: [logins]}``."""
    rows = req.state.store.query("SELECT DISTINCT role FROM user_roles")
    roles = sorted({ADMIN_ROLE, *(r["role"] for r in rows)})
    return wire.json_response({role: _role_members(req, role) for role in roles})


@route("GET", "/xapi/users/roles/{role}", admin=True)
def users_with_role(req: EmuRequest) -> Response:
    """``GET /xapi/users/roles/{role}``: logins holding a role."""
    return wire.json_response(_role_members(req, req.params["role"]))


# ----------------------------------------------------------------- one user


def _validate_new(body: dict[str, Any]) -> list[str]:
    problems = []
    username = str(body.get("username") or "")
    if not username or not USERNAME.match(username):
        problems.append("username is missing or invalid")
    email = str(body.get("email") or "")
    if not email or not EMAIL.match(email):
        problems.append("email is missing or not a valid address")
    for name in ("firstName", "lastName"):
        value = str(body.get(name) or "")
        if not value.strip() or "<" in value or ">" in value:
            problems.append(f"{name} is missing or contains invalid characters")
    return problems


def _json_object(req: EmuRequest) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "There was an error in the request: send a JSON user object")
    return body


@route("POST", "/xapi/users", admin=True)
def create_user(req: EmuRequest) -> Response:
    """``POST /xapi/users`` (admin): create from a JSON user object → 201 + the user."""
    body = _json_object(req)
    problems = _validate_new(body)
    if problems:
        raise HTTPError(400, "Invalid user: " + "; ".join(problems))
    login = str(body["username"])
    if _row(req, login) is not None:
        raise HTTPError(409, f"The user {login} already exists.")
    password = str(body.get("password") or secrets.token_urlsafe(24))
    req.state.store.execute(
        "INSERT INTO users(login, password, firstname, lastname, email, enabled, verified, "
        "is_admin, created) VALUES(?,?,?,?,?,?,?,0,?)",
        (
            login,
            password,
            str(body["firstName"]),
            str(body["lastName"]),
            str(body["email"]),
            int(body.get("enabled", True) is not False),
            int(body.get("verified", True) is not False),
            now_text(),
        ),
    )
    req.state.store.record_history(req.login, "created", "xdat:user", login)
    return wire.json_response(user_json(_row_or_404(req, login)), status_code=201)


@route("GET", "/xapi/users/{login}")
def get_user(req: EmuRequest) -> Response:
    """``GET /xapi/users/{u}``: the user object (the user or an admin)."""
    _self_or_admin(req, req.params["login"])
    return wire.json_response(user_json(_row_or_404(req, req.params["login"])))


@route("PUT", "/xapi/users/{login}", admin=True)
def update_user(req: EmuRequest) -> Response:
    """``PUT /xapi/users/{u}`` (admin): update from JSON; 304 when nothing changed."""
    login = req.params["login"]
    row = _row_or_404(req, login)
    body = _json_object(req)
    if body.get("username") and body["username"] != login:
        raise HTTPError(
            400,
            "The username for the submitted user object must match the username for the API call",
        )
    changes: dict[str, Any] = {}
    email = body.get("email")
    if email and email != row["email"]:
        if not EMAIL.match(str(email)):
            raise HTTPError(400, "Invalid email format")
        changes["email"] = str(email)
    if body.get("password"):
        changes["password"] = str(body["password"])
    for key, column in (("firstName", "firstname"), ("lastName", "lastname")):
        if body.get(key) and body[key] != row[column]:
            changes[column] = str(body[key])
    for key in ("enabled", "verified"):
        if isinstance(body.get(key), bool) and int(body[key]) != row[key]:
            changes[key] = int(body[key])
    if not changes:
        return Response(status_code=304)
    sets = ", ".join(f"{c}=?" for c in changes)
    with req.state.store.tx():
        req.state.store.execute(
            f"UPDATE users SET {sets} WHERE login=?", (*changes.values(), login)
        )
        if changes.get("enabled") == 0:
            req.state.store.execute("UPDATE alias_tokens SET enabled=0 WHERE login=?", (login,))
    req.state.store.record_history(req.login, "modified", "xdat:user", login)
    return wire.json_response(user_json(_row_or_404(req, login)))


@route("GET", "/xapi/users/{login}/{field:str}")
def get_flag(req: EmuRequest) -> Response:
    """``GET /xapi/users/{u}/enabled|verified|roles|groups|projects``."""
    login, field = req.params["login"], req.params["field"]
    if field not in ("enabled", "verified", "roles", "groups", "projects"):
        raise HTTPError(404, f"Unable to find requested file or resource: {field}")
    _self_or_admin(req, login)
    row = _row_or_404(req, login)
    if field in ("enabled", "verified"):
        return wire.json_response(bool(row[field]))
    if field == "roles":
        return wire.json_response(_roles(req, row))
    if field == "groups":
        return wire.json_response(_groups(req, login))
    rows = req.state.store.query(
        "SELECT project, role FROM project_members WHERE login=? ORDER BY project", (login,)
    )
    return wire.json_response({r["project"]: r["role"] for r in rows})


@route("PUT", "/xapi/users/{login}/{field:str}/{flag:str}", admin=True)
def set_flag(req: EmuRequest) -> Response:
    """``PUT /xapi/users/{u}/enabled|verified/{flag}`` and ``.../roles/{role}`` (admin)."""
    login, field = req.params["login"], req.params["field"]
    if field == "roles":
        return _change_role(req, login, req.params["flag"])
    if field not in ("enabled", "verified"):
        raise HTTPError(404, f"Unable to find requested file or resource: {field}")
    _row_or_404(req, login)
    value = _flag(req.params["flag"])
    req.state.store.execute(f"UPDATE users SET {field}=? WHERE login=?", (int(value), login))
    if field == "enabled" and value:
        req.state.clear_failed_logins(login)  # an admin re-enabling unlocks the account
    return wire.text_response("")


# ----------------------------------------------------------------- roles of one user


def _admin_count(req: EmuRequest) -> int:
    row = req.state.store.one("SELECT COUNT(*) AS n FROM users WHERE is_admin=1 AND enabled=1")
    return int(row["n"]) if row is not None else 0


def _apply_role(req: EmuRequest, row: Row, role: str, add: bool) -> None:
    login = row["login"]
    store = req.state.store
    if role == ADMIN_ROLE:
        if not add and row["is_admin"] and _admin_count(req) <= 1:
            raise HTTPError(409, f"Cannot remove the {ADMIN_ROLE} role from the last administrator")
        store.execute("UPDATE users SET is_admin=? WHERE login=?", (int(add), login))
    elif add:
        store.execute("INSERT OR IGNORE INTO user_roles(login, role) VALUES(?,?)", (login, role))
    else:
        store.execute("DELETE FROM user_roles WHERE login=? AND role=?", (login, role))
    store.record_history(
        req.login, "modified", "xdat:user", login, details=f"{'+' if add else '-'}{role}"
    )


def _change_role(req: EmuRequest, login: str, role: str) -> Response:
    row = _row_or_404(req, login)
    _apply_role(req, row, role, add=req.method == "PUT")
    return wire.text_response("")


@route("DELETE", "/xapi/users/{login}/roles/{role}", admin=True)
def remove_role(req: EmuRequest) -> Response:
    """``DELETE /xapi/users/{u}/roles/{role}`` (admin); ``Administrator`` clears admin rights."""
    return _change_role(req, req.params["login"], req.params["role"])


def _json_list(req: EmuRequest) -> list[str]:
    body = req.json()
    if not isinstance(body, list) or not all(isinstance(v, str) for v in body):
        raise HTTPError(400, "There was an error in the request: send a JSON array of strings")
    return list(body)


@route(("PUT", "DELETE"), "/xapi/users/{login}/roles", admin=True)
def bulk_roles(req: EmuRequest) -> Response:
    """``PUT|DELETE /xapi/users/{u}/roles`` with a JSON array: 200 ``[]`` or 202 + failures."""
    row = _row_or_404(req, req.params["login"])
    failed = []
    for role in _json_list(req):
        try:
            _apply_role(req, row, role, add=req.method == "PUT")
        except HTTPError:
            failed.append(role)
        row = _row_or_404(req, req.params["login"])
    return wire.json_response(failed, status_code=202 if failed else 200)


# ----------------------------------------------------------------- groups of one user


def _parse_group(req: EmuRequest, group: str) -> tuple[str, str] | None:
    match = GROUP.match(group)
    if match is None:
        return None
    project_id = req.state.resolve_project(match["project"])
    return None if project_id is None else (project_id, match["role"])


def _may_manage(req: EmuRequest, project_id: str) -> bool:
    return req.state.can_delete(req.user, project_id)


def _set_membership(req: EmuRequest, login: str, parsed: tuple[str, str], add: bool) -> None:
    project_id, role = parsed
    store = req.state.store
    if add:
        store.execute(
            "INSERT INTO project_members(project, login, role) VALUES(?,?,?) "
            "ON CONFLICT(project, login) DO UPDATE SET role=excluded.role",
            (project_id, login, role),
        )
    else:
        store.execute(
            "DELETE FROM project_members WHERE project=? AND login=? AND role=?",
            (project_id, login, role),
        )
    store.record_history(
        req.login,
        "modified",
        "xnat:projectData",
        project_id,
        project_id,
        f"{'PUT' if add else 'DELETE'} {role} {login}",
    )


def _change_group(req: EmuRequest, login: str, group: str) -> Response:
    add = req.method == "PUT"
    parsed = _parse_group(req, group)
    if add and not _is_admin(req) and (parsed is None or not _may_manage(req, parsed[0])):
        raise HTTPError(403, "")
    if not add:
        _self_or_admin(req, login)
    _row_or_404(req, login)
    if parsed is None:
        raise HTTPError(404, f"Unable to find requested file or resource: group {group}")
    _set_membership(req, login, parsed, add)
    return wire.text_response("")


@route("PUT", "/xapi/users/{login}/groups/{group}")
def add_group(req: EmuRequest) -> Response:
    """``PUT /xapi/users/{u}/groups/{P_role}``: admins or the project's owners."""
    return _change_group(req, req.params["login"], req.params["group"])


@route("DELETE", "/xapi/users/{login}/groups/{group}")
def remove_group(req: EmuRequest) -> Response:
    """``DELETE /xapi/users/{u}/groups/{P_role}``: the user themselves or an admin."""
    return _change_group(req, req.params["login"], req.params["group"])


@route(("PUT", "DELETE"), "/xapi/users/{login}/groups")
def bulk_groups(req: EmuRequest) -> Response:
    """``PUT|DELETE /xapi/users/{u}/groups`` with a JSON array: 200 ``[]`` or 202 + failures."""
    login = req.params["login"]
    add = req.method == "PUT"
    groups = _json_list(req)
    parsed = {g: _parse_group(req, g) for g in groups}
    managed = all(p is None or _may_manage(req, p[0]) for p in parsed.values())
    if add and not _is_admin(req) and not managed:
        raise HTTPError(403, "")
    if not add:
        _self_or_admin(req, login)
    _row_or_404(req, login)
    failed = []
    for group, target in parsed.items():
        if target is None:
            failed.append(group)
        else:
            _set_membership(req, login, target, add)
    return wire.json_response(failed, status_code=202 if failed else 200)


ROUTES = [
    list_users,
    usernames,
    profiles,
    current_profiles,
    own_profile,
    profile,
    editable_projects,
    active_users,
    user_sessions,
    all_roles,
    role_map,
    users_with_role,
    create_user,
    get_user,
    update_user,
    remove_role,
    bulk_roles,
    add_group,
    remove_group,
    bulk_groups,
    get_flag,
    set_flag,
]
