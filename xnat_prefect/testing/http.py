"""The emulator's small request/route vocabulary shared by every route module.

Route handlers are plain synchronous functions ``handler(req: EmuRequest) -> Response`` run in
a worker thread. They raise :class:`HTTPError` for XNAT error replies; the dispatcher renders
it as XNAT does (Restlet status page under ``/data``, plain text under ``/xapi``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, QueryParams, UploadFile
from starlette.responses import Response

if TYPE_CHECKING:
    from xnat_prefect.testing.config import User
    from xnat_prefect.testing.state import EmulatorState

Handler = Callable[["EmuRequest"], Response]


class HTTPError(Exception):
    """An XNAT error reply.

    Args:
        status_code: HTTP status.
        message: Reason text (shown inside ``<h3>`` on ``/data`` routes).
        headers: Extra response headers.
    """

    def __init__(
        self, status_code: int, message: str = "", *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status_code} {message}")
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Route:
    """One emulated endpoint.

    Attributes:
        methods: HTTP methods served.
        path: Starlette-style template (``/data/projects/{project}``; ``{x:path}`` for rest).
        handler: The function answering it.
        auth: False for XNAT's open URLs (login, buildInfo).
        admin: True for admin-only endpoints (403 for others).
    """

    methods: tuple[str, ...]
    path: str
    handler: Handler
    auth: bool = True
    admin: bool = False


def route(
    methods: str | Sequence[str], path: str, *, auth: bool = True, admin: bool = False
) -> Callable[[Handler], Route]:
    """Decorator turning a handler into a :class:`Route`.

    Args:
        methods: One method or several.
        path: Path template.
        auth: Whether a logged-in user is required.
        admin: Whether the user must be a site administrator.

    Returns:
        A decorator returning the Route.
    """
    names = (methods,) if isinstance(methods, str) else tuple(methods)

    def wrap(handler: Handler) -> Route:
        return Route(tuple(m.upper() for m in names), path, handler, auth=auth, admin=admin)

    return wrap


@dataclass
class EmuRequest:
    """What a handler sees of one request.

    Attributes:
        state: The emulator's state (store, sessions, timing, faults…).
        method: HTTP method.
        path: Normalized path (``/REST`` and ``/data/archive`` folded into ``/data``).
        raw_path: Path as sent.
        params: Path parameters from the route template.
        query: Query parameters (multi-valued).
        headers: Request headers.
        user: The authenticated user, or None on open routes.
        body_path: Temp file with the raw body (None when empty or multipart).
        uploads: Multipart file parts.
        form: Form fields (urlencoded body or multipart non-file parts), first value of each.
        form_lists: Every value of each form field.
        route_key: ``METHOD /template`` of the matched route (metrics key).
        jsession_id: The session the request authenticated with (if any).
    """

    state: EmulatorState
    method: str
    path: str
    raw_path: str
    params: dict[str, str]
    query: QueryParams
    headers: Headers
    user: User | None = None
    body_path: Path | None = None
    uploads: list[UploadFile] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    form_lists: dict[str, list[str]] = field(default_factory=dict)
    route_key: str = ""
    jsession_id: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def login(self) -> str:
        """The acting user's login (``guest`` when anonymous)."""
        return self.user.login if self.user else "guest"

    @property
    def content_type(self) -> str:
        """The request's media type, lower-cased, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def arg(self, name: str, default: str | None = None) -> str | None:
        """A parameter from the query string, else from the form body (XNAT merges both).

        Args:
            name: Parameter name (exact case).
            default: Value when absent.

        Returns:
            The value or the default.
        """
        value = self.query.get(name)
        if value is None:
            value = self.form.get(name)
        return default if value is None else value

    def args(self, name: str) -> list[str]:
        """All values of a repeatable parameter (query then form).

        Args:
            name: Parameter name.

        Returns:
            The values in order.
        """
        values = list(self.query.getlist(name))
        if name in self.form_lists:
            values.extend(self.form_lists[name])
        elif name in self.form:
            values.append(self.form[name])
        return values

    def flag(self, name: str) -> bool:
        """XNAT's boolean parameter rule: present and not ``false``/``0`` means true.

        Args:
            name: Parameter name.

        Returns:
            The truth value.
        """
        value = self.arg(name)
        if value is None:
            return False
        return value.strip().lower() not in ("false", "0")

    @property
    def fmt(self) -> str | None:
        """The ``format`` query parameter, lower-cased."""
        value = self.query.get("format")
        return value.lower() if value else None

    def body_bytes(self) -> bytes:
        """The raw body (small bodies only: JSON, XML, text).

        Returns:
            The bytes, empty when there was no body.
        """
        if self.body_path is None:
            return b""
        return self.body_path.read_bytes()

    def body_text(self) -> str:
        """The raw body decoded as UTF-8.

        Returns:
            The text.
        """
        return self.body_bytes().decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Returns:
            The parsed value.

        Raises:
            HTTPError: 400 when the body is not JSON.
        """
        try:
            return json.loads(self.body_bytes() or b"null")
        except ValueError as exc:
            raise HTTPError(400, f"There was an error in the request: {exc}") from exc

    def parse_urlencoded_body(self) -> None:
        """Merge an ``application/x-www-form-urlencoded`` body into :attr:`form`."""
        if self.body_path is not None and self.content_type == "application/x-www-form-urlencoded":
            for key, value in parse_qsl(self.body_text(), keep_blank_values=True):
                self.form.setdefault(key, value)
                self.form_lists.setdefault(key, []).append(value)


def require(condition: bool, status_code: int, message: str) -> None:
    """Raise an :class:`HTTPError` unless the condition holds.

    Args:
        condition: What must be true.
        status_code: Status when it is not.
        message: Reason text.

    Raises:
        HTTPError: When ``condition`` is false.
    """
    if not condition:
        raise HTTPError(status_code, message)
