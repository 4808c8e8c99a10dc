"""Resource uploads: files streamed one PUT each, checked against the server catalog's MD5.

A directory is uploaded file by file (sub-folders kept) on per-thread clients; before sending,
the resource's file listing says which files are already there with the same MD5 (skipped,
whatever the ledger knows), and after sending the listing is read again to verify every
uploaded file's MD5. A file whose size or modification time changed while it was sent is an
error (XNAT may hold a mix of old and new bytes whose MD5 nobody computed) and is not recorded
in the ledger, so a re-run looks at it again. An archive with ``extract=True`` (or a directory
with ``extract=True``, zipped to a temporary file first) is one PUT that XNAT unpacks
server-side.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient, check_body_for_error
from xnat_prefect.dicom.archives import build_archive
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
    VerificationError,
    XNATError,
)
from xnat_prefect.models.resource import ResourceFile
from xnat_prefect.models.transfer import UploadProgress, UploadSummary
from xnat_prefect.services._transfer_import import ThreadClients
from xnat_prefect.services._transfer_retry import describe_error, run_in_passes, upload_with_retry
from xnat_prefect.services._transfer_send import (
    TransferSettings,
    changed_while_sent,
    upload_tracker,
)
from xnat_prefect.services._transfer_streams import ProgressReader, ProgressTracker, md5_file
from xnat_prefect.services.ledger import LedgerRecord, TransferLedger, file_stamp

__all__ = ["ARCHIVE_SUFFIXES", "ResourceUpload", "upload_to_resource"]

logger = get_logger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_TYPES = {".zip": "application/zip", ".tar": "application/x-tar", ".gz": "application/x-gzip"}
_TYPES[".tgz"] = "application/x-gzip"


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class ResourceUpload:
    """Where and how to upload.

    Attributes:
        parent: ``/data/experiments/{ID}`` or ``.../scans/{SCAN}``.
        label: Resource label.
        source: File or directory.
        extract: Unpack archives server-side.
        overwrite: Replace files that exist with other content.
        workers: Concurrent PUTs.
    """

    parent: str
    label: str
    source: Path
    extract: bool
    overwrite: bool
    workers: int = 4

    @property
    def files_url(self) -> str:
        """``<parent>/resources/{label}/files``."""
        return f"{self.parent}/resources/{quote(self.label, safe='')}/files"


def _listing(client: XNATClient, target: ResourceUpload) -> dict[str, ResourceFile]:
    try:
        rows = client.get_result_set(target.files_url)
    except ResourceNotFoundError:
        return {}
    return {f.relative_path: f for f in ResourceFile.from_rows(rows)}


def _local_files(source: Path) -> list[tuple[Path, str]]:
    if source.is_file():
        return [(source, source.name)]
    found: list[tuple[Path, str]] = []
    for folder, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            if not name.startswith(".") and path.is_file():
                found.append((path, path.relative_to(source).as_posix()))
    return found


def _put(
    clients: Callable[[], XNATClient],
    url: str,
    path: Path,
    params: dict[str, Any],
    tracker: ProgressTracker[UploadProgress],
    settings: TransferSettings,
) -> list[str]:
    """PUT one file; returns the names XNAT reported as duplicates (not replaced)."""

    def attempt() -> Any:
        with ProgressReader(path, tracker.add_bytes) as body:
            return clients().put(
                url,
                params=params,
                content=body,
                headers={"Content-Type": _content_type(path.name)},
                retry=False,
            )

    response = upload_with_retry(
        attempt,
        max_retries=settings.max_retries,
        backoff_base=settings.backoff_base,
        label=path.name,
    )
    text = response.text.strip()
    if text.startswith("{") and "duplicates" in text:
        found = json.loads(text).get("duplicates")
        return [str(d) for d in found] if isinstance(found, list) else [text]
    problem = check_body_for_error(text)
    if problem:
        raise UnexpectedResponseError(
            f"upload of {path.name} answered {response.status_code} with an error: {problem}",
            status_code=response.status_code,
            method="PUT",
            path=url,
        )
    return []


def upload_to_resource(
    client: XNATClient,
    target: ResourceUpload,
    *,
    settings: TransferSettings,
    ledger: TransferLedger | None,
    progress_callback: Callable[[UploadProgress], Any] | None,
) -> UploadSummary:
    """Upload a file or a directory to a resource (see the module docstring).

    Args:
        client: The service's client (listings; uploads use per-thread clones).
        target: What to upload where.
        settings: Retry settings.
        ledger: Ledger (skips re-hashing unchanged files already confirmed).
        progress_callback: Progress callback.

    Returns:
        The summary; ``errors`` name each failed file and why.
    """
    started = time.monotonic()
    scope = f"resource|{client.base_url}|{target.files_url}"
    local = _local_files(target.source)
    tracker = upload_tracker(progress_callback, len(local))
    if target.extract:
        return _upload_archive(client, target, local, settings, tracker, started)
    remote = _listing(client, target)
    known = ledger.entries(scope) if ledger is not None else {}
    md5s: dict[Path, str] = {}
    stamps: dict[Path, tuple[int, int]] = {}
    todo: list[tuple[Path, str]] = []
    errors: list[tuple[str, str]] = []
    skipped: list[tuple[Path, str]] = []
    for path, rel in local:
        server = remote.get(rel)
        entry = known.get(rel)
        stamps[path] = file_stamp(path)  # before any byte is read: hashing or sending
        unchanged = entry is not None and entry.matches_file(path) and bool(entry.local_md5)
        md5s[path] = entry.local_md5 if unchanged and entry and entry.local_md5 else md5_file(path)
        if server is not None and server.digest and server.digest == md5s[path]:
            skipped.append((path, rel))
        elif server is not None and not server.digest and unchanged:
            skipped.append((path, rel))  # no server checksums: trust the ledger
        elif server is not None and not target.overwrite:
            errors.append(
                (
                    str(path),
                    f"{rel} exists on the server with other content (server "
                    f"MD5 {server.digest or 'unknown'}, local {md5s[path]}); pass "
                    "overwrite=True to replace it",
                )
            )
        else:
            todo.append((path, rel))
    for _path, rel in skipped:
        tracker.item_done(True, rel)
    params = {"inbody": "true", "overwrite": "true" if target.overwrite else None}
    tracker.set_phase("uploading")
    lock = threading.Lock()
    sent: list[tuple[Path, str]] = []
    with ThreadClients(client.clone) as clients:

        def work(item: tuple[Path, str]) -> None:
            path, rel = item
            url = f"{target.files_url}/{quote(rel, safe='/')}"
            duplicates = _put(clients.get, url, path, params, tracker, settings)
            if duplicates:
                raise ConflictError(409, f"{rel} already exists on the server; pass overwrite=True")
            with lock:
                sent.append(item)

        outcome = run_in_passes(todo, work, workers=target.workers, pause=settings.backoff_base)
    for index, exc in sorted(outcome.failed.items()):
        errors.append((str(todo[index][0]), describe_error(exc)))
        tracker.item_done(False, todo[index][1])
    tracker.set_phase("verifying")
    after = _listing(client, target) if sent else remote
    uploaded = 0
    records = [
        LedgerRecord(rel, p, "confirmed", md5s[p], md5s[p], target.files_url, *stamps[p])
        for p, rel in skipped
    ]
    for path, rel in sent:
        server = after.get(rel)
        digest = server.digest if server is not None else None
        changed = changed_while_sent(
            path, stamps[path], rel, fix="upload it again with overwrite=True"
        )
        if changed is not None:
            logger.warning("Upload of %s not confirmed: %s", rel, changed)
            errors.append((str(path), changed))
        elif server is None:
            errors.append((str(path), f"{rel} is missing from the resource after the upload"))
        elif digest and digest != md5s[path]:
            problem = VerificationError(
                f"server MD5 {digest} != local MD5 {md5s[path]}", target=rel
            )
            errors.append((str(path), describe_error(problem)))
        else:
            uploaded += 1
            size, mtime_ns = stamps[path]
            records.append(
                LedgerRecord(rel, path, "confirmed", md5s[path], digest, server.uri, size, mtime_ns)
            )
        tracker.item_done(server is not None and changed is None, rel)
    if ledger is not None:
        ledger.record_many(scope, records)
    tracker.set_phase("done")
    return UploadSummary(
        total_files=len(local),
        uploaded=uploaded,
        failed=len(errors),
        skipped=len(skipped),
        bytes_sent=sum(stamps[p][0] for p, _ in sent),
        duration_s=round(time.monotonic() - started, 3),
        errors=errors,
        session_uris=[target.files_url],
    )


def _upload_archive(
    client: XNATClient,
    target: ResourceUpload,
    local: list[tuple[Path, str]],
    settings: TransferSettings,
    tracker: ProgressTracker[UploadProgress],
    started: float,
) -> UploadSummary:
    source = target.source
    workspace: Path | None = None
    if source.is_dir():
        if not local:
            raise InvalidInputError(f"{source} holds no files to upload")
        workspace = Path(tempfile.mkdtemp(prefix="xnat-resource-"))
        archive = build_archive([p for p, _ in local], workspace, fmt="zip", root=source).path
    elif source.name.lower().endswith(ARCHIVE_SUFFIXES):
        archive = source
    else:
        raise InvalidInputError(
            f"extract=True needs an archive ({', '.join(ARCHIVE_SUFFIXES)}) or a directory, got "
            f"{source.name!r}; pass extract=False"
        )
    name = archive.name if workspace is None else f"{target.label}-upload.zip"
    url = f"{target.files_url}/{quote(name, safe='')}"
    params = {
        "inbody": "true",
        "extract": "true",
        "overwrite": "true" if target.overwrite else None,
    }
    errors: list[tuple[str, str]] = []
    try:
        tracker.set_phase("uploading")
        duplicates = _put(lambda: client, url, archive, params, tracker, settings)
        if duplicates:
            errors = [
                (
                    str(source),
                    f"already on the server (not replaced): {', '.join(duplicates[:10])}; "
                    "pass overwrite=True",
                )
            ]
    except (XNATError, OSError) as exc:  # reported in the summary
        errors = [(str(source), describe_error(exc))]
    finally:
        size = archive.stat().st_size if archive.exists() else 0
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)
    count = len(local) if source.is_dir() else 1
    tracker.item_done(not errors, source.name, items=count)
    tracker.set_phase("done")
    return UploadSummary(
        total_files=count,
        uploaded=0 if errors else count,
        failed=count if errors else 0,
        bytes_sent=0 if errors else size,
        duration_s=round(time.monotonic() - started, 3),
        errors=errors,
        session_uris=[target.files_url],
    )
