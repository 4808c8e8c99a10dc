"""The one exception tree of xnat-prefect, and the mapping from XNAT replies to it.

```
XNATError
├── XNATRequestError                 the request got no HTTP reply
│   ├── XNATTimeoutError
│   └── XNATConnectionError
├── XNATStatusError                  XNAT answered >= 400 (or another unexpected status)
│   ├── BadRequestError              400
│   ├── AuthenticationError          401 (and failed logins)
│   ├── PermissionDeniedError        403
│   ├── ResourceNotFoundError        404
│   ├── ConflictError                409
│   ├── RateLimitedError             429
│   └── ServerError                  5xx
├── UnexpectedResponseError          a 2xx that is really an error (login page, error text)
├── OperationError                   a job or transfer ended badly
│   ├── ArchiveFailed, PipelineFailed, PipelineTimedOut, PipelineKilled,
│   └── TransferError, VerificationError, SessionNotSettled
└── InvalidInputError (also ValueError)
```

Messages never contain passwords, tokens or session ids: server text is cleaned with
:func:`xnat_prefect._redact.redact` and paths are shown without their query string.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from collections.abc import Iterable
from typing import Any

import httpx

from xnat_prefect._net_hints import connect_hint
from xnat_prefect._redact import redact, registered_secrets

__all__ = [
    "MAX_MESSAGE_CHARS",
    "ArchiveFailed",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InvalidInputError",
    "OperationError",
    "PermissionDeniedError",
    "PipelineFailed",
    "PipelineKilled",
    "PipelineTimedOut",
    "RateLimitedError",
    "ResourceNotFoundError",
    "ServerError",
    "SessionNotSettled",
    "TransferError",
    "UnexpectedResponseError",
    "VerificationError",
    "XNATConnectionError",
    "XNATError",
    "XNATRequestError",
    "XNATStatusError",
    "XNATTimeoutError",
    "clean_message",
    "error_from_response",
    "error_from_transport",
    "is_transient",
    "parse_retry_after",
    "raise_for_status",
]

MAX_MESSAGE_CHARS = 500
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def _rebuild(cls: type[XNATError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> XNATError:
    return cls(*args, **kwargs)


class XNATError(Exception):
    """Base class of every error raised by xnat-prefect.

    Subclasses with keyword-only fields define ``_pickle_args`` so they survive pickling
    (Prefect serializes task exceptions).
    """

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        return None

    def __reduce__(self) -> Any:
        spec = self._pickle_args()
        if spec is None:
            return super().__reduce__()
        args, kwargs = spec
        return (_rebuild, (type(self), args, kwargs), self.__dict__)


class InvalidInputError(XNATError, ValueError):
    """A caller passed something unusable; the message names the thing and the fix."""


# --- request errors ---------------------------------------------------------------------------


class XNATRequestError(XNATError):
    """The request did not get an HTTP reply (network failure, timeout).

    Args:
        message: What happened (no secrets).
        method: HTTP method.
        path: Request path without the query string.
        request_sent: False when the request provably never reached the server (connection
            refused, connect timeout, pool timeout): only then is a non-idempotent request safe
            to resend.
        transient: False when retrying cannot help (a TLS certificate or protocol mismatch);
            None leaves the decision to :func:`is_transient` (network failures are transient).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        request_sent: bool = True,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.request_sent = request_sent
        self.transient = transient

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = {"method": self.method, "path": self.path, "request_sent": self.request_sent}
        return (self.message,), {**kwargs, "transient": self.transient}


class XNATTimeoutError(XNATRequestError):
    """Connecting, sending, waiting for or reading the reply took longer than the timeout."""


class XNATConnectionError(XNATRequestError):
    """The connection could not be opened, or broke before a complete reply arrived."""


# --- status errors ----------------------------------------------------------------------------


class XNATStatusError(XNATError):
    """XNAT answered with an error status.

    Args:
        status_code: HTTP status.
        message: XNAT's reason, cleaned, truncated and redacted.
        method: HTTP method of the request.
        path: Request path, without query string or credentials.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.

    Example:
        ```python
        try:
            client.get("/data/projects/NOPE", params={"format": "json"})
        except ResourceNotFoundError as exc:
            print(exc.status_code, exc.message)
        ```
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.method = method
        self.path = path
        self.retry_after = retry_after
        where = f"{method} {path} -> " if method and path else ""
        super().__init__(f"{where}HTTP {status_code}: {message}")

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = {"method": self.method, "path": self.path, "retry_after": self.retry_after}
        return (self.status_code, self.message), kwargs


class BadRequestError(XNATStatusError):
    """400: XNAT rejected the request (bad parameter, validation failure)."""


class AuthenticationError(XNATStatusError):
    """401, or a login that failed: the credentials are wrong, expired or anonymous."""


class PermissionDeniedError(XNATStatusError):
    """403: the object is visible but the action is not allowed for this user."""


class ResourceNotFoundError(XNATStatusError):
    """404: the object does not exist or is not visible to this user."""


class ConflictError(XNATStatusError):
    """409: label in use, already shared, prearchive session locked, archive conflict."""


class RateLimitedError(XNATStatusError):
    """429: too many requests; ``retry_after`` says how long the server wants us to wait."""


class ServerError(XNATStatusError):
    """5xx: the server failed (500 is not retried by default; 502/503/504 are transient)."""


class UnexpectedResponseError(XNATError):
    """A reply that looks successful but is not.

    XNAT's 200-with-error text, a login page, a body that is not the JSON expected.

    Args:
        message: What was wrong (server text cleaned and redacted).
        status_code: The HTTP status received.
        method: HTTP method.
        path: Request path without the query string.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.method = method
        self.path = path

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = {"status_code": self.status_code, "method": self.method, "path": self.path}
        return (self.message,), kwargs


# --- outcome errors ---------------------------------------------------------------------------


class OperationError(XNATError):
    """A long-running operation (archive, pipeline, transfer) ended in a bad state.

    Args:
        message: What failed and what to do.
        target: What it was about (job id, session URI, file path).
        status: The last status seen, when there is one.
    """

    def __init__(
        self, message: str, *, target: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.status = status

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.message,), {"target": self.target, "status": self.status}


class ArchiveFailed(OperationError):  # noqa: N818 - name fixed by the seed
    """Archiving a prearchive session failed (conflict, error status, XNAT error text)."""


class PipelineFailed(OperationError):  # noqa: N818
    """A pipeline / container job ended Failed."""


class PipelineTimedOut(OperationError):  # noqa: N818
    """A pipeline / container job did not reach a terminal state before the deadline."""


class PipelineKilled(OperationError):  # noqa: N818
    """A pipeline / container job was killed."""


class TransferError(OperationError):
    """An upload or download did not complete (some files failed)."""


class VerificationError(OperationError):
    """Transferred data does not match (checksum, size or count mismatch)."""


class SessionNotSettled(OperationError):  # noqa: N818
    """A prearchive/archive session did not reach a stable state before the deadline."""


_STATUS_CLASSES: dict[int, type[XNATStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ResourceNotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}

_H3_RE = re.compile(r"<h3[^>]*>(.*?)</h3>", re.IGNORECASE | re.DOTALL)
_TOMCAT_MESSAGE_RE = re.compile(
    r"<b>\s*(?:message|description)\s*</b>\s*(?:<u>)?(.*?)(?:</u>)?\s*</p>",
    re.IGNORECASE | re.DOTALL,
)
_H1_RE = re.compile(r"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SCRIPT_RE = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


def _strip_html(fragment: str) -> str:
    text = _SCRIPT_RE.sub(" ", fragment)
    text = _TAG_RE.sub(" ", text)
    return _SPACE_RE.sub(" ", html.unescape(text)).strip()


def _truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _message_from_html(body: str) -> str:
    for pattern in (_H3_RE, _TOMCAT_MESSAGE_RE):
        match = pattern.search(body)
        if match and _strip_html(match.group(1)):
            return _strip_html(match.group(1))
    for pattern in (_H1_RE, _TITLE_RE):
        match = pattern.search(body)
        if match and _strip_html(match.group(1)) not in ("", "Status page"):
            return _strip_html(match.group(1))
    return _strip_html(body)


def _message_from_json(body: str) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if isinstance(payload, dict):
        for key in ("message", "error_description", "error", "detail", "status"):
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return _SPACE_RE.sub(" ", body).strip()


def clean_message(body: str, *, secrets: Iterable[str] = ()) -> str:
    """Turn an XNAT error body into one readable, redacted line.

    Restlet status pages give the text inside ``<h3>``; Tomcat pages their ``Message`` paragraph
    (else their heading); ``/xapi`` replies are plain text or JSON with a ``message``.

    Args:
        body: Response text.
        secrets: Secrets to mask besides the registered ones.

    Returns:
        At most :data:`MAX_MESSAGE_CHARS` characters (empty when the body says nothing).

    Example:
        ```python
        clean_message("<html><h3>Unable to find the specified scan.</h3></html>")
        ```
    """
    text = body.strip()
    if not text:
        return ""
    if text.startswith("<") or "<html" in text[:200].lower():
        message = _message_from_html(text)
    elif text.startswith(("{", "[")):
        message = _message_from_json(text) or text
    else:
        message = _SPACE_RE.sub(" ", text).strip()
    message = redact(message, [*registered_secrets(), *secrets])
    return _truncate(message)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date.

    Args:
        value: The header value.
        now: Current epoch seconds (for tests); ``time.time()`` by default.

    Returns:
        Seconds to wait (>= 0), or None when absent or unparseable.

    Example:
        ```python
        parse_retry_after("2")  # 2.0
        ```
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:
        return None


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text
    except (httpx.ResponseNotRead, httpx.StreamError):
        return ""
    except (UnicodeDecodeError, LookupError):
        return response.content.decode("utf-8", errors="replace")


def error_from_response(response: httpx.Response) -> XNATStatusError:
    """Build the exception for an XNAT error reply (the reply must have been read).

    Args:
        response: A response with status >= 400 (any other status gives a generic
            :class:`XNATStatusError`).

    Returns:
        The matching :class:`XNATStatusError` subclass with a clean, redacted message, the method
        and the path (without query string).

    Example:
        ```python
        response = client.get("/data/projects/P", params={"format": "json"}, retry=False)
        raise error_from_response(response)
        ```
    """
    status = response.status_code
    request = _request_of(response)
    method = request.method if request is not None else None
    path = redact(request.url.path, registered_secrets()) if request is not None else None
    message = clean_message(_body_text(response))
    if not message:
        message = response.reason_phrase or "no details given"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = ServerError if 500 <= status < 600 else XNATStatusError
    return cls(status, message, method=method, path=path, retry_after=retry_after)


def raise_for_status(response: httpx.Response) -> httpx.Response:
    """Raise the mapped error for a status >= 400, else return the response.

    Args:
        response: A read response.

    Returns:
        The same response.

    Raises:
        XNATStatusError: The mapped subclass for an error status.

    Example:
        ```python
        raise_for_status(http.get(url)).json()
        ```
    """
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def is_transient(exc: BaseException, *, server_errors: bool = False) -> bool:
    """Whether retrying may succeed: timeouts, connection failures, 429, 502, 503, 504.

    400/401/403/404/409 and bad input are never transient. A 500 is not transient unless
    ``server_errors`` is set. An error that knows better carries a boolean ``transient``
    attribute (the DICOM network errors do: a refused connection is, a rejected AE title is not).

    Args:
        exc: The exception raised.
        server_errors: Also treat 500 and other 5xx as transient.

    Returns:
        True when a retry is reasonable.

    Example:
        ```python
        try:
            client.get("/data/projects")
        except XNATError as exc:
            retry_later = is_transient(exc)
        ```
    """
    declared = getattr(exc, "transient", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(exc, (XNATTimeoutError, XNATConnectionError)):
        return True
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(exc, XNATStatusError):
        if exc.status_code in TRANSIENT_STATUSES:
            return True
        return server_errors and 500 <= exc.status_code < 600
    return False


def error_from_transport(
    exc: httpx.HTTPError,
    *,
    method: str | None = None,
    path: str | None = None,
    server: str | None = None,
) -> XNATRequestError:
    """Map an httpx transport failure to :class:`XNATTimeoutError` / :class:`XNATConnectionError`.

    ``request_sent`` is False only when the request provably never reached the server: a refused
    or failed connection, a connect timeout, or no free connection in the pool. A failed
    connection names the server and the fix (:func:`~xnat_prefect._net_hints.connect_hint`).

    Args:
        exc: The httpx exception.
        method: HTTP method.
        path: Request path without query string.
        server: ``scheme://host:port`` of the server, named in connection errors.

    Returns:
        The exception to raise (``raise error_from_transport(exc, ...) from exc``).

    Example:
        ```python
        try:
            http.send(request)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, method="GET", path="/data/projects") from exc
        ```
    """
    secrets = registered_secrets()
    path = redact(path, secrets) if path else path
    server = redact(server, secrets) if server else server
    where = f"{method} {path}" if method and path else "request"
    detail = redact(str(exc), secrets) or type(exc).__name__
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        at = f" to {server}" if server else ""
        return XNATTimeoutError(
            f"{where}: timed out before the request was sent{at} ({type(exc).__name__}: {detail})",
            method=method,
            path=path,
            request_sent=False,
        )
    if isinstance(exc, httpx.TimeoutException):
        return XNATTimeoutError(
            f"{where}: timed out waiting for XNAT ({type(exc).__name__}: {detail})",
            method=method,
            path=path,
        )
    if isinstance(exc, httpx.ConnectError):
        hint, transient = connect_hint(detail, server)
        return XNATConnectionError(
            f"{where}: {hint}",
            method=method,
            path=path,
            request_sent=False,
            transient=transient,
        )
    if isinstance(exc, httpx.TransportError):
        return XNATConnectionError(
            f"{where}: the connection failed before a complete reply ({type(exc).__name__}: "
            f"{detail})",
            method=method,
            path=path,
        )
    return XNATRequestError(f"{where}: {type(exc).__name__}: {detail}", method=method, path=path)
