"""The XNAT credentials block: where the server is and how to log in."""

from __future__ import annotations

import atexit
import hashlib
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from xnat_prefect.client import XNATClient

_SHARED_CLIENTS: dict[str, XNATClient] = {}
_SHARED_LOCK = threading.Lock()


def _close_shared_clients() -> None:
    with _SHARED_LOCK:
        clients = list(_SHARED_CLIENTS.values())
        _SHARED_CLIENTS.clear()
    for client in clients:
        client.close()


atexit.register(_close_shared_clients)


class XNATCredentials(Block):
    """Credentials and connection settings for one XNAT server.

    Log in with a username and password, or with an XNAT alias token (its alias and secret,
    from ``/data/services/tokens/issue``), which expires on its own and can be revoked.
    Passwords, token aliases and token secrets are ``SecretStr``: masked in the Prefect UI and
    API, in reprs and in the parameters Prefect stores for a flow run, and never logged (XNAT
    treats a token's alias as a credential too).

    Attributes:
        url: Base URL of the XNAT server.
        username: Login name (leave empty when using an alias token).
        password: Password of ``username``.
        alias_token: Alias of an XNAT alias token (used instead of username/password).
        alias_secret: Secret of the alias token.
        verify_tls: Verify the server's TLS certificate.
        ca_bundle: Path of a CA bundle for servers with a private certificate authority.
        timeout_seconds: Connect/read/write timeout of each HTTP request.
        max_retries: Retries of transient, idempotent HTTP requests inside the client.

    Example:
        Load stored credentials and list projects:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.services import ProjectService

        credentials = XNATCredentials.load("BLOCK_NAME")
        with credentials.get_client() as client:
            projects = ProjectService(client).list()
        ```
    """

    _block_type_name = "XNAT Credentials"
    _block_type_slug = "xnat-credentials"
    _logo_url = "https://www.xnat.org/images/xnat-logo.png"  # type: ignore[assignment]
    _documentation_url = "https://github.com/xnat-prefect/xnat-prefect#readme"  # type: ignore[assignment]
    _description = "Connection settings and credentials for an XNAT server."

    url: str = Field(
        default=...,
        title="Server URL",
        description="Base URL of the XNAT server, e.g. https://xnat.example.org.",
    )
    username: str | None = Field(
        default=None, description="XNAT login name (empty when using an alias token)."
    )
    password: SecretStr | None = Field(default=None, description="Password of the login.")
    alias_token: SecretStr | None = Field(
        default=None, description="Alias of an XNAT alias token, used instead of a password."
    )
    alias_secret: SecretStr | None = Field(
        default=None, description="Secret of the XNAT alias token."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_bundle: str | None = Field(
        default=None, description="Path of a CA bundle file for a private certificate authority."
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, description="Timeout of each HTTP request, in seconds."
    )
    max_retries: int = Field(
        default=5, ge=0, description="Retries of transient, idempotent HTTP requests."
    )

    @model_validator(mode="after")
    def _check_login(self) -> XNATCredentials:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"url must be an http(s) URL such as https://xnat.example.org, got {self.url!r}"
            )
        has_password = bool(self.username) and self.password is not None
        has_token = (
            self.alias_token is not None
            and bool(self.alias_token.get_secret_value())
            and self.alias_secret is not None
        )
        if not (has_password or has_token):
            raise ValueError(
                "give username and password, or alias_token and alias_secret, to log in to XNAT"
            )
        return self

    @property
    def server_key(self) -> str:
        """A short name of the server (``host:port``), used to name concurrency limits."""
        parts = urlsplit(self.url)
        return parts.netloc.lower()

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~xnat_prefect.client.XNATClient`.

        Returns:
            The arguments, secrets included (never log them).
        """
        return {
            "base_url": self.url,
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else None,
            "alias_token": self.alias_token.get_secret_value() if self.alias_token else None,
            "alias_secret": self.alias_secret.get_secret_value() if self.alias_secret else None,
            "verify": self.verify_tls,
            "ca_bundle": Path(self.ca_bundle) if self.ca_bundle else None,
            "timeout": self.timeout_seconds,
            "max_retries": self.max_retries,
        }

    def get_client(self) -> XNATClient:
        """Build a ready, logged-in client.

        Returns:
            An authenticated :class:`~xnat_prefect.client.XNATClient`; close it (or use it as
            a context manager) when done.

        Raises:
            AuthenticationError: When XNAT refuses the credentials.

        Example:
            ```python
            from xnat_prefect.blocks import XNATCredentials

            credentials = XNATCredentials.load("BLOCK_NAME")
            with credentials.get_client() as client:
                print(client.username)
            ```
        """
        client = XNATClient(**self.client_kwargs())
        client.authenticate()
        return client

    def shared_client(self) -> XNATClient:
        """A process-wide client for these credentials, logged in once and reused.

        Every task of a flow run in the same process shares one XNAT session (XNAT creates a
        server session per login, and caps sessions per user). The client re-logs in by itself
        when the session expires, and is closed when the process exits.

        Returns:
            The shared, authenticated client.

        Example:
            ```python
            from xnat_prefect.blocks import XNATCredentials

            client = XNATCredentials.load("BLOCK_NAME").shared_client()
            ```
        """
        kwargs = self.client_kwargs()
        digest = hashlib.sha256(
            json.dumps({k: str(v) for k, v in kwargs.items()}, sort_keys=True).encode()
        ).hexdigest()
        with _SHARED_LOCK:
            client = _SHARED_CLIENTS.get(digest)
            if client is None:
                client = XNATClient(**kwargs)
                client.authenticate()
                _SHARED_CLIENTS[digest] = client
            return client
