"""Archive downloads (``...files?format=zip``): stream to ``.part``, check, rename, extract.

XNAT builds these archives on the fly (no Content-Length, no Range), so a failed attempt
restarts from zero. The archive is written to ``<name>.part`` chunk by chunk (never held in
memory), checked to be a complete zip (central directory present), then renamed. Extraction
goes through :func:`xnat_prefect.dicom.archives.safe_extract` into a staging folder — entries
with ``..``, absolute paths, symbolic or hard links are refused and every member's CRC is
checked — and the files are then moved into place, replacing older copies.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.archives import safe_extract
from xnat_prefect.errors import UnexpectedResponseError, XNATRequestError, XNATStatusError
from xnat_prefect.models.transfer import DownloadProgress, DownloadSummary
from xnat_prefect.services._transfer_fetch import disk_full_error, is_disk_full, part_path
from xnat_prefect.services._transfer_retry import backoff_seconds, is_retryable_error
from xnat_prefect.services._transfer_streams import ProgressTracker

__all__ = ["extract_into", "fetch_archive", "zip_download"]

logger = get_logger(__name__)


def fetch_archive(
    client: XNATClient,
    path: str,
    *,
    params: dict[str, Any],
    target: Path,
    on_bytes: Callable[[int], None],
    max_retries: int,
    backoff_base: float,
) -> int:
    """Download an archive to ``target`` (via ``target.part``), retrying transient failures.

    Args:
        client: Client.
        path: Files URL (``.../scans/1,2/files``).
        params: Query parameters (``format=zip``).
        target: Final archive path.
        on_bytes: Called with each chunk's size.
        max_retries: Retries (each restarts from zero).
        backoff_base: First retry delay in seconds.

    Returns:
        The archive's size in bytes.

    Raises:
        UnexpectedResponseError: The body is not a complete zip.
        TransferError: The disk is full (status ``ENOSPC``; the ``.part`` is deleted).
        XNATError: The download failed after the retries.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    attempt = 0
    while True:
        try:
            with client.stream("GET", path, params=params) as response, part.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    on_bytes(len(chunk))
            break
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            part.unlink(missing_ok=True)  # frees the space; nothing partial is left
            raise disk_full_error(target, None) from exc
        except (XNATRequestError, XNATStatusError) as exc:
            part.unlink(missing_ok=True)
            attempt += 1
            if attempt > max_retries or not is_retryable_error(exc):
                raise
            delay = backoff_seconds(attempt, backoff_base)
            logger.warning("Archive download failed (%s); restarting in %.2f s", exc, delay)
            time.sleep(delay)
    if params.get("format") == "zip" and not zipfile.is_zipfile(part):
        part.unlink(missing_ok=True)
        raise UnexpectedResponseError(
            f"GET {path} did not return a complete zip archive; retry the download",
            method="GET",
            path=path,
        )
    os.replace(part, target)
    return target.stat().st_size


def extract_into(archive: Path, dest: Path) -> list[Path]:
    """Extract an archive safely into ``dest``, replacing files that already exist.

    Args:
        archive: The zip or tar.
        dest: Destination folder.

    Returns:
        The extracted files at their final paths.

    Raises:
        UnsafeArchiveError: An entry escapes the folder or is a link (nothing is written).
        InvalidInputError: The archive is corrupt (a CRC error, truncated).
        TransferError: The disk filled up while extracting (status ``ENOSPC``; the staging
            folder is removed, the archive kept).
    """
    staging = dest / f".extract-{uuid.uuid4().hex[:12]}"
    try:
        try:
            extracted = safe_extract(archive, staging)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            raise disk_full_error(dest / archive.stem, _unpacked_size(archive)) from exc
        moved = []
        for path in extracted:
            final = dest / path.relative_to(staging)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
            moved.append(final)
        return moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpacked_size(archive: Path) -> int | None:
    try:
        with zipfile.ZipFile(archive) as opened:
            return sum(info.file_size for info in opened.infolist())
    except (OSError, zipfile.BadZipFile):
        return None


def zip_download(
    client: XNATClient,
    path: str,
    *,
    out: Path,
    name: str,
    extract: bool,
    cleanup: bool,
    tracker: ProgressTracker[DownloadProgress],
    max_retries: int,
    backoff_base: float,
) -> DownloadSummary:
    """Download ``{path}?format=zip`` to ``out/name``, optionally extract it, and summarize.

    Args:
        client: Client.
        path: Files URL.
        out: Output folder.
        name: Archive file name.
        extract: Extract safely into ``out``.
        cleanup: Remove the archive after a successful extraction.
        tracker: Progress.
        max_retries: Retries (each restarts).
        backoff_base: First retry delay in seconds.

    Returns:
        The summary (``paths``: the archive, or the extracted files).
    """
    started = time.monotonic()
    tracker.set_phase("downloading", name)
    target = out / name
    size = fetch_archive(
        client,
        path,
        params={"format": "zip"},
        target=target,
        on_bytes=tracker.add_bytes,
        max_retries=max_retries,
        backoff_base=backoff_base,
    )
    tracker.item_done(True, name)
    paths = [target]
    if extract:
        tracker.set_phase("extracting", name)
        paths = extract_into(target, out)
        if cleanup:
            target.unlink(missing_ok=True)
    tracker.set_phase("done")
    return DownloadSummary(
        total_files=len(paths),
        downloaded=len(paths),
        bytes_received=size,
        output_dir=out,
        paths=paths,
        duration_s=round(time.monotonic() - started, 3),
    )
