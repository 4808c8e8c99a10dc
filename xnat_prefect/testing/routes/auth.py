"""Authentication routes: JSESSION, /data/services/auth, alias tokens, buildInfo, login page.

Alias tokens follow ``AliasTokenRestlet``: the guest user (an account named ``guest``) gets
403 "The guest user can't request alias tokens" (anonymous callers never get that far: the URL
is not open, so they get the 401 challenge, or a 302 to the login page in a browser);
non-admins may issue, validate and invalidate only their own tokens (403 otherwise); an admin
issuing for an unknown login gets 400. ``/app/template/Login.vm`` (open) is the page browsers
are redirected to. :func:`tick` sweeps idle-expired HTTP sessions (see
``EmulatorState.sweep_sessions``) so per-request Basic logins do not pile up in memory.
"""

from __future__ import annotations

import secrets
import time
import uuid

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.sessions import SessionLimitError
from xnat_prefect.testing.state import EmulatorState

GUEST = "guest"
NOT_FOR_GUEST = "The guest user can't request alias tokens"
OWN_TOKENS_ONLY = (
    "Non-admin users can only request operations on alias tokens for their own account"
)
LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>XNAT Login</title></head>
<body><h1>XNAT</h1>
<form id="login_form" method="post" action="/login">
<label for="username">User</label> <input type="text" id="username" name="username">
<label for="password">Password</label> <input type="password" id="password" name="password">
<input type="hidden" name="login_method" value="localdb">
<button type="submit" id="loginButton">Login</button>
</form></body></html>
"""


def _session_reply(req: EmuRequest, session_id: str) -> Response:
    response = wire.text_response(session_id)
    response.set_cookie("JSESSIONID", session_id, path="/", httponly=True)
    req.response_headers.pop("set-cookie", None)
    return response


@route("POST", "/data/JSESSION", auth=False)
def login(req: EmuRequest) -> Response:
    """``POST /data/JSESSION``: Basic credentials open a session; none opens a guest one."""
    if req.headers.get("authorization"):
        if req.user is None or req.jsession_id is None:
            raise HTTPError(401, "Login attempt failed. Please try again.")
        return _session_reply(req, req.jsession_id)
    if req.user is not None and req.jsession_id:
        return _session_reply(req, req.jsession_id)
    return _session_reply(req, req.state.create_session(GUEST, anonymous=True))


@route("GET", "/data/JSESSION", auth=False)
def current_session(req: EmuRequest) -> Response:
    """``GET /data/JSESSION``: the current session id (a guest one when anonymous)."""
    if req.jsession_id:
        return wire.text_response(req.jsession_id)
    return _session_reply(req, req.state.create_session(GUEST, anonymous=True))


@route("DELETE", "/data/JSESSION", auth=False)
def logout(req: EmuRequest) -> Response:
    """``DELETE /data/JSESSION``: invalidate the session."""
    cookie = req.headers.get("cookie", "")
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "JSESSIONID":
            req.state.invalidate_session(value)
    if req.jsession_id:
        req.state.invalidate_session(req.jsession_id)
    return wire.text_response("")


@route(("POST", "PUT"), "/data/services/auth", auth=False)
def services_auth(req: EmuRequest) -> Response:
    """``PUT /data/services/auth`` with form ``username``/``password`` (what xnatpy calls)."""
    login_name = req.arg("username") or req.arg("j_username") or ""
    password = req.arg("password") or req.arg("j_password") or ""
    user = req.state.check_password(login_name, password)
    if user is None:
        raise HTTPError(401, "Authentication failed.")
    try:
        session_id = req.state.create_session(user.login)
    except SessionLimitError as exc:
        raise HTTPError(401, str(exc)) from exc
    return _session_reply(req, session_id)


@route("GET", "/data/auth")
def who_am_i(req: EmuRequest) -> Response:
    """``GET /data/auth``: ``User '<login>' is logged in``."""
    return wire.text_response(f"User '{req.login}' is logged in")


@route("GET", "/xapi/users/username")
def username(req: EmuRequest) -> Response:
    """``GET /xapi/users/username``: the caller's login as plain text."""
    return wire.text_response(req.login)


def _build_info(req: EmuRequest) -> dict[str, str]:
    version = req.state.config.version
    return {
        "version": version,
        "buildNumber": "Emulator",
        "buildDate": "Mon Nov 23 00:00:00 UTC 2026",
        "sha": "emulator",
        "shaFull": "emulator",
        "isDirty": "false",
        "branch": "emulator",
        "commit": "emulator",
        "tag": version,
        "timestamp": "1795000000000",
        "hostName": "localhost",
        "displayHostName": "localhost",
        "nodeId": "emulator",
    }


@route("GET", "/xapi/siteConfig/buildInfo", auth=False)
def build_info(req: EmuRequest) -> Response:
    """``GET /xapi/siteConfig/buildInfo``: open; XNAT 1.9 build facts."""
    return wire.json_response(_build_info(req))


@route("GET", "/xapi/siteConfig/buildInfo/{key}", auth=False)
def build_info_key(req: EmuRequest) -> Response:
    """``GET /xapi/siteConfig/buildInfo/{key}``: one build fact as bare text."""
    info = _build_info(req)
    if req.params["key"] not in info:
        raise HTTPError(404, f"Unable to find requested file or resource: {req.params['key']}")
    return wire.text_response(info[req.params["key"]])


def _token_json(row: dict[str, object]) -> dict[str, object]:
    return {
        "alias": row["alias"],
        "secret": row["secret"],
        "xdatUserId": row["login"],
        "estimatedExpirationTime": row["expires"],
        "singleUse": bool(row["single_use"]),
        "validIPAddresses": [],
        "id": abs(hash(row["alias"])) % 100000,
        "enabled": bool(row["enabled"]),
        "created": row["created"],
        "timestamp": row["created"],
        "disabled": 0,
    }


def _issue(req: EmuRequest, login_name: str) -> Response:
    now = int(time.time() * 1000)
    row: dict[str, object] = {
        "alias": str(uuid.uuid4()),
        "secret": secrets.token_hex(32)[:64],
        "login": login_name,
        "created": now,
        "expires": now + 2 * 24 * 3600 * 1000,
        "enabled": 1,
        "single_use": 0,
    }
    req.state.store.execute(
        "INSERT INTO alias_tokens(alias, secret, login, created, expires, enabled, single_use) "
        "VALUES(?,?,?,?,?,?,?)",
        tuple(
            row[k]
            for k in ("alias", "secret", "login", "created", "expires", "enabled", "single_use")
        ),
    )
    return wire.json_response(_token_json(row))


def _check_owner(req: EmuRequest, login_name: str) -> None:
    """``AliasTokenRestlet``'s checks: never for guest; non-admins for themselves only."""
    if not login_name or login_name.lower() == GUEST:
        raise HTTPError(403, NOT_FOR_GUEST)
    user = req.user
    if user is None or (login_name.lower() != user.login.lower() and not user.is_admin):
        raise HTTPError(403, OWN_TOKENS_ONLY)


@route("GET", "/data/services/tokens/issue")
def issue_token(req: EmuRequest) -> Response:
    """``GET /data/services/tokens/issue``: a new alias token for the caller."""
    _check_owner(req, req.login)
    return _issue(req, req.login)


@route("GET", "/data/services/tokens/issue/user/{login}")
def issue_token_for(req: EmuRequest) -> Response:
    """``GET /data/services/tokens/issue/user/{login}``: own tokens, or anyone's for admins."""
    login_name = req.params["login"]
    _check_owner(req, login_name)
    user = req.state.get_user(login_name)
    if user is None:
        raise HTTPError(400, f"An error occurred retrieving the user: {login_name}")
    return _issue(req, user.login)


@route("GET", "/data/services/tokens/show")
def show_tokens(req: EmuRequest) -> Response:
    """``GET /data/services/tokens/show``: the caller's tokens."""
    rows = req.state.store.query(
        "SELECT * FROM alias_tokens WHERE login=? AND enabled=1", (req.login,)
    )
    return wire.json_response([_token_json(dict(r)) for r in rows])


@route("GET", "/data/services/tokens/validate/{alias}/{secret}")
def validate_token(req: EmuRequest) -> Response:
    """``GET /data/services/tokens/validate/{alias}/{secret}``: ``{"valid": login|null}``."""
    row = req.state.store.one(
        "SELECT * FROM alias_tokens WHERE alias=? AND enabled=1", (req.params["alias"],)
    )
    if row is None:
        raise HTTPError(404, f"Can't find an alias token with the alias {req.params['alias']}")
    _check_owner(req, str(row["login"]))
    same = secrets.compare_digest(
        str(row["secret"]).encode("utf-8"), req.params["secret"].encode("utf-8")
    )
    valid = row["login"] if same else None
    return wire.json_response({"valid": valid})


@route("GET", "/data/services/tokens/invalidate/{alias}")
def invalidate_token(req: EmuRequest) -> Response:
    """``GET /data/services/tokens/invalidate/{alias}``: disable a token."""
    row = req.state.store.one(
        "SELECT login FROM alias_tokens WHERE alias=?", (req.params["alias"],)
    )
    if row is None:
        raise HTTPError(404, f"Can't find an alias token with the alias {req.params['alias']}")
    _check_owner(req, str(row["login"]))
    req.state.store.execute(
        "UPDATE alias_tokens SET enabled=0 WHERE alias=?", (req.params["alias"],)
    )
    return wire.json_response({"result": "OK"})


@route("GET", "/app/template/Login.vm", auth=False)
def login_page(req: EmuRequest) -> Response:
    """``GET /app/template/Login.vm`` (open): the login page browsers are redirected to."""
    return wire.text_response(LOGIN_PAGE, media_type="text/html")


def tick(state: EmulatorState) -> bool:
    """Drop idle-expired HTTP sessions (Tomcat's session reaper).

    Args:
        state: Emulator state.

    Returns:
        False: sweeping sessions is never pending work.
    """
    state.sweep_sessions()
    return False


ROUTES = [
    login_page,
    login,
    current_session,
    logout,
    services_auth,
    who_am_i,
    username,
    build_info,
    build_info_key,
    issue_token,
    issue_token_for,
    show_tokens,
    validate_token,
    invalidate_token,
]
