"""``DownloadService``: sessions, scans and resources, streamed to disk, resumable, verified.

* :meth:`DownloadService.download_session` and :meth:`~DownloadService.download_scan` list the
  files (one listing per kind) and GET each file in parallel (per-file GETs rather than one
  zip per scan: each file can be resumed with HTTP Range, checked against the catalog MD5 and
  skipped on a re-run; the benchmark in ``docs/performance.md`` compares both). Files land in
  XNAT's zip layout (``{label}/scans/{id}-{type}/resources/{res}/files/...``).
* :meth:`~DownloadService.download_resource` and :meth:`~DownloadService.download_scans`
  fetch one server-made zip (``download_scans`` asks for several scans in one request with
  comma-separated IDs) and can extract it safely.

Every file is written to ``<name>.part`` and renamed only when complete. A ledger
(``<output_dir>/.xnat-transfers.sqlite``) records each confirmed file with its local and server
MD5, so a re-run downloads only what is missing or changed on the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    InvalidInputError,
    ResourceNotFoundError,
    VerificationError,
    XNATStatusError,
)
from xnat_prefect.models.resource import Resource
from xnat_prefect.models.transfer import DownloadProgress, DownloadSummary
from xnat_prefect.services._transfer_fetch import (
    FetchResult,
    FetchSettings,
    download_tracker,
    fetch_many,
)
from xnat_prefect.services._transfer_plan import (
    RemoteFile,
    assessor_files,
    filter_files,
    scan_files,
    scan_types,
    session_resource_files,
)
from xnat_prefect.services._transfer_retry import describe_error
from xnat_prefect.services._transfer_scanzip import fetch_scan_zips, zip_candidates
from xnat_prefect.services._transfer_streams import ProgressTracker
from xnat_prefect.services._transfer_zipdl import zip_download
from xnat_prefect.services.base import BaseService, check_ref, segment
from xnat_prefect.services.ledger import TransferLedger

__all__ = ["DownloadService"]

logger = get_logger(__name__)

ProgressCallback = Callable[[DownloadProgress], Any] | None


def _output_dir(output_dir: Path) -> Path:
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(
            f"output_dir {path} exists and is not a folder; pass a folder path (or move the file)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a parent is a file
        raise InvalidInputError(
            f"output_dir {path} cannot be created: {exc.filename or path} is a file, not a "
            "folder; pass a folder path"
        ) from exc
    return path


def _archive_name(zip_filename: str | None, default: str) -> str:
    name = zip_filename or default
    if "/" in name or "\\" in name or name in (".", "..") or not name.strip():
        raise InvalidInputError(f"zip_filename {name!r} must be a plain file name like 'scans.zip'")
    return name


def _check_silent_scans(
    client: XNATClient,
    data_path: str,
    *,
    session: str,
    types: dict[str, str],
    listed: Sequence[RemoteFile],
) -> None:
    """Refuse a listing that names no file of a scan whose resources report files.

    XNAT answers the file listing from its catalogs; a stale or half-written catalog lists
    nothing although the resources count files. Costs one request per scan that lists nothing.
    """
    silent = sorted(set(types) - {f.scan for f in listed if f.scan})
    claimed: dict[str, int] = {}
    for scan in silent:
        try:
            rows = client.get_result_set(f"{data_path}/scans/{quote(scan, safe='')}/resources")
        except ResourceNotFoundError:
            continue  # no resources at all: nothing to download
        count = sum(r.file_count or 0 for r in Resource.from_rows(rows))
        if count:
            claimed[scan] = count
    if claimed:
        raise VerificationError(
            f"{session}: XNAT lists no files for scan(s) {', '.join(claimed)} although their "
            f"resources report {sum(claimed.values())} file(s); the catalog is stale or still "
            "being written: refresh the session's catalogs (refresh_catalogs_flow or "
            "AdminService.refresh_catalogs) and download again",
            target=session,
            status="EMPTY_LISTING",
        )


def _optional_listing(list_files: Callable[[], list[RemoteFile]]) -> list[RemoteFile]:
    try:
        return list_files()
    except ResourceNotFoundError:
        return []  # XNAT answers 404 for "no scans" / "no resources"


class DownloadService(BaseService):
    """Service for XNAT download operations.

    Args:
        client: The client (thread-safe; shared by the download workers).
        ledger: ``True`` (default): a ledger in each output folder; a
            :class:`~xnat_prefect.services.ledger.TransferLedger`; or ``False`` for none.
        max_retries: Retries per file (each resumes where the last attempt stopped).
        backoff_base: First retry delay in seconds.
        workers: Parallel GETs of :meth:`download_scan`.
        scan_zips: Fetch scans that are entirely missing locally as one zip per scan (fast for
            many small files; each file is still checked, and anything the zip did not
            deliver correctly is fetched on its own). False: per-file GETs only.

    Example:
        ```python
        summary = DownloadService(client).download_session(
            "MR_01", Path("data"), project="P1", resume=True, verify=True
        )
        ```
    """

    def __init__(
        self,
        client: XNATClient,
        *,
        ledger: TransferLedger | bool = True,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        workers: int = 4,
        scan_zips: bool = True,
    ) -> None:
        super().__init__(client)
        self.scan_zips = scan_zips
        self._ledger = ledger
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.workers = workers

    # --- per-file downloads ---------------------------------------------------------------------

    def download_session(
        self,
        session_id: str,
        output_dir: Path,
        project: str | None = None,
        include_resources: bool = True,
        include_assessors: bool = False,
        pattern: str | None = None,
        resume: bool = False,
        verify: bool = False,
        parallel: bool = True,
        workers: int = 4,
        progress_callback: ProgressCallback = None,
    ) -> DownloadSummary:
        """Download session data (every scan file, plus session resources and assessors).

        Files are fetched with parallel GETs into ``output_dir/{session_label}/...`` (XNAT's zip
        layout). Files the ledger shows as downloaded, unchanged and still current on the
        server are skipped.

        Args:
            session_id: Session ID (or label with ``project``).
            output_dir: Output directory path.
            project: Project ID.
            include_resources: Include session-level resources.
            include_assessors: Include assessor data.
            pattern: File pattern filter: a glob matched against the file name, its path in
                the resource and its local path (``*.dcm``, ``*/scans/1-*``).
            resume: Resume interrupted download: continue ``.part`` files (HTTP Range; a
                restart when the server ignores Range) and keep complete files of the right
                size even when XNAT has no checksum for them.
            verify: Verify checksums: the MD5 of every new file must equal the catalog's, and
                files skipped as present are re-hashed; ``summary.verified`` tells the result.
                A scan the listing names no file of, while its resources report files, is
                refused (:class:`~xnat_prefect.errors.VerificationError`).
            parallel: Use parallel downloads.
            workers: Number of parallel workers.
            progress_callback: Progress callback function.

        Returns:
            DownloadSummary with results (``errors`` name each failed file and why).

        Raises:
            ResourceNotFoundError: No such session.
            InvalidInputError: Bad ids, workers, pattern or output folder.
            VerificationError: ``verify`` and XNAT lists no files for a scan whose resources
                report files (a stale catalog; status ``EMPTY_LISTING``).
            TransferError: The disk filled up (status ``ENOSPC``; nothing partial is left).

        Example:
            ```python
            DownloadService(client).download_session("XNAT_E00001", Path("out"), workers=8)
            ```
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be an integer >= 1 (got {workers!r})")
        started = time.monotonic()
        out = _output_dir(output_dir)
        tracker = download_tracker(progress_callback)
        ref = self.resolve_session(session_id, project)
        label = ref.label or ref.id
        data = ref.data_path
        types = scan_types(self.client, data)
        scans = _optional_listing(lambda: scan_files(self.client, data, label=label, types=types))
        if verify:
            _check_silent_scans(self.client, data, session=ref.id, types=types, listed=scans)
        files = list(scans)
        errors: list[tuple[str, str]] = []
        if include_resources:
            files += _optional_listing(
                lambda: session_resource_files(self.client, data, label=label)
            )
        if include_assessors:
            try:
                files += assessor_files(self.client, data, label=label)
            except XNATStatusError as exc:
                errors.append(
                    (f"{data}/assessors", f"assessor listing failed: {describe_error(exc)}")
                )
        chosen = filter_files(files, pattern)
        return self._fetch(
            chosen,
            out,
            ref.id,
            started=started,
            tracker=tracker,
            resume=resume,
            verify=verify,
            workers=workers if parallel else 1,
            errors=errors,
            zips=(data, scans),
        )

    def download_scan(
        self,
        session_id: str,
        scan_id: str,
        output_dir: Path,
        project: str | None = None,
        resource: str | None = None,
        progress_callback: ProgressCallback = None,
    ) -> DownloadSummary:
        """Download a specific scan (per-file GETs, resumable, skipped when already present).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            output_dir: Output directory (files go to ``{label}/scans/{id}-{type}/...``).
            project: Project ID.
            resource: Resource type to download (None = all resources).
            progress_callback: Progress callback.

        Returns:
            DownloadSummary with results.

        Raises:
            ResourceNotFoundError: No such session, scan or resource.

        Example:
            ```python
            DownloadService(client).download_scan("XNAT_E00001", "1", Path("out"), resource="DICOM")
            ```
        """
        started = time.monotonic()
        selector = segment(scan_id, "scan_id")
        if resource is not None:
            check_ref(resource, "resource")
        out = _output_dir(output_dir)
        tracker = download_tracker(progress_callback)
        ref = self.resolve_session(session_id, project)
        label = ref.label or ref.id
        types = scan_types(self.client, ref.data_path)
        files = scan_files(
            self.client,
            ref.data_path,
            label=label,
            selector=selector,
            resource=resource,
            types=types,
        )
        return self._fetch(
            files,
            out,
            ref.id,
            started=started,
            tracker=tracker,
            resume=True,
            verify=False,
            workers=self.workers,
            errors=[],
            zips=(ref.data_path, files) if resource is None else None,
        )

    def _ledger_for(self, out: Path) -> tuple[TransferLedger | None, bool]:
        if isinstance(self._ledger, TransferLedger):
            return self._ledger, False
        if self._ledger is False:
            return None, False
        try:
            return TransferLedger.in_directory(out), True
        except InvalidInputError as exc:
            logger.warning("Transfer ledger disabled: %s", exc)
            return None, False

    def _fetch(
        self,
        files: Sequence[RemoteFile],
        out: Path,
        session_key: str,
        *,
        started: float,
        tracker: ProgressTracker[DownloadProgress],
        resume: bool,
        verify: bool,
        workers: int,
        errors: list[tuple[str, str]],
        zips: tuple[str, Sequence[RemoteFile]] | None = None,
    ) -> DownloadSummary:
        settings = FetchSettings(
            resume=resume,
            verify=verify,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            scope=f"download|{self.client.base_url}|{session_key}",
        )
        ledger, owned = self._ledger_for(out)

        def zip_phase() -> tuple[dict[int, FetchResult], int]:
            assert zips is not None
            data_path, listing = zips
            groups = zip_candidates(listing, files, out=out)
            done = fetch_scan_zips(
                self.client,
                data_path,
                files=files,
                groups=groups,
                out=out,
                settings=settings,
                ledger=ledger,
                tracker=tracker,
                workers=workers,
            )
            return done.results, done.zip_bytes

        try:
            return fetch_many(
                self.client,
                files,
                out=out,
                settings=settings,
                ledger=ledger,
                tracker=tracker,
                workers=workers,
                errors=errors,
                started=started,
                zip_phase=zip_phase if zips is not None and self.scan_zips else None,
            )
        finally:
            if owned and ledger is not None:
                ledger.close()

    def _zip(
        self,
        path: str,
        out: Path,
        name: str,
        *,
        extract: bool,
        cleanup: bool,
        callback: ProgressCallback,
    ) -> DownloadSummary:
        return zip_download(
            self.client,
            path,
            out=out,
            name=name,
            extract=extract,
            cleanup=cleanup,
            tracker=download_tracker(callback, total=1),
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
        )

    # --- archive downloads ----------------------------------------------------------------------

    def download_resource(
        self,
        session_id: str,
        resource_label: str,
        output_dir: Path,
        scan_id: str | None = None,
        project: str | None = None,
        extract: bool = False,
        zip_filename: str | None = None,
        progress_callback: ProgressCallback = None,
    ) -> DownloadSummary:
        """Download a specific resource as one zip (``<parent>/resources/{RES}/files?format=zip``).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            output_dir: Output directory.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            extract: Extract ZIP files (default: False); the zip is removed after a successful
                extraction.
            zip_filename: Custom ZIP filename (default: {resource_label}.zip).
            progress_callback: Progress callback.

        Returns:
            DownloadSummary with results (``paths``: the zip, or the extracted files).

        Raises:
            ResourceNotFoundError: No such session, scan or resource (or it has no files).
            UnsafeArchiveError: The zip holds unsafe entries (nothing is extracted).
            XNATError: The download failed after the retries.

        Example:
            ```python
            DownloadService(client).download_resource("XNAT_E00001", "QC", Path("o"), extract=True)
            ```
        """
        label = segment(resource_label, "resource_label")
        name = _archive_name(zip_filename, f"{resource_label}.zip")
        parent = self.resource_parent_path(session_id, scan_id, project)
        return self._zip(
            f"{parent}/resources/{label}/files",
            _output_dir(output_dir),
            name,
            extract=extract,
            cleanup=True,
            callback=progress_callback,
        )

    def download_scans(
        self,
        session_id: str,
        scan_ids: list[str],
        output_dir: Path,
        project: str | None = None,
        subject: str | None = None,
        resource: str | None = None,
        zip_filename: str | None = None,
        extract: bool = False,
        cleanup: bool = True,
        progress_callback: ProgressCallback = None,
    ) -> DownloadSummary:
        """Download multiple scans in a single request.

        Uses XNAT's comma-separated scan ID feature (``.../scans/1,2,3/files?format=zip``).
        When resource is None, downloads ALL files (DICOM + SNAPSHOTS).

        Args:
            session_id: Session ID or label.
            scan_ids: List of scan IDs (or ["ALL"] for all scans).
            output_dir: Output directory.
            project: Project ID (required when using session label).
            subject: Subject ID/label (optional, narrows experiment lookup).
            resource: Resource type (None = all resources, "DICOM" = DICOM only).
            zip_filename: Output ZIP filename (default: scans.zip).
            extract: Extract ZIP after download.
            cleanup: Remove ZIP after successful extraction (with extract=True).
            progress_callback: Progress callback.

        Returns:
            DownloadSummary with results.

        Raises:
            InvalidInputError: No scan IDs, or a bad one.
            ResourceNotFoundError: No such session, or no matching scans/files.
            UnsafeArchiveError: The zip holds unsafe entries (nothing is extracted).
            XNATError: The download failed after the retries.

        Example:
            ```python
            DownloadService(client).download_scans("MR_01", ["1", "2"], Path("out"), project="P1")
            ```
        """
        if isinstance(scan_ids, str) or not scan_ids:
            raise InvalidInputError(
                "scan_ids must be a non-empty list such as ['1', '2'] or ['ALL']"
            )
        selector = ",".join(segment(scan, "scan_ids") for scan in scan_ids)
        name = _archive_name(zip_filename, "scans.zip")
        if project is not None and subject is not None:
            path = f"{self.subject_path(subject, project, 'subject')}/experiments/"
            path += segment(session_id, "session_id")
            fields = self.get_item_fields(path, what=f"session {session_id!r} of {subject!r}")
            data = f"/data/experiments/{quote(str(fields.get('ID') or session_id), safe='')}"
        else:
            data = self.session_data_path(session_id, project)
        files = f"{data}/scans/{selector}"
        files += f"/resources/{segment(resource, 'resource')}/files" if resource else "/files"
        return self._zip(
            files,
            _output_dir(output_dir),
            name,
            extract=extract,
            cleanup=cleanup,
            callback=progress_callback,
        )
