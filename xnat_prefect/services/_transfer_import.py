"""Plumbing shared by the upload transports: import-service requests, per-thread clients, ledger.

* :func:`post_import` sends one body to ``POST /data/services/import`` with the retry rules of
  :mod:`._transfer_retry` and returns the URIs of XNAT's ``text/uri-list`` reply.
* :class:`ThreadClients` gives every worker thread its own :class:`XNATClient` (a clone, or a
  client for other credentials) and closes them all at the end.
* :class:`IngestLedger` is the ledger seen by one ingest: which files XNAT already accepted for
  this destination, checked against the server (the destination session must still exist in
  the archive, the prearchive or the direct-archive area) before anything is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient, check_body_for_error
from xnat_prefect.errors import (
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
    XNATStatusError,
)
from xnat_prefect.services._transfer_retry import upload_with_retry
from xnat_prefect.services.ledger import LedgerRecord, TransferLedger

__all__ = [
    "IMPORT_PATH",
    "IngestLedger",
    "ThreadClients",
    "client_for",
    "destination_alive",
    "dicom_scope",
    "parse_uri_list",
    "post_import",
]

logger = get_logger(__name__)

IMPORT_PATH = "/data/services/import"


def client_for(client: XNATClient, *, username: str | None, password: str | None) -> XNATClient:
    """A new client like ``client`` (same URL and settings), optionally for other credentials.

    Args:
        client: The template client.
        username: Other login name (needs ``password``).
        password: Its password.

    Returns:
        An unauthenticated client (it logs in on first use); the caller closes it.

    Raises:
        InvalidInputError: Only one of ``username`` and ``password`` was given.
    """
    if username is None and password is None:
        return client.clone()
    if not username or not password:
        raise InvalidInputError(
            "pass both username and password to upload as another user, or neither"
        )
    options: dict[str, Any] = dict(getattr(client, "_options", {}))
    return XNATClient(client.base_url, username, password, **options)


class ThreadClients:
    """One client per worker thread, created on first use, all closed by :meth:`close`.

    Args:
        factory: Makes a new client.
    """

    def __init__(self, factory: Callable[[], XNATClient]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[XNATClient] = []

    def get(self) -> XNATClient:
        """The calling thread's client.

        Returns:
            The client.
        """
        found: XNATClient | None = getattr(self._local, "client", None)
        if found is None:
            found = self._factory()
            self._local.client = found
            with self._lock:
                self._all.append(found)
        return found

    def close(self) -> None:
        """Close (log out) every client created."""
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()

    def __enter__(self) -> ThreadClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_uri_list(text: str) -> list[str]:
    """The URIs of a ``text/uri-list`` body (CRLF lines; ``#`` lines are comments).

    Args:
        text: The body.

    Returns:
        The URIs in order.
    """
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def post_import(
    client: XNATClient,
    params: Mapping[str, Any],
    body: Callable[[], IO[bytes] | Any],
    *,
    content_type: str,
    label: str,
    max_retries: int,
    backoff_base: float,
    timeout: float | None = None,
) -> list[str]:
    """``POST /data/services/import`` one body, retrying transient failures.

    Args:
        client: The (per-thread) client.
        params: Query parameters (handler, routing, destination).
        body: Makes a fresh, unread body for each attempt.
        content_type: ``application/dicom``, ``application/zip`` or ``application/x-tar``.
        label: What is sent (for logs and errors).
        max_retries: Retries of transient failures.
        backoff_base: First backoff in seconds.
        timeout: Request timeout in seconds (None: the client's).

    Returns:
        The URIs XNAT answered (prearchive, direct-archive or archive sessions).

    Raises:
        XNATStatusError: A permanent refusal, or transient ones beyond the retries.
        UnexpectedResponseError: A 200 whose body is an error message.
    """

    def attempt() -> Any:
        content = body()
        try:
            return client.post(
                IMPORT_PATH,
                params=dict(params),
                content=content,
                headers={"Content-Type": content_type},
                timeout=timeout,
                retry=False,
            )
        finally:
            close = getattr(content, "close", None)
            if callable(close):
                close()

    response = upload_with_retry(
        attempt, max_retries=max_retries, backoff_base=backoff_base, label=label
    )
    problem = check_body_for_error(response.text)
    if problem:
        raise UnexpectedResponseError(
            f"the import of {label} answered {response.status_code} with an error: {problem}",
            status_code=response.status_code,
            method="POST",
            path=IMPORT_PATH,
        )
    return parse_uri_list(response.text)


def dicom_scope(
    base_url: str, project: str, subject: str, session: str, *, direct_archive: bool
) -> str:
    """Ledger scope of DICOM sent to one session through the import service.

    gradual-DICOM and DICOM-zip share it: a file accepted by one need not be resent by the other.

    Args:
        base_url: XNAT URL.
        project: Project ID.
        subject: Subject label.
        session: Session label.
        direct_archive: Direct-Archive (else prearchive).

    Returns:
        The scope string.
    """
    area = "direct" if direct_archive else "prearchive"
    return f"dicom-import|{base_url}|{project}|{subject}|{session}|{area}"


def destination_alive(
    client: XNATClient, *, project: str, session: str, remotes: Iterable[str]
) -> bool:
    """Whether an earlier ingest's session still exists on the server.

    Checks the archive (``/data/projects/P/experiments/{label}``), then each URI the import
    service returned (prearchive session, direct-archive entry, archive session).

    Args:
        client: A client.
        project: Project ID.
        session: Session label.
        remotes: URIs recorded in the ledger.

    Returns:
        True when one of them answers.
    """
    candidates = [f"/data/projects/{project}/experiments/{session}"]
    candidates += sorted({r for r in remotes if r.startswith(("/data/", "/xapi/"))})
    for uri in candidates:
        params = None if uri.startswith("/xapi/") else {"format": "json"}
        try:
            client.get(uri, params=params)
        except ResourceNotFoundError:
            continue
        except XNATStatusError as exc:
            logger.info("Could not check %s (%s); treating it as absent", uri, exc)
            continue
        return True
    return False


class IngestLedger:
    """The ledger of one upload destination (a no-op without a ledger).

    Args:
        ledger: The ledger, or None.
        scope: The destination scope.
        key_of: Maps a file to its item key and the file whose size/mtime stand for it
            (default: its path and itself; files extracted from a zip use ``zip!entry`` and the
            zip).
    """

    def __init__(
        self,
        ledger: TransferLedger | None,
        scope: str,
        key_of: Callable[[Path], tuple[str, Path]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.scope = scope
        self.key_of = key_of or (lambda path: (str(path), path))

    def split(
        self, files: Sequence[Path], alive: Callable[[set[str]], bool]
    ) -> tuple[list[Path], list[Path]]:
        """Split files into those to send and those XNAT already accepted (unchanged since).

        Args:
            files: Candidate files.
            alive: Given the recorded URIs, whether the destination still exists; when it does
                not, the scope is forgotten and everything is sent again.

        Returns:
            ``(to_send, already_confirmed)``.
        """
        if self.ledger is None:
            return list(files), []
        known = self.ledger.entries(self.scope, state="confirmed")
        done: list[Path] = []
        remotes: set[str] = set()
        for path in files:
            key, stamp = self.key_of(path)
            entry = known.get(key)
            if entry is not None and entry.matches_file(stamp):
                done.append(path)
                if entry.remote:
                    remotes.add(entry.remote)
        if not done:
            return list(files), []
        if not alive(remotes):
            logger.info(
                "Ledger: the destination of %s is gone on the server; resending", self.scope
            )
            self.ledger.forget(self.scope)
            return list(files), []
        skip = set(done)
        return [p for p in files if p not in skip], done

    def confirm(
        self, files: Iterable[Path], *, remote: str | None, md5s: Mapping[Path, str]
    ) -> None:
        """Record files XNAT accepted.

        Args:
            files: The files.
            remote: The URI XNAT answered (first one).
            md5s: Local MD5s computed while sending.
        """
        if self.ledger is None:
            return
        records = []
        for path in files:
            key, stamp = self.key_of(path)
            md5 = md5s.get(path) if stamp == path else None
            records.append(LedgerRecord(key, stamp, "confirmed", local_md5=md5, remote=remote))
        self.ledger.record_many(self.scope, records)
