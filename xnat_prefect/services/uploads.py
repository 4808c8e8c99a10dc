"""``UploadService``: every upload transport, plus the seed's public utility functions.

Transports (XNAT facts in ``xnat-rest.md`` §7.5, §8, §10):

* **DICOM-zip** (:meth:`UploadService.upload_dicom`, :meth:`~UploadService.upload_dicom_parallel`):
  batches of files as ``application/zip`` (built on disk, ``ZIP_STORED``) or
  ``application/x-tar`` (streamed straight into the request with an exact Content-Length) —
  never ``application/octet-stream``, which XNAT rejects. Params ``project/subject/session``,
  ``overwrite``, ``Ignore-Unparsable`` and the destination (:func:`archive_destination_params`).
* **gradual-DICOM** (:meth:`~UploadService.upload_dicom_gradual`,
  :meth:`~UploadService.upload_dicom_gradual_files`): one ``application/dicom`` POST per file,
  raw body streamed from the open file, ``PROJECT_ID/SUBJECT_ID/EXPT_LABEL``.
* **C-STORE** (:meth:`~UploadService.upload_dicom_store`): C-ECHO, then parallel associations.
* **Resources** (:meth:`~UploadService.upload_resource`): one PUT per file, MD5-verified.

Every HTTP transport uses per-thread clients (``client.clone()``), retries transient failures
(timeouts, 429, 5xx, and XNAT's transient 400s; never 401/403 or a 400 saying the data cannot be
parsed), runs a final lower-concurrency pass for stragglers, and returns a summary naming each
failed file and the reason. A transfer ledger (:mod:`xnat_prefect.services.ledger`) records what
XNAT accepted, so re-running an ingest that already succeeded sends nothing (the destination
session must still exist on the server, else everything is sent again).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.models.transfer import DICOMStoreSummary, UploadProgress, UploadSummary
from xnat_prefect.services._transfer_dicom import DicomSender, Target
from xnat_prefect.services._transfer_import import client_for
from xnat_prefect.services._transfer_resource import ResourceUpload, upload_to_resource
from xnat_prefect.services._transfer_retry import is_retryable_status, upload_with_retry
from xnat_prefect.services._transfer_send import TransferSettings
from xnat_prefect.services._transfer_store import DicomStoreError, store_directory
from xnat_prefect.services._transfer_utils import (
    archive_destination_params,
    check_target,
    check_workers,
    collect_dicom_files,
    scan_source,
    split_into_batches,
    split_into_n_batches,
)
from xnat_prefect.services.base import BaseService, check_choice, check_ref
from xnat_prefect.services.ledger import TransferLedger

__all__ = [
    "DICOMStoreSummary",
    "DicomStoreError",
    "UploadService",
    "archive_destination_params",
    "collect_dicom_files",
    "is_retryable_status",
    "split_into_batches",
    "split_into_n_batches",
    "upload_with_retry",
]

logger = get_logger(__name__)

ProgressCallback = Callable[[UploadProgress], Any] | None


class UploadService(BaseService):
    """Service for XNAT upload operations (REST batch, parallel REST, gradual, C-STORE, resources).

    Args:
        client: The client (per-thread clones are made for parallel uploads).
        ledger: ``True`` (default): the per-user ledger in
            :func:`~xnat_prefect.services.ledger.default_ledger_dir`; a
            :class:`~xnat_prefect.services.ledger.TransferLedger`; or ``False`` for none.
        max_retries: Retries of one request on transient failures.
        backoff_base: First retry delay in seconds (doubles per retry).
        resource_workers: Concurrent PUTs of :meth:`upload_resource`.

    Example:
        ```python
        service = UploadService(client)
        summary = service.upload_dicom_gradual(Path("study1"), "P1", "SUB001", "SESS01")
        print(summary.uploaded, summary.errors)
        ```
    """

    def __init__(
        self,
        client: XNATClient,
        *,
        ledger: TransferLedger | bool = True,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        resource_workers: int = 4,
    ) -> None:
        super().__init__(client)
        self._ledger_setting = ledger
        self._ledger: TransferLedger | None = ledger if isinstance(ledger, TransferLedger) else None
        self.settings = TransferSettings(max_retries=max_retries, backoff_base=backoff_base)
        self.resource_workers = check_workers(resource_workers, "resource_workers")

    def _sender(self) -> DicomSender:
        return DicomSender(self.client, self.settings, self.ledger)

    @property
    def ledger(self) -> TransferLedger | None:
        """The ledger in use (opened on first use; None when disabled or not writable)."""
        if self._ledger is None and self._ledger_setting is True:
            try:
                self._ledger = TransferLedger.default()
            except InvalidInputError as exc:
                logger.warning("Transfer ledger disabled: %s", exc)
                self._ledger_setting = False
        return self._ledger

    # --- DICOM-zip ------------------------------------------------------------------------------

    def upload_dicom(
        self,
        project: str,
        subject: str,
        session: str,
        source_path: Path,
        overwrite: bool = False,
        quarantine: bool = False,
        batch_size: int = 500,
        parallel: bool = True,
        workers: int = 4,
        progress_callback: ProgressCallback = None,
    ) -> UploadSummary:
        """Upload DICOM files via simple REST batch (ZIP per batch).

        A directory is sent as zips of ``batch_size`` files (built on disk, one at a time per
        worker); a ZIP file is sent as it is. Batches of one session merge (``overwrite=append``)
        unless ``overwrite`` asks to replace existing scans (``overwrite=delete``).

        Args:
            project: Project ID.
            subject: Subject label.
            session: Session label.
            source_path: Path to DICOM files (directory or ZIP).
            overwrite: Overwrite existing scans.
            quarantine: Send to prearchive instead (the project's ``prearchive_code`` may still
                auto-archive it; see :func:`archive_destination_params`).
            batch_size: Files per upload batch.
            parallel: Use parallel uploads.
            workers: Number of parallel workers.
            progress_callback: Progress callback function.

        Returns:
            UploadSummary with results.

        Raises:
            InvalidInputError: Bad ids, source, batch size or workers.

        Example:
            ```python
            UploadService(client).upload_dicom("P1", "SUB001", "SESS01", Path("study1"))
            ```
        """
        check_target(project, subject, session)
        check_workers(batch_size, "batch_size")
        workers = check_workers(workers, "workers") if parallel else 1
        target = Target(project, subject, session, direct_archive=not quarantine)
        params = target.zip_params(
            "DICOM-zip", overwrite="delete" if overwrite else "append", ignore_unparsable=True
        )
        source = Path(source_path).resolve()
        if source.is_file() and zipfile.is_zipfile(source):
            return self._sender().send_zip_file(
                source, params=params, target=target, callback=progress_callback
            )
        files, others = _dicom_dir(source, "source_path")
        return self._sender().send_batches(
            files,
            others,
            lambda todo: split_into_batches(todo, batch_size),
            fmt="zip",
            root=source,
            params=params,
            target=target,
            workers=workers,
            archive_workers=workers,
            callback=progress_callback,
        )

    def upload_dicom_parallel(
        self,
        source_dir: Path,
        project: str,
        subject: str,
        session: str,
        *,
        username: str | None = None,
        password: str | None = None,
        upload_workers: int = 4,
        archive_workers: int = 4,
        archive_format: str = "tar",
        import_handler: str = "DICOM-zip",
        ignore_unparsable: bool = True,
        overwrite: str = "delete",
        direct_archive: bool = True,
        timeout: int = 21600,
        progress_callback: ProgressCallback = None,
    ) -> UploadSummary:
        """Upload DICOM files using parallel batched archives via REST import.

        1. Collects DICOM files from the source directory; 2. splits them into N batches
        (N = ``upload_workers``, round-robin); 3. makes one archive per batch — a tar is streamed
        straight into its request (no file, no memory), a zip is built on disk by
        ``archive_workers`` threads; 4. uploads them in parallel with per-thread clients.

        ``overwrite="delete"`` makes scans in an upload replace archived scans with the same ID.
        All batches of one run land in one holding session and are archived together, but if
        XNAT archives between batches (a run longer than its quiet interval), later batches
        replace earlier ones: use ``"append"`` for very long uploads.

        Args:
            source_dir: Directory containing DICOM files.
            project: Target project ID.
            subject: Target subject label.
            session: Target session label.
            username: XNAT username (override for per-thread auth).
            password: XNAT password (override for per-thread auth).
            upload_workers: Parallel upload workers (default: 4).
            archive_workers: Parallel archive workers (default: 4; zip only).
            archive_format: Archive format, "tar" or "zip" (default: tar).
            import_handler: XNAT import handler (default: DICOM-zip).
            ignore_unparsable: Skip unparsable DICOM files (default: True).
            overwrite: Overwrite mode: none, append, delete (default: delete).
            direct_archive: Use direct archive vs prearchive (default: True).
            timeout: HTTP timeout in seconds.
            progress_callback: Optional callback for progress updates.

        Returns:
            UploadSummary with results.

        Raises:
            InvalidInputError: Bad ids, directory, format, overwrite mode or worker counts.

        Example:
            ```python
            UploadService(client).upload_dicom_parallel(Path("study1"), "P1", "SUB001", "S1")
            ```
        """
        check_target(project, subject, session)
        fmt = check_choice(archive_format, "archive_format", ("tar", "zip"))
        mode = check_choice(overwrite, "overwrite", ("none", "append", "delete"))
        check_workers(upload_workers, "upload_workers")
        check_workers(archive_workers, "archive_workers")
        if not import_handler or not isinstance(import_handler, str):
            raise InvalidInputError("import_handler must be a handler name such as 'DICOM-zip'")
        if (username is None) != (password is None):
            raise InvalidInputError(
                "pass both username and password to upload as another user, or neither"
            )
        target = Target(project, subject, session, direct_archive=direct_archive)
        source = Path(source_dir).resolve()
        files, others = _dicom_dir(source, "source_dir")
        return self._sender().send_batches(
            files,
            others,
            lambda todo: split_into_n_batches(todo, upload_workers),
            fmt=fmt,
            root=source,
            params=target.zip_params(
                import_handler, overwrite=mode, ignore_unparsable=ignore_unparsable
            ),
            target=target,
            workers=upload_workers,
            archive_workers=archive_workers,
            callback=progress_callback,
            factory=lambda: client_for(self.client, username=username, password=password),
            timeout=float(timeout),
        )

    # --- gradual-DICOM --------------------------------------------------------------------------

    def upload_dicom_gradual(
        self,
        source_path: Path,
        project: str,
        subject: str,
        session: str,
        *,
        workers: int = 4,
        direct_archive: bool = True,
        progress_callback: ProgressCallback = None,
    ) -> UploadSummary:
        """Upload DICOM files using the gradual-DICOM handler (parallel per-file).

        Each file is one POST to the import service with the gradual-DICOM handler, its raw
        bytes streamed from the open file, on per-thread clients. ZIP archives are extracted
        safely to a temporary directory first. Only DICOM-like files are sent (known
        extensions plus extensionless files with the DICOM preamble); the others are counted
        in ``skipped``.

        Args:
            source_path: Directory or ZIP file containing DICOM files.
            project: Target project ID.
            subject: Target subject label.
            session: Target session label.
            workers: Number of parallel upload workers (default: 4).
            direct_archive: Use direct archive vs prearchive (default: True).
            progress_callback: Optional callback for progress updates.

        Returns:
            UploadSummary with results.

        Raises:
            InvalidInputError: Bad ids or workers; the source is neither a directory nor a
                zip; an unsafe zip (zip-slip, links).

        Example:
            ```python
            UploadService(client).upload_dicom_gradual(Path("study.zip"), "P1", "SUB001", "S1")
            ```
        """
        check_target(project, subject, session)
        check_workers(workers, "workers")
        target = Target(project, subject, session, direct_archive=direct_archive)
        source = Path(source_path).resolve()
        if source.is_file() and zipfile.is_zipfile(source):
            return self._sender().send_gradual_zip(
                source, target, workers=workers, callback=progress_callback
            )
        files, others = _dicom_dir(source, "source_path")
        return self._sender().send_gradual(
            files, others, target, workers=workers, callback=progress_callback
        )

    def upload_dicom_gradual_files(
        self,
        *,
        files: Sequence[Path],
        project: str,
        subject: str,
        session: str,
        workers: int = 4,
        direct_archive: bool = True,
        progress_callback: ProgressCallback = None,
    ) -> UploadSummary:
        """Upload a specific list of DICOM files via the gradual-DICOM handler.

        Unlike :meth:`upload_dicom_gradual`, this uploads only the files given and scans no
        directory; a file XNAT cannot parse fails with XNAT's reason in ``errors``.

        Args:
            files: Explicit list of files to upload.
            project: Target project ID.
            subject: Target subject label.
            session: Target session label.
            workers: Number of parallel upload workers.
            direct_archive: Use direct archive vs prearchive (default: True).
            progress_callback: Optional callback for progress updates.

        Returns:
            UploadSummary with results.

        Raises:
            InvalidInputError: Bad ids or workers, or a path that is not a file.

        Example:
            ```python
            UploadService(client).upload_dicom_gradual_files(
                files=[Path("a.dcm")], project="P1", subject="SUB001", session="S1"
            )
            ```
        """
        check_target(project, subject, session)
        check_workers(workers, "workers")
        paths = [Path(f).resolve() for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InvalidInputError(f"{len(missing)} path(s) are not files: {shown}")
        unique = list(dict.fromkeys(paths))
        target = Target(project, subject, session, direct_archive=direct_archive)
        return self._sender().send_gradual(
            unique, 0, target, workers=workers, callback=progress_callback
        )

    # --- C-STORE ----------------------------------------------------------------------------------

    def upload_dicom_store(
        self,
        dicom_root: Path,
        host: str,
        called_aet: str,
        *,
        port: int = 104,
        calling_aet: str = "XNATCTL",
        workers: int = 4,
        cleanup: bool = True,
    ) -> DICOMStoreSummary:
        """Send DICOM files to an SCP using C-STORE.

        1. Verifies connectivity with C-ECHO; 2. collects DICOM files under the root;
        3. splits them into one batch per worker; 4. sends each batch over its own association
        (presentation contexts from the files' SOP classes and transfer syntaxes), then resends
        failures once over one association. Files the ledger shows as already stored (and
        unchanged) are not sent again. ``sent`` counts files stored in this run.

        Args:
            dicom_root: Directory containing DICOM files.
            host: DICOM SCP host.
            called_aet: Remote AE title (XNAT's default receiver: ``XNAT``).
            port: DICOM SCP port (default: 104; XNAT's default receiver listens on 8104).
            calling_aet: Our AE title (default: XNATCTL).
            workers: Number of parallel associations (default: 4).
            cleanup: Remove the temporary workspace (per-association logs) on completion; a
                run with failures keeps it so the logs can be read.

        Returns:
            DICOMStoreSummary with results.

        Raises:
            InvalidInputError: (a ``ValueError``) dicom_root is not a directory; bad workers.
            DicomStoreError: (a ``RuntimeError``) the C-ECHO failed (wrong AE title, host or
                port; the message names the fix), or no DICOM files were found.

        Example:
            ```python
            UploadService(client).upload_dicom_store(Path("study1"), "xnat", "XNAT", port=8104)
            ```
        """
        check_workers(workers, "workers")
        return store_directory(
            Path(dicom_root).resolve(),
            host=host,
            port=port,
            called_aet=called_aet,
            calling_aet=calling_aet,
            workers=workers,
            cleanup=cleanup,
            ledger=self.ledger,
        )

    # --- resources --------------------------------------------------------------------------------

    def upload_resource(
        self,
        session_id: str,
        resource_label: str,
        source_path: Path,
        scan_id: str | None = None,
        project: str | None = None,
        extract: bool = False,
        overwrite: bool = False,
        progress_callback: ProgressCallback = None,
    ) -> UploadSummary:
        """Upload files to a resource.

        A directory is uploaded file by file (sub-folders kept, hidden files skipped), each
        streamed from disk; files already on the server with the same MD5 are skipped, and
        every uploaded file's MD5 is checked against the server catalog afterwards. With
        ``extract=True`` an archive (or a directory, zipped first) is one upload that XNAT
        unpacks into the resource.

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label (created when missing).
            source_path: File or directory to upload.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            extract: Extract ZIP/TAR after upload.
            overwrite: Overwrite existing files.
            progress_callback: Progress callback.

        Returns:
            UploadSummary with results (``session_uris`` holds the resource's files URL).

        Raises:
            InvalidInputError: Bad ids, or a source that does not exist.
            ResourceNotFoundError: No such session or scan.

        Example:
            ```python
            UploadService(client).upload_resource("XNAT_E00001", "NIFTI", Path("nifti/"), "1")
            ```
        """
        check_ref(resource_label, "resource_label")
        source = Path(source_path).resolve()
        if not source.exists():
            raise InvalidInputError(f"source_path {source} does not exist; pass a file or folder")
        parent = self.resource_parent_path(session_id, scan_id, project)
        target = ResourceUpload(
            parent, resource_label, source, extract, overwrite, self.resource_workers
        )
        return upload_to_resource(
            self.client,
            target,
            settings=self.settings,
            ledger=self.ledger,
            progress_callback=progress_callback,
        )


def _dicom_dir(source: Path, name: str) -> tuple[list[Path], int]:
    if not source.is_dir():
        raise InvalidInputError(
            f"{name} {source} is not a directory (or a zip file where one is accepted); "
            "pass the folder that holds the DICOM files"
        )
    return scan_source(source)
