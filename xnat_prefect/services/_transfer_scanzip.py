"""The fast path of session downloads: one server-made zip per scan, checked file by file.

Per-file GETs cost one request each, which dominates for many small DICOM files (measured in
``docs/performance.md``). So a scan whose files are all missing locally (no final file, no
``.part``) and all wanted (no pattern left some out) is fetched as
``{session}/scans/{id}/files?format=zip``: streamed to a ``.part`` file, extracted with the
safe extractor into a staging folder, and each expected file is checked (present, size, and
the catalog MD5 when ``verify``) before it is moved into place and recorded in the ledger.
XNAT's zip layout is the local layout, so entry ``{label}/scans/{id}-{type}/resources/{res}/
files/{path}`` is exactly the file's destination. Whatever the zip did not deliver correctly
(missing, wrong size or MD5, a failed or unsafe zip) is handed back for per-file GETs, which
resume and re-verify.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.archives import safe_extract
from xnat_prefect.errors import InvalidInputError, XNATError
from xnat_prefect.models.transfer import DownloadProgress
from xnat_prefect.services._transfer_fetch import FetchResult, FetchSettings, part_path
from xnat_prefect.services._transfer_plan import RemoteFile
from xnat_prefect.services._transfer_streams import ProgressTracker, md5_file
from xnat_prefect.services._transfer_zipdl import fetch_archive
from xnat_prefect.services.ledger import LedgerRecord, TransferLedger

__all__ = ["MIN_ZIP_FILES", "ZipOutcome", "fetch_scan_zips", "zip_candidates"]

logger = get_logger(__name__)

MIN_ZIP_FILES = 2
"""Scans with fewer wanted files are fetched with plain GETs."""


@dataclass
class ZipOutcome:
    """What the zip phase achieved.

    Attributes:
        results: Files delivered (index into the file list → result).
        leftovers: Indexes still to fetch one by one.
        zip_bytes: Bytes received for the zips.
    """

    results: dict[int, FetchResult] = field(default_factory=dict)
    leftovers: list[int] = field(default_factory=list)
    zip_bytes: int = 0


def zip_candidates(
    everything: Sequence[RemoteFile], wanted: Sequence[RemoteFile], *, out: Path
) -> dict[str, list[int]]:
    """Scans to fetch as one zip: scan ID → indexes into ``wanted``.

    A scan qualifies when every file the listing has for it is wanted, none exists locally
    (neither final nor ``.part``) and it has at least :data:`MIN_ZIP_FILES` files.

    Args:
        everything: The unfiltered listing.
        wanted: The files to download.
        out: Output folder.

    Returns:
        The groups.
    """
    listed: dict[str, int] = {}
    for item in everything:
        if item.scan is not None:
            listed[item.scan] = listed.get(item.scan, 0) + 1
    groups: dict[str, list[int]] = {}
    spoiled: set[str] = set()
    for index, item in enumerate(wanted):
        if item.scan is None:
            continue
        target = out / item.local_path
        if target.exists() or part_path(target).exists():
            spoiled.add(item.scan)
        groups.setdefault(item.scan, []).append(index)
    return {
        scan: indexes
        for scan, indexes in groups.items()
        if scan not in spoiled
        and len(indexes) == listed.get(scan)
        and len(indexes) >= MIN_ZIP_FILES
    }


def fetch_scan_zips(
    client: XNATClient,
    data_path: str,
    *,
    files: Sequence[RemoteFile],
    groups: dict[str, list[int]],
    out: Path,
    settings: FetchSettings,
    ledger: TransferLedger | None,
    tracker: ProgressTracker[DownloadProgress],
    workers: int,
) -> ZipOutcome:
    """Fetch each group's scan as one zip (``workers`` at a time) and place its files.

    Args:
        client: Client.
        data_path: ``/data/experiments/{ID}``.
        files: The wanted files.
        groups: Scan ID → indexes into ``files`` (see :func:`zip_candidates`).
        out: Output folder.
        settings: Fetch settings (verify, retries, ledger scope).
        ledger: Ledger, or None.
        tracker: Progress.
        workers: Concurrent zip downloads.

    Returns:
        Delivered files and the indexes left for per-file GETs.
    """
    outcome = ZipOutcome()
    lock = threading.Lock()
    staging_root = out / f".xnat-zips-{uuid.uuid4().hex[:12]}"

    layout_differs = threading.Event()

    def one(scan: str) -> None:
        indexes = groups[scan]
        if layout_differs.is_set():  # an earlier zip matched nothing: don't download twice
            with lock:
                outcome.leftovers.extend(indexes)
            return
        staging = staging_root / f"scan-{len(scan)}-{uuid.uuid4().hex[:8]}"
        try:
            size = fetch_archive(
                client,
                f"{data_path}/scans/{quote(scan, safe='')}/files",
                params={"format": "zip"},
                target=staging / "scan.zip",
                on_bytes=tracker.add_bytes,
                max_retries=settings.max_retries,
                backoff_base=settings.backoff_base,
            )
            safe_extract(staging / "scan.zip", staging / "x")
        except (XNATError, InvalidInputError, OSError) as exc:
            logger.warning("Zip of scan %s failed (%s); fetching its files one by one", scan, exc)
            with lock:
                outcome.leftovers.extend(indexes)
            return
        placed, missed = _place(files, indexes, staging / "x", out, settings, ledger)
        if not placed and any((staging / "x").rglob("*")):
            logger.warning(
                "The zip of scan %s does not use the expected layout (%s/...); fetching the "
                "remaining scans file by file",
                scan,
                files[indexes[0]].local.parent,
            )
            layout_differs.set()
        for index in placed:
            tracker.item_done(True, files[index].name)
        with lock:
            outcome.zip_bytes += size
            outcome.results.update(placed)
            outcome.leftovers.extend(missed)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="xnat-zip") as pool:
            list(pool.map(one, sorted(groups)))
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return outcome


def _place(
    files: Sequence[RemoteFile],
    indexes: list[int],
    extracted: Path,
    out: Path,
    settings: FetchSettings,
    ledger: TransferLedger | None,
) -> tuple[dict[int, FetchResult], list[int]]:
    placed: dict[int, FetchResult] = {}
    missed: list[int] = []
    records: list[LedgerRecord] = []
    for index in indexes:
        remote = files[index]
        staged = extracted / remote.local_path
        if not staged.is_file() or (
            remote.size is not None and staged.stat().st_size != remote.size
        ):
            missed.append(index)
            continue
        md5 = md5_file(staged)
        if settings.verify and remote.digest and md5 != remote.digest:
            logger.warning("MD5 mismatch for %s in the scan zip; fetching it alone", remote.name)
            missed.append(index)
            continue
        # a Path parsed from the joined string and never formatted back holds no cached
        # string: one is kept per file (the summary lists them), so it matters for many files
        final = os.path.join(out, remote.local_path)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(staged, final)
        target = Path(final)
        placed[index] = FetchResult(target, False, 0, md5=md5)
        if ledger is None:
            continue
        records.append(
            LedgerRecord(remote.local_path, target, "confirmed", md5, remote.digest, remote.uri)
        )
    if ledger is not None and records:
        ledger.record_many(settings.scope, records)
    return placed, missed
