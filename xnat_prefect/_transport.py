"""Request plumbing of :class:`xnat_prefect.client.XNATClient`.

Option types, rewindable bodies, query-parameter cleaning, base-URL and TLS settings, and
XNAT's 200-with-error check.

Kept apart from ``client.py`` so each module stays small; nothing here holds state.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypedDict
from urllib.parse import urlsplit

import httpx

from xnat_prefect._auth import looks_like_login_page, server_of, session_cookie_header
from xnat_prefect._redact import get_logger
from xnat_prefect.errors import InvalidInputError, clean_message, error_from_transport

__all__ = [
    "Params",
    "RequestOptions",
    "RewindableBody",
    "check_body_for_error",
    "clean_params",
    "normalize_base_url",
    "send",
    "session_lost",
    "tls_verify_setting",
    "with_param",
]
logger = get_logger(__name__)

MAX_REDIRECTS = 10

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


class RequestOptions(TypedDict, total=False):
    """Keyword options accepted by :meth:`XNATClient.request` and its helpers."""

    params: Params | None
    data: Mapping[str, Any] | None
    content: bytes | str | IO[bytes] | Any | None
    files: Any
    json: Any
    headers: Mapping[str, str] | None
    timeout: float | None
    retry: bool | None
    allow_redirects: bool


class RewindableBody:
    """Remembers where seekable request bodies start, so a retry can resend them.

    ``bytes``/``str`` bodies are always resendable; file objects (in ``content`` or ``files``)
    are if they are seekable; iterators and non-seekable streams are not (``rewindable`` is
    False and the client then neither retries nor resends after a re-login).

    Args:
        content: The ``content`` option.
        files: The ``files`` option.
    """

    def __init__(self, content: Any, files: Any) -> None:
        self.marks: list[tuple[Any, int]] = []
        self.rewindable = True
        if content is not None and not isinstance(content, (bytes, str, bytearray)):
            self._track(content)
        if files:
            values = files.values() if isinstance(files, Mapping) else (v for _, v in files)
            for value in values:
                item = value[1] if isinstance(value, tuple) and len(value) > 1 else value
                if not isinstance(item, (bytes, str, bytearray)):
                    self._track(item)

    def _track(self, stream: Any) -> None:
        try:
            if not stream.seekable():
                raise OSError("not seekable")
            self.marks.append((stream, stream.tell()))
        except (AttributeError, OSError, ValueError):
            self.rewindable = False

    def rewind(self) -> None:
        """Seek every tracked stream back to where it started."""
        for stream, position in self.marks:
            stream.seek(position)


def clean_params(params: Params | None) -> list[tuple[str, Any]] | None:
    """Query parameters as pairs, without None values.

    httpx would send ``key=`` for None, which XNAT reads as a true flag. A list value repeats
    the key (``src=a&src=b``).

    Args:
        params: Mapping or pairs.

    Returns:
        The pairs (None when ``params`` is None).
    """
    if params is None:
        return None
    pairs = params.items() if isinstance(params, Mapping) else params
    cleaned: list[tuple[str, Any]] = []
    for key, value in pairs:
        if isinstance(value, (list, tuple)):
            cleaned.extend((key, item) for item in value if item is not None)
        elif value is not None:
            cleaned.append((key, value))
    return cleaned


def with_param(params: Params | None, key: str, value: str, *, replace: bool) -> Params:
    """Add one parameter.

    Args:
        params: Existing parameters.
        key: Name.
        value: Value.
        replace: Replace an existing value (else keep it).

    Returns:
        Parameters as pairs.
    """
    pairs = list(params.items() if isinstance(params, Mapping) else (params or []))
    if any(k == key for k, _ in pairs):
        if not replace:
            return pairs
        pairs = [(k, v) for k, v in pairs if k != key]
    return [*pairs, (key, value)]


def normalize_base_url(base_url: str) -> str:
    """Validate an XNAT root URL and drop its trailing slash.

    Args:
        base_url: ``https://host[:port][/context]``.

    Returns:
        The normalized URL.

    Raises:
        InvalidInputError: Not http(s), no host, credentials, query or fragment in it.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"base_url must look like https://xnat.example.org (got {parts.scheme or 'no'} "
            "scheme); include http:// or https://"
        )
    if parts.username or parts.password:
        raise InvalidInputError(
            "base_url must not contain credentials; pass username/password to XNATClient"
        )
    if parts.query or parts.fragment:
        raise InvalidInputError("base_url must not have a query string or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def tls_verify_setting(verify: bool, ca_bundle: str | Path | None) -> ssl.SSLContext | bool:
    """The httpx ``verify`` value for a verify flag and an optional CA bundle.

    Args:
        verify: Verify certificates.
        ca_bundle: PEM file of CAs to trust.

    Returns:
        An SSL context (with a bundle) or the flag.

    Raises:
        InvalidInputError: Bundle missing, or given with ``verify=False``.
    """
    if ca_bundle is None:
        return verify
    if not verify:
        raise InvalidInputError("ca_bundle was given with verify=False; drop one of them")
    bundle = Path(ca_bundle).expanduser()
    if not bundle.is_file():
        raise InvalidInputError(f"ca_bundle {str(bundle)!r} is not a file; pass a PEM CA bundle")
    return ssl.create_default_context(cafile=str(bundle))


def check_body_for_error(text: str) -> str | None:
    """Spot XNAT's "200 OK with an error inside" replies (archive, move, launch, import).

    Success bodies of those calls are URI lists, JSON reports or empty. An HTML page (status
    page, login page), a JSON report with ``"status": "failure"`` or text that reads like an error
    (``Error…``, ``…Exception…``, ``Unable to…``, ``There was an error…``) is an error.

    Args:
        text: Response body.

    Returns:
        The cleaned, redacted error message, or None when the body looks like success.

    Example:
        ```python
        message = check_body_for_error(response.text)
        if message:
            raise ArchiveFailed(message, target=src)
        ```
    """
    body = text.strip()
    if not body:
        return None
    first = body.splitlines()[0].strip()
    if first.startswith(("/", "http://", "https://")) and " " not in first:
        return None
    if body.startswith(("{", "[")):
        try:
            payload = jsonlib.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, Mapping):
            status = str(payload.get("status", "")).lower()
            if status in ("failure", "failed", "error") or payload.get("error"):
                return clean_message(body) or "XNAT reported a failure"
            return None
        if payload is not None:
            return None
    if body.startswith("<") or "<html" in body[:200].lower():
        if looks_like_login_page(body):
            return "XNAT answered with its login page (the session is not logged in)"
        return clean_message(body) or "XNAT answered with an HTML page instead of a result"
    lowered = first.lower()
    markers = ("error", "exception", "unable to", "failed", "failure", "could not", "cannot")
    if any(lowered.startswith(m) for m in markers) or "exception" in lowered:
        return clean_message(body)
    if "there was an error" in lowered or lowered.startswith(("java.", "org.nrg", "invalid")):
        return clean_message(body)
    return None


def send(
    http: httpx.Client,
    request: httpx.Request,
    session_id: str | None,
    *,
    stream: bool,
    redirects: bool,
) -> httpx.Response:
    """Send one request with the session cookie, following redirects only if asked.

    The cookie is dropped when a redirect leaves the origin of ``http.base_url``.

    Args:
        http: The shared httpx client.
        request: The built request.
        session_id: JSESSIONID to send (None: anonymous).
        stream: Leave the body unread.
        redirects: Follow up to 10 redirects.

    Returns:
        The response.

    Raises:
        XNATRequestError: Transport failure (mapped from httpx).
    """
    if session_id is not None:
        request.headers["Cookie"] = session_cookie_header(session_id)
    origin = (http.base_url.scheme, http.base_url.netloc)
    try:
        response = http.send(request, stream=stream)
        hops = 0
        while redirects and response.next_request is not None and hops < MAX_REDIRECTS:
            following = response.next_request
            if (following.url.scheme, following.url.netloc) != origin:
                following.headers.pop("Cookie", None)
            response.close()
            response = http.send(following, stream=stream)
            hops += 1
    except httpx.HTTPError as exc:
        raise error_from_transport(
            exc, method=request.method, path=request.url.path, server=server_of(request)
        ) from exc
    logger.debug("%s %s -> %s", request.method, request.url.path, response.status_code)
    return response


def session_lost(response: httpx.Response, *, expect_json: bool) -> bool:
    """Whether a reply means "your session is not logged in".

    A 401; a redirect to a login page; or, when JSON was expected, a 200 HTML login page.

    Args:
        response: The reply (a streamed one is read only in the HTML case).
        expect_json: The caller wants JSON.

    Returns:
        True when a re-login is called for.
    """
    if response.status_code == 401:
        return True
    if response.status_code in (301, 302, 303, 307):
        return "login" in response.headers.get("location", "").lower()
    html = "html" in response.headers.get("content-type", "")
    if expect_json and response.status_code == 200 and html:
        response.read()
        return looks_like_login_page(response.text)
    return False
