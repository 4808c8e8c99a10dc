"""Credentials, the shared JSESSION state and the login exchange used by :class:`XNATClient`.

Login is ``POST /data/JSESSION`` with HTTP Basic (username/password, or alias token/secret as
the Basic pair); the reply carries the session id in a ``JSESSIONID`` cookie (and as the body).
That URL is open, so an anonymous POST also "succeeds": the login is only trusted once
``GET /xapi/users/username`` (falling back to ``GET /data/auth`` on servers without it) names the
user.

Session ids, passwords and secrets are registered with :mod:`xnat_prefect._redact` the moment
they are known.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass, field
from typing import Literal

import httpx

from xnat_prefect._redact import get_logger, register_secret
from xnat_prefect.errors import (
    AuthenticationError,
    InvalidInputError,
    UnexpectedResponseError,
    clean_message,
    error_from_response,
    error_from_transport,
)

__all__ = [
    "Credentials",
    "SessionState",
    "login",
    "logout",
    "looks_like_login_page",
    "server_of",
    "session_alive",
    "session_cookie_header",
]

logger = get_logger(__name__)

LOGIN_PATH = "/data/JSESSION"
WHOAMI_PATH = "/xapi/users/username"
LEGACY_WHOAMI_PATH = "/data/auth"

_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{8,256}$")
_LEGACY_WHOAMI_RE = re.compile(r"User '([^']+)' is logged in")
_LOGIN_PAGE_RE = re.compile(
    r"j_username|j_spring_security_check|id=[\"']?login_form|Login\.vm|"
    r"<title>[^<]*\blog\s*in\b|name=[\"']?password[\"']?[^>]*type=[\"']?password|"
    r"type=[\"']?password[\"']?[^>]*name=[\"']?password",
    re.IGNORECASE,
)


def looks_like_login_page(text: str) -> bool:
    """Whether an HTML body is XNAT's (or a proxy's) login form.

    Args:
        text: Response text.

    Returns:
        True when it has the markers of a login form.
    """
    return bool(_LOGIN_PAGE_RE.search(text[:50_000]))


def session_cookie_header(session_id: str) -> str:
    """The ``Cookie`` header value carrying a session id.

    Args:
        session_id: The JSESSIONID.

    Returns:
        ``JSESSIONID=<id>``.
    """
    return f"JSESSIONID={session_id}"


@dataclass(frozen=True)
class Credentials:
    """What the client logs in with. Secrets are hidden from ``repr``.

    Attributes:
        username: Login name (None with alias tokens or anonymous use).
        password: Password.
        alias_token: Alias token (the UUID ``alias``), sent as the Basic user.
        alias_secret: Alias token secret, sent as the Basic password.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    alias_token: str | None = field(default=None, repr=False)
    alias_secret: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        username: str | None,
        password: str | None,
        alias_token: str | None,
        alias_secret: str | None,
    ) -> Credentials:
        """Validate a credential combination and register its secrets for redaction.

        Args:
            username: Login name.
            password: Password.
            alias_token: Alias token.
            alias_secret: Alias token secret.

        Returns:
            The credentials. An alias token wins when both kinds are given.

        Raises:
            InvalidInputError: When one half of a pair is missing.
        """
        if (alias_token is None) != (alias_secret is None):
            raise InvalidInputError(
                "alias_token and alias_secret go together: pass both (from "
                "GET /data/services/tokens/issue) or neither"
            )
        if alias_token is None and (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise InvalidInputError(f"XNATClient got no {missing}: pass both username and password")
        creds = cls(username, password, alias_token, alias_secret)
        for secret in (password, alias_secret, alias_token):
            register_secret(secret)
        if creds.basic is not None:
            register_secret(":".join(creds.basic))
        return creds

    @property
    def kind(self) -> Literal["alias", "password", "none"]:
        """Which pair is used for login."""
        if self.alias_token is not None:
            return "alias"
        return "password" if self.username is not None else "none"

    @property
    def basic(self) -> tuple[str, str] | None:
        """The HTTP Basic pair sent to ``POST /data/JSESSION`` (None when anonymous)."""
        if self.alias_token is not None and self.alias_secret is not None:
            return (self.alias_token, self.alias_secret)
        if self.username is not None and self.password is not None:
            return (self.username, self.password)
        return None

    def describe(self) -> str:
        """Who is logging in, without secrets.

        Returns:
            ``user 'name'`` or ``an alias token``.
        """
        if self.kind == "alias":
            return "an alias token"
        return f"user {self.username!r}" if self.username else "no credentials"

    def fix_hint(self) -> str:
        """What to check after a refused login.

        Returns:
            A sentence for the error message.
        """
        if self.kind == "alias":
            return (
                "check alias_token/alias_secret (alias tokens expire, by default after 2 days; "
                "issue a new one with GET /data/services/tokens/issue)"
            )
        return "check the username and password"


class SessionState:
    """The client's current JSESSION, shared by all threads using one client.

    ``generation`` increases with every successful login, so a thread that saw a 401 with
    generation ``g`` re-logs in only if the generation is still ``g`` (someone else may already
    have done it). Hold :attr:`lock` while logging in.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._session_id: str | None = None
        self._user: str | None = None
        self.generation = 0
        self.login_count = 0

    def snapshot(self) -> tuple[int, str | None]:
        """The generation and session id to use for one request.

        Returns:
            ``(generation, session_id)``.
        """
        with self.lock:
            return self.generation, self._session_id

    @property
    def session_id(self) -> str | None:
        """The current JSESSIONID (None before login or after logout)."""
        return self._session_id

    @property
    def user(self) -> str | None:
        """The login name XNAT reported for the current session."""
        return self._user

    def install(self, session_id: str, user: str) -> None:
        """Record a successful login.

        Args:
            session_id: The new JSESSIONID.
            user: The login name it belongs to.
        """
        with self.lock:
            self._session_id = session_id
            self._user = user
            self.generation += 1
            self.login_count += 1

    def clear(self) -> None:
        """Forget the session (after logout)."""
        with self.lock:
            self._session_id = None
            self.generation += 1


def _send(http: httpx.Client, request: httpx.Request) -> httpx.Response:
    try:
        return http.send(request, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise error_from_transport(
            exc, method=request.method, path=request.url.path, server=server_of(request)
        ) from exc


def server_of(request: httpx.Request) -> str:
    """``scheme://host:port`` of a request (named in connection errors; never credentials).

    Args:
        request: The request.

    Returns:
        The origin.
    """
    return f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}"


def _session_id_from(response: httpx.Response) -> str | None:
    for name, value in response.cookies.items():
        if name.upper() == "JSESSIONID" and value:
            return value
    text = response.text.strip()
    return text if _SESSION_ID_RE.match(text) else None


def _whoami(http: httpx.Client, session_id: str, base_url: str, creds: Credentials) -> str:
    headers = {"Cookie": session_cookie_header(session_id)}
    response = _send(http, http.build_request("GET", WHOAMI_PATH, headers=headers))
    if response.status_code == 404:
        response = _send(http, http.build_request("GET", LEGACY_WHOAMI_PATH, headers=headers))
        match = _LEGACY_WHOAMI_RE.search(response.text) if response.status_code == 200 else None
        if match:
            return match.group(1)
    elif response.status_code == 200 and not looks_like_login_page(response.text):
        name = response.text.strip()
        if name and name != "guest" and "<" not in name:
            return name
    elif response.status_code not in (401, 302, 200):
        raise error_from_response(response)
    raise AuthenticationError(
        401,
        f"XNAT at {base_url} gave a session to {creds.describe()} but the session is not logged "
        f"in (anonymous): {creds.fix_hint()}",
        method="GET",
        path=WHOAMI_PATH,
    )


def login(http: httpx.Client, creds: Credentials, *, base_url: str) -> tuple[str, str]:
    """Open an authenticated JSESSION and check that it really is logged in.

    Args:
        http: The client's httpx client (its ``base_url`` is the XNAT root).
        creds: The credentials (must not be anonymous).
        base_url: The XNAT URL, for messages.

    Returns:
        ``(session_id, username)``; both registered for redaction.

    Raises:
        AuthenticationError: Credentials refused, or the session is anonymous.
        InvalidInputError: No credentials were configured.
        UnexpectedResponseError: XNAT answered the login with something else than a session
            (a redirect to ``/setup`` on an uninitialized site, say).
        XNATStatusError: Another error status.
        XNATRequestError: Network failure.
    """
    basic = creds.basic
    if basic is None:
        raise InvalidInputError(
            f"cannot log in to {base_url}: the client has no credentials; pass username and "
            "password (or alias_token and alias_secret) to XNATClient"
        )
    token = base64.b64encode(":".join(basic).encode("utf-8")).decode("ascii")
    request = http.build_request("POST", LOGIN_PATH, headers={"Authorization": f"Basic {token}"})
    response = _send(http, request)
    if response.status_code == 401:
        detail = clean_message(response.text)
        raise AuthenticationError(
            401,
            f"XNAT at {base_url} refused the login of {creds.describe()}: {creds.fix_hint()}"
            + (f" (server said: {detail})" if detail else ""),
            method="POST",
            path=LOGIN_PATH,
        )
    if response.status_code >= 400:
        raise error_from_response(response)
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "?").split("?")[0]
        raise UnexpectedResponseError(
            f"XNAT at {base_url} redirected the login to {where}; if that is /setup the site "
            "is not initialized yet, otherwise check the base URL",
            status_code=response.status_code,
            method="POST",
            path=LOGIN_PATH,
        )
    session_id = _session_id_from(response)
    if session_id is None:
        raise UnexpectedResponseError(
            f"XNAT at {base_url} answered the login without a session id; is this an XNAT URL?",
            status_code=response.status_code,
            method="POST",
            path=LOGIN_PATH,
        )
    register_secret(session_id)
    user = _whoami(http, session_id, base_url, creds)
    logger.debug("Logged in to %s as %s", base_url, user)
    return session_id, user


def session_alive(http: httpx.Client, session_id: str | None, *, timeout: float = 10.0) -> bool:
    """Whether a JSESSION is still logged in (``GET /xapi/users/username``; never raises).

    Args:
        http: The client's httpx client.
        session_id: The session to check (None: not alive).
        timeout: Seconds to wait at most.

    Returns:
        False when XNAT answers 401 or its login page; True otherwise (also when it cannot tell).
    """
    if session_id is None:
        return False
    headers = {"Cookie": session_cookie_header(session_id)}
    request = http.build_request("GET", WHOAMI_PATH, headers=headers, timeout=timeout)
    try:
        response = http.send(request, follow_redirects=False)
    except httpx.HTTPError:
        return True
    if response.status_code in (301, 302, 303, 307, 401):
        return False
    return not (response.status_code == 200 and looks_like_login_page(response.text))


def logout(http: httpx.Client, session_id: str, *, timeout: float = 5.0) -> bool:
    """Best-effort ``DELETE /data/JSESSION`` (never raises).

    Args:
        http: The client's httpx client.
        session_id: The session to invalidate.
        timeout: Seconds to wait at most.

    Returns:
        True when XNAT acknowledged the logout.
    """
    request = http.build_request(
        "DELETE",
        LOGIN_PATH,
        headers={"Cookie": session_cookie_header(session_id)},
        timeout=timeout,
    )
    try:
        response = http.send(request, follow_redirects=False)
    except httpx.HTTPError as exc:
        logger.debug("Logout failed (ignored): %s", type(exc).__name__)
        return False
    except RuntimeError:  # the httpx client was already closed
        return False
    return response.status_code < 400
