"""``XNATClient``: a synchronous, thread-safe httpx client for XNAT.

* Login with ``POST /data/JSESSION`` (HTTP Basic once), then every request carries the
  ``JSESSIONID`` cookie. The login is verified with ``GET /xapi/users/username``.
* A 401 (or XNAT's login page where JSON was expected) mid-work triggers a transparent
  re-login and a resend (again, up to 3 times, only if the fresh session died too).
  Re-login is de-duplicated across threads: a lock plus a session generation counter, so N
  threads hitting the same expired session cause one login.
* Errors map to :mod:`xnat_prefect.errors`; transient ones are retried with tenacity
  (:mod:`xnat_prefect._retry`): GET/HEAD/PUT/DELETE/OPTIONS always, POST only when the request
  provably never reached the server. A body that is a stream can only be resent if it is
  seekable (``seek``/``tell``); an iterator body disables retries and re-login resends.
* Secrets (password, alias secret, JSESSIONID) never appear in ``repr``, logs or errors.

Example:
    ```python
    with XNATClient("https://xnat.example.org", "admin", "secret") as client:
        projects = client.get_result_set("/data/projects")
    ```
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from typing_extensions import Unpack

from xnat_prefect import __version__
from xnat_prefect._auth import (
    Credentials,
    SessionState,
    login,
    logout,
    session_alive,
)
from xnat_prefect._documents import DocumentReaders
from xnat_prefect._redact import get_logger, install_redaction
from xnat_prefect._retry import RetryPolicy, call_with_retry
from xnat_prefect._transport import (
    RequestOptions,
    RewindableBody,
    check_body_for_error,
    clean_params,
    normalize_base_url,
    send,
    session_lost,
    tls_verify_setting,
)
from xnat_prefect.errors import (
    AuthenticationError,
    InvalidInputError,
    XNATError,
    XNATRequestError,
    error_from_response,
    error_from_transport,
    is_transient,
)

__all__ = ["IDEMPOTENT_METHODS", "RequestOptions", "XNATClient", "check_body_for_error"]

logger = get_logger(__name__)
_HTTPCORE_MODULES = ("connection", "http11", "http2", "proxy", "socks")
# httpx logs every URL at INFO; httpcore logs response headers (Set-Cookie) at DEBUG.
for _name in ("httpx", "httpcore", *(f"httpcore.{m}" for m in _HTTPCORE_MODULES)):
    install_redaction(logging.getLogger(_name))

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
POOL_MAX_CONNECTIONS = 32
POOL_MAX_KEEPALIVE = 16
MAX_REDIRECTS = 10
MAX_RELOGINS = 3
"""Re-logins one request may cause (each after its fresh session was found dead again)."""


class XNATClient(DocumentReaders):
    """A synchronous XNAT REST client sharing one connection pool between threads.

    Args:
        base_url: XNAT root URL, e.g. ``https://xnat.example.org`` (with a context path if the
            site has one). No credentials in it.
        username: Login name.
        password: Password.
        alias_token: Alias token (used instead of username/password when given).
        alias_secret: Alias token secret.
        verify: Verify TLS certificates.
        ca_bundle: PEM file of CA certificates to trust (implies ``verify=True``).
        timeout: Seconds for connect, read, write and pool waits of each request.
        max_retries: Retries of a transient failure (0 disables).
        backoff_base: First retry delay in seconds (doubles each retry, with jitter).
        backoff_max: Cap of one retry delay.
        user_agent: User-Agent header; must not look like a browser (XNAT then redirects to the
            login page instead of answering 401).

    Raises:
        InvalidInputError: Bad URL, half a credential pair, unreadable CA bundle, bad numbers.

    Example:
        ```python
        client = XNATClient("https://xnat.example.org", "jdoe", "secret")
        client.authenticate()
        try:
            print(client.get_text("/xapi/siteConfig/buildInfo/version"))
        finally:
            client.close()
        ```
    """

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        alias_token: str | None = None,
        alias_secret: str | None = None,
        verify: bool = True,
        ca_bundle: str | Path | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        user_agent: str | None = None,
    ) -> None:
        self._base_url = normalize_base_url(base_url)
        self._credentials = Credentials.build(username, password, alias_token, alias_secret)
        if timeout <= 0:
            raise InvalidInputError(f"timeout must be > 0 seconds (got {timeout})")
        if max_retries < 0 or backoff_base < 0 or backoff_max < backoff_base:
            raise InvalidInputError(
                "need max_retries >= 0 and 0 <= backoff_base <= backoff_max "
                f"(got {max_retries}, {backoff_base}, {backoff_max})"
            )
        self._options: dict[str, Any] = {
            "verify": verify,
            "ca_bundle": ca_bundle,
            "timeout": timeout,
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "user_agent": user_agent,
        }
        if not verify:
            logger.warning("TLS certificate verification is disabled for %s", self._base_url)
        self._policy = RetryPolicy(max_retries, backoff_base, backoff_max)
        self._session = SessionState()
        self._closed = False
        self._http = httpx.Client(
            base_url=self._base_url + "/",
            verify=tls_verify_setting(verify, ca_bundle),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=POOL_MAX_CONNECTIONS,
                max_keepalive_connections=POOL_MAX_KEEPALIVE,
            ),
            headers={
                "User-Agent": user_agent
                or f"xnat-prefect/{__version__} python-httpx/{httpx.__version__}",
                "Accept": "*/*",
            },
            follow_redirects=False,
        )

    # --- identity ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The XNAT root URL (no trailing slash)."""
        return self._base_url

    @property
    def username(self) -> str | None:
        """The logged-in login name (as XNAT reports it), else the configured username."""
        return self._session.user or self._credentials.username

    @property
    def is_authenticated(self) -> bool:
        """Whether the client holds a verified session."""
        return self._session.session_id is not None and self._session.user is not None

    @property
    def login_count(self) -> int:
        """How many successful logins this client made (1 + re-logins)."""
        return self._session.login_count

    def __repr__(self) -> str:
        return f"XNATClient(base_url={self._base_url!r}, username={self.username!r})"

    # --- session lifecycle ------------------------------------------------------------------

    def authenticate(self) -> str:
        """Log in now (replacing any current session) and verify the login.

        Returns:
            The logged-in username (never the session id).

        Raises:
            AuthenticationError: Bad credentials (the message names the server and what to
                check, never the password), or an anonymous session.
            InvalidInputError: The client has no credentials.
            XNATError: Network or server failure.
        """
        self._check_open()
        with self._session.lock:
            old = self._session.session_id
            user = self._login_locked()
        if old is not None:
            logout(self._http, old)
        return user

    def _login_locked(self) -> str:
        session_id, user = call_with_retry(
            lambda: login(self._http, self._credentials, base_url=self._base_url),
            should_retry=is_transient,
            policy=self._policy,
            label=f"login to {self._base_url}",
        )
        self._session.install(session_id, user)
        logger.info("Logged in to %s as %s", self._base_url, user)
        return user

    def _ensure_session(self) -> None:
        if self._session.session_id is not None or self._credentials.basic is None:
            return
        with self._session.lock:
            if self._session.session_id is None:
                self._login_locked()

    def _relogin(self, seen_generation: int) -> None:
        with self._session.lock:
            if self._session.generation != seen_generation:
                return  # another thread already logged in again
            logger.info("XNAT session expired; logging in to %s again", self._base_url)
            self._login_locked()

    def close(self) -> None:
        """Log out (``DELETE /data/JSESSION``, best effort) and close the connection pool."""
        if self._closed:
            return
        session_id = self._session.session_id
        if session_id is not None:
            logout(self._http, session_id)
        self._session.clear()
        self._closed = True
        self._http.close()

    def __enter__(self) -> XNATClient:
        """Authenticate eagerly (when credentials are configured) so bad ones fail here."""
        if self._credentials.basic is not None and not self.is_authenticated:
            self.authenticate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def clone(self) -> XNATClient:
        """A new, independent client with the same URL, credentials and settings.

        Returns:
            An unauthenticated client (it logs in on first use); close it when done.
        """
        creds = self._credentials
        return XNATClient(
            self._base_url,
            creds.username,
            creds.password,
            alias_token=creds.alias_token,
            alias_secret=creds.alias_secret,
            **self._options,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise XNATError(f"{self!r} is closed; create a new client (or use clone())")

    # --- requests ---------------------------------------------------------------------------

    def _relative(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            if not (path == self._base_url or path.startswith(self._base_url + "/")):
                raise InvalidInputError(
                    f"refusing to send the XNAT session to another server: {path.split('?')[0]}"
                )
            path = path[len(self._base_url) :]
        return path if path.startswith("/") else "/" + path

    def _finish(self, response: httpx.Response, *, expect_json: bool) -> httpx.Response:
        if response.status_code >= 400:
            response.read()
            response.close()
            raise error_from_response(response)
        if session_lost(response, expect_json=expect_json):
            response.close()
            raise AuthenticationError(
                response.status_code,
                f"XNAT at {self._base_url} answered with its login page: the session is not "
                f"logged in; {self._credentials.fix_hint()}",
                method=response.request.method,
                path=response.request.url.path,
            )
        return response

    def _relogin_wanted(
        self, response: httpx.Response, done: int, session_id: str | None, *, expect_json: bool
    ) -> bool:
        """Whether a reply calls for (another) re-login and resend.

        The first "not logged in" reply always does. One right after a re-login does only if
        that fresh session has died too (expired again meanwhile, checked with one whoami call),
        at most :data:`MAX_RELOGINS` times: a 401 with a live session is the resource's answer.
        """
        if self._credentials.basic is None or not session_lost(response, expect_json=expect_json):
            return False
        if done == 0:
            return True
        return done < MAX_RELOGINS and not session_alive(self._http, session_id)

    def _execute(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        expect_json: bool = False,
        **options: Unpack[RequestOptions],
    ) -> httpx.Response:
        self._check_open()
        method = method.upper()
        url = self._relative(path)
        retry = options.get("retry")
        body = RewindableBody(options.get("content"), options.get("files"))
        timeout = options.get("timeout")
        redirects = bool(options.get("allow_redirects", False))
        state = {"attempts": 0, "relogins": 0}

        def build() -> httpx.Request:
            return self._http.build_request(
                method,
                url,
                params=clean_params(options.get("params")),
                data=options.get("data"),
                content=options.get("content"),
                files=options.get("files"),
                json=options.get("json"),
                headers=options.get("headers"),
                timeout=httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )

        def attempt() -> httpx.Response:
            if state["attempts"]:
                body.rewind()
            state["attempts"] += 1
            self._ensure_session()
            generation, session_id = self._session.snapshot()
            response = send(self._http, build(), session_id, stream=stream, redirects=redirects)
            while body.rewindable and self._relogin_wanted(
                response, state["relogins"], session_id, expect_json=expect_json
            ):
                response.close()
                state["relogins"] += 1
                self._relogin(generation)
                body.rewind()
                generation, session_id = self._session.snapshot()
                response = send(self._http, build(), session_id, stream=stream, redirects=redirects)
            return self._finish(response, expect_json=expect_json)

        def should_retry(exc: BaseException) -> bool:
            if retry is False or not body.rewindable or not is_transient(exc):
                return False
            if retry or method in IDEMPOTENT_METHODS:
                return True
            return isinstance(exc, XNATRequestError) and not exc.request_sent

        return call_with_retry(
            attempt,
            should_retry=should_retry,
            policy=self._policy,
            label=f"{method} {url.split('?')[0]}",
        )

    def request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """Send one request (with session cookie, re-login, error mapping and retries).

        Args:
            method: HTTP method.
            path: Path under ``base_url`` such as ``/data/projects`` (an absolute URL is
                accepted only if it starts with ``base_url``).
            **options: ``params`` (None values dropped; lists repeat the key), ``data`` (form),
                ``content`` (bytes/str/file; a file must be seekable to be resent), ``files``
                (multipart), ``json``, ``headers``, ``timeout`` (seconds), ``retry`` (None:
                retry transient errors if the method is idempotent, POST only if the request
                never reached the server; True: always retry transient errors; False: never),
                ``allow_redirects`` (default False; the cookie is dropped on redirects to
                another host).

        Returns:
            The read response (status < 400; 3xx are returned, not followed, by default).

        Raises:
            XNATStatusError: Mapped subclass for a status >= 400.
            AuthenticationError: 401 after one re-login, or XNAT's login page.
            XNATRequestError: Timeout or connection failure after retries.
            InvalidInputError: An absolute URL on another server.

        Example:
            ```python
            client.request("PUT", "/data/projects/P1", params={"name": "Study one"})
            ```
        """
        return self._execute(method, path, **options)

    def get(self, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """``GET`` (see :meth:`request`).

        Args:
            path: Path under ``base_url``.
            **options: As for :meth:`request`.

        Returns:
            The response.
        """
        return self._execute("GET", path, **options)

    def put(self, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """``PUT`` (see :meth:`request`).

        Args:
            path: Path under ``base_url``.
            **options: As for :meth:`request`.

        Returns:
            The response.
        """
        return self._execute("PUT", path, **options)

    def post(self, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """``POST`` (see :meth:`request`; retried only if it never reached the server).

        Args:
            path: Path under ``base_url``.
            **options: As for :meth:`request`.

        Returns:
            The response.
        """
        return self._execute("POST", path, **options)

    def delete(self, path: str, **options: Unpack[RequestOptions]) -> httpx.Response:
        """``DELETE`` (see :meth:`request`).

        Args:
            path: Path under ``base_url``.
            **options: As for :meth:`request`.

        Returns:
            The response.
        """
        return self._execute("DELETE", path, **options)

    @contextmanager
    def stream(
        self, method: str, path: str, **options: Unpack[RequestOptions]
    ) -> Iterator[httpx.Response]:
        """Open a streaming response (downloads).

        Errors map as in :meth:`request`; opening is retried and re-logged-in like any request,
        but nothing is retried once the caller starts reading. Transport failures while reading
        raise :class:`XNATRequestError`.

        Args:
            method: HTTP method.
            path: Path under ``base_url``.
            **options: As for :meth:`request`.

        Yields:
            The open response (status < 400); closed when the block exits.

        Example:
            ```python
            with client.stream("GET", f"{uri}/files?format=zip") as response:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            ```
        """
        response = self._execute(method, path, stream=True, **options)
        try:
            yield response
        except httpx.HTTPError as exc:
            raise error_from_transport(
                exc, method=response.request.method, path=response.request.url.path
            ) from exc
        finally:
            response.close()
