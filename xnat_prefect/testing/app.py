"""The emulator's ASGI application: path aliases, routing, auth, faults, metrics, error pages.

One dispatcher in front of every route keeps XNAT's cross-cutting behaviour in one place:
``/REST`` and ``/data/archive`` aliases, 401 with a Basic challenge (or a 302 to the login page
for browsers), new JSESSIONs for Basic-authenticated requests, Restlet error pages under
``/data`` and plain-text errors under ``/xapi``, and a loud 404 naming any route the emulator
does not implement.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from xnat_prefect.testing import wire
from xnat_prefect.testing.config import User
from xnat_prefect.testing.faults import FaultRule
from xnat_prefect.testing.http import EmuRequest, HTTPError, Route
from xnat_prefect.testing.sessions import SessionLimitError
from xnat_prefect.testing.state import EmulatorState

LOG = logging.getLogger(__name__)
BROWSER_AGENT = re.compile(r"MSIE|Mozilla|AppleWebKit|Opera")


class DroppedConnectionError(Exception):
    """Raised to make the server abort a connection mid-response (a fault, not a bug)."""


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for connections dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnectionError)


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


def normalize_path(path: str) -> str:
    """Fold XNAT's URL aliases into one form.

    ``/REST/...`` is ``/data/...`` and ``/data/archive/X`` is ``/data/X``.

    Args:
        path: The request path.

    Returns:
        The normalized path, without a trailing slash.
    """
    if path == "/REST" or path.startswith("/REST/"):
        path = "/data" + path[5:]
    if path.startswith("/data/archive/"):
        path = "/data/" + path[len("/data/archive/") :]
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    return path


@dataclass
class _CompiledRoute:
    route: Route
    regex: re.Pattern[str]
    convertors: dict[str, Any]


class EmulatorApp:
    """ASGI callable serving the emulated XNAT.

    Args:
        state: Shared emulator state.
        routes: Every route, most specific first.

    Attributes:
        connection_closer: Set by the server: aborts the TCP connection of the ASGI ``client``
            address it is given and returns whether it found it (used by the ``drop`` fault).
    """

    def __init__(self, state: EmulatorState, routes: list[Route]) -> None:
        self.state = state
        self.connection_closer: Callable[[Any], bool] | None = None
        self._routes = []
        for item in routes:
            regex, _fmt, convertors = compile_path(item.path)
            self._routes.append(_CompiledRoute(item, regex, convertors))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope.

        Args:
            scope: ASGI scope.
            receive: ASGI receive channel.
            send: ASGI send channel.
        """
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        method = request.method.upper()
        path = normalize_path(scope["path"])
        found, params, allowed = self._match(method, path)
        key = f"{method} {found.path if found else '<unmatched>'}"
        with self.state.metrics.in_flight(key):
            await self._serve(request, send, found, params, allowed, method, path, key)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        allowed: list[str] = []
        for compiled in self._routes:
            match = compiled.regex.match(path)
            if match is None:
                continue
            if method not in compiled.route.methods and not (
                method == "HEAD" and "GET" in compiled.route.methods
            ):
                allowed.extend(compiled.route.methods)
                continue
            params = {
                name: str(compiled.convertors[name].convert(value))
                for name, value in match.groupdict().items()
            }
            return compiled.route, params, allowed
        return None, {}, allowed

    async def _serve(
        self,
        request: Request,
        send: Send,
        found: Route | None,
        params: dict[str, str],
        allowed: list[str],
        method: str,
        path: str,
        key: str,
    ) -> None:
        state = self.state
        target = f"{method} {path}"
        body_path: Path | None = None
        form_to_close: Any = None
        try:
            for rule in state.faults.draw(target, ("latency",)):
                await asyncio.sleep(state.faults.latency_seconds(rule))
            cookie = request.cookies.get("JSESSIONID")
            if cookie and state.faults.draw(target, ("expire_session",)):
                state.invalidate_session(cookie)
                state.metrics.count_fault("expire_session")
            early = self._early_fault(state, target)
            if early == "drop":
                await self._drop(request)
                return
            if early is not None and not isinstance(early, str):
                await self._send(early, request, send, key, None)
                return
            if found is None:
                await self._send(self._not_found(method, path, allowed), request, send, key, None)
                return
            req = EmuRequest(
                state=state,
                method=method,
                path=path,
                raw_path=request.url.path,
                params=params,
                query=request.query_params,
                headers=request.headers,
                route_key=key,
            )
            try:
                self._authenticate(req, found, cookie)
                if req.content_type == "multipart/form-data":
                    form = await request.form(max_files=100000, max_fields=100000)
                    form_to_close = form
                    for name, value in form.multi_items():
                        if isinstance(value, UploadFile):
                            req.uploads.append(value)
                        else:
                            req.form.setdefault(name, value)
                            req.form_lists.setdefault(name, []).append(value)
                elif method in ("POST", "PUT", "PATCH", "DELETE"):
                    body_path = await self._spool_body(request, key)
                    req.body_path = body_path
                    req.parse_urlencoded_body()
                response = await run_in_threadpool(found.handler, req)
            except ClientDisconnect:
                # The client went away while sending its body: nobody to answer, not a bug.
                LOG.debug("client disconnected while sending the body of %s", target)
                return
            except HTTPError as exc:
                response = self.error_response(path, exc.status_code, exc.message, exc.headers)
            except DroppedConnectionError:
                raise
            except Exception as exc:  # an emulator bug must reach the client as XNAT's 500
                LOG.exception("emulator handler failed for %s", target)
                response = self.error_response(path, 500, f"Emulator error: {exc!r}")
            for name, value in req.response_headers.items():
                response.headers.append(name, value)
            for rule in state.faults.draw(target, ("error_body",), first_only=True):
                state.metrics.count_fault("error_body")
                response = wire.text_response(rule.body or "The operation failed.", status_code=200)
            truncate = state.faults.draw(target, ("truncate",), first_only=True)
            if truncate:
                state.metrics.count_fault("truncate")
            await self._send(response, request, send, key, truncate[0] if truncate else None)
        finally:
            if form_to_close is not None:
                await form_to_close.close()
            if body_path is not None:
                body_path.unlink(missing_ok=True)

    def _early_fault(self, state: EmulatorState, target: str) -> Response | str | None:
        for rule in state.faults.draw(target, ("drop", "status", "rate_limit"), first_only=True):
            state.metrics.count_fault(rule.kind)
            if rule.kind == "drop":
                return "drop"
            if rule.kind == "rate_limit":
                return Response(
                    "Too many requests",
                    status_code=429,
                    headers={"Retry-After": f"{rule.retry_after:g}"},
                    media_type="text/plain",
                )
            path = target.split(" ", 1)[1]
            return self.error_response(path, rule.status, rule.body or None)
        return None

    async def _drop(self, request: Request) -> None:
        """Close the connection before the status line, as a server or proxy that dies does.

        The request is not processed and the client reads no byte of a reply (it sees the
        connection closed or reset). Without a server hook (the app used outside
        :class:`~xnat_prefect.testing.server.XNATEmulator`) the connection is broken by raising
        :class:`DroppedConnectionError`.
        """
        closer = self.connection_closer
        if closer is not None and closer(request.scope.get("client")):
            # let the event loop run the transport's connection_lost, so uvicorn knows the
            # client is gone and does not try to answer this request itself
            for _ in range(3):
                await asyncio.sleep(0)
            return
        raise DroppedConnectionError("fault injection: connection dropped")

    def _authenticate(self, req: EmuRequest, found: Route, cookie: str | None) -> None:
        state = self.state
        user: User | None = None
        auth_header = req.headers.get("authorization", "")
        if auth_header.lower().startswith("basic "):
            login, password = _decode_basic(auth_header)
            current = state.session_user(cookie) if cookie else None
            if current is not None and current.login == login.split("/", 1)[-1]:
                # Spring's BasicAuthenticationFilter: the session already holds this user, so
                # the header is not re-checked and no new session is made.
                user, req.jsession_id = current, cookie
            else:
                user = self._basic_login(req, login, password, found)
        elif cookie:
            user = state.session_user(cookie)
            if user is not None:
                req.jsession_id = cookie
        req.user = user
        if not found.auth:
            return
        if user is None:
            if BROWSER_AGENT.search(req.headers.get("user-agent", "")):
                raise HTTPError(302, "", headers={"Location": "/app/template/Login.vm"})
            raise HTTPError(401, "")
        if found.admin and not user.is_admin:
            raise HTTPError(403, "")

    def _basic_login(self, req: EmuRequest, login: str, password: str, found: Route) -> User | None:
        """Check Basic credentials and open a server session (``Set-Cookie``) for them."""
        state = self.state
        user = state.check_password(login, password)
        if user is not None:
            try:
                session_id = state.create_session(user.login)
            except SessionLimitError as exc:
                if found.auth:
                    raise HTTPError(401, str(exc)) from exc
                return None
            req.jsession_id = session_id
            req.response_headers["set-cookie"] = f"JSESSIONID={session_id}; Path=/; HttpOnly"
        elif found.auth:
            raise HTTPError(401, "Login attempt failed. Please try again.")
        return user

    async def _spool_body(self, request: Request, key: str) -> Path | None:
        handle, name = tempfile.mkstemp(prefix="body-", dir=self.state.store.tmp_dir)
        path = Path(name)
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        try:
            with open(handle, "wb") as sink:
                # Disk writes run in a worker thread, 1 MiB at a time, so a big upload never
                # blocks the event loop that serves every other request.
                async for chunk in request.stream():
                    if chunk:
                        pending.append(chunk)
                        pending_size += len(chunk)
                        size += len(chunk)
                    if pending_size >= 1 << 20:
                        await run_in_threadpool(sink.write, b"".join(pending))
                        pending, pending_size = [], 0
                if pending:
                    await run_in_threadpool(sink.write, b"".join(pending))
        except BaseException:
            path.unlink(missing_ok=True)  # e.g. ClientDisconnect: keep no half body
            self.state.metrics.add_bytes(key, received=size)
            raise
        self.state.metrics.add_bytes(key, received=size)
        if size == 0:
            path.unlink(missing_ok=True)
            return None
        return path

    def _not_found(self, method: str, path: str, allowed: list[str]) -> Response:
        if allowed:
            return self.error_response(path, 405, f"Method {method} not allowed on {path}")
        return self.error_response(
            path,
            404,
            f"XNAT emulator: no route for {method} {path} "
            "(not an XNAT endpoint, or not implemented by the emulator; see docs/emulator.md)",
        )

    def error_response(
        self, path: str, status: int, message: str | None, headers: dict[str, str] | None = None
    ) -> Response:
        """Render an error the way XNAT does for this path.

        Args:
            path: Normalized request path.
            status: HTTP status.
            message: Reason text.
            headers: Extra headers.

        Returns:
            The response.
        """
        extra = dict(headers or {})
        if status == 401:
            extra.setdefault("WWW-Authenticate", f'Basic realm="{self.state.config.site_id}"')
            page = (
                '<!doctype html><html lang="en"><head><title>HTTP Status 401 - Unauthorized'
                "</title></head><body><h1>HTTP Status 401 - Unauthorized</h1></body></html>"
            )
            return Response(page, status_code=401, headers=extra, media_type="text/html")
        if status == 302:
            return Response("", status_code=302, headers=extra)
        if path.startswith("/xapi") or path.startswith("/emulator"):
            return Response(
                message or "", status_code=status, headers=extra, media_type="text/plain"
            )
        return Response(
            wire.status_page(status, message),
            status_code=status,
            headers=extra,
            media_type="text/html",
        )

    async def _send(
        self,
        response: Response,
        request: Request,
        send: Send,
        key: str,
        truncate: FaultRule | None,
    ) -> None:
        metrics = self.state.metrics
        scope = dict(request.scope)
        receive = request.receive
        target = f"{request.method.upper()} {normalize_path(request.url.path)}"
        honor_range = self.state.options.honor_range
        # XNAT implements no HTTP Range: never advertise it, and answer 200 with the whole
        # body to a Range request (FileResponse only sees the header if we keep it).
        if not honor_range and "accept-ranges" in response.headers:
            del response.headers["accept-ranges"]
        has_range = any(k.lower() == b"range" for k, _ in scope["headers"])
        ignore = has_range and not honor_range
        if has_range and honor_range and self.state.faults.draw(target, ("ignore_range",)):
            metrics.count_fault("ignore_range")
            ignore = True
        if ignore:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
        declared = int(response.headers.get("content-length", "0") or 0)
        limit = None
        if truncate is not None and truncate.truncate_at is not None:
            limit = truncate.truncate_at
        elif truncate is not None and declared:
            limit = max(1, declared // 2)
        elif truncate is not None:
            limit = 64 * 1024  # a streamed body (zip/tar) has no length: cut after 64 KiB
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                # the status actually sent (a FileResponse decides 206 only when it runs)
                metrics.record_status(key, int(message["status"]))
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if limit is not None and sent + len(body) >= limit:
                    keep = body[: max(0, limit - sent)]
                    await send({"type": "http.response.body", "body": keep, "more_body": True})
                    metrics.add_bytes(key, sent=len(keep))
                    raise DroppedConnectionError("fault injection: truncated body")
                sent += len(body)
                metrics.add_bytes(key, sent=len(body))
            await send(message)

        await response(scope, receive, counting_send)


def _decode_basic(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1].strip()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    login, _, password = decoded.partition(":")
    return login, password
