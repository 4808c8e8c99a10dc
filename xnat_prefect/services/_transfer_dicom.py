"""DICOM ingest through the import service: batches (tar/zip), zip sources and gradual-DICOM.

:class:`DicomSender` turns files into payloads (:mod:`._transfer_send`), consults the ledger
first (files XNAT already accepted for this destination are not sent again, provided the
destination session still exists on the server) and builds the :class:`UploadSummary`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.archives import build_archive, safe_extract
from xnat_prefect.models.transfer import UploadProgress, UploadSummary
from xnat_prefect.services._transfer_import import IngestLedger, destination_alive, dicom_scope
from xnat_prefect.services._transfer_send import (
    FilePayloads,
    Payload,
    TransferSettings,
    file_payload,
    send_payloads,
    summarize,
    tar_payload,
    upload_tracker,
)
from xnat_prefect.services._transfer_utils import archive_destination_params, scan_source
from xnat_prefect.services.ledger import TransferLedger

__all__ = ["DicomSender", "Target", "zip_payload"]

logger = get_logger(__name__)

ProgressCallback = Callable[[UploadProgress], Any] | None
KeyOf = Callable[[Path], tuple[str, Path]]


@dataclass(frozen=True)
class Target:
    """Where DICOM goes.

    Attributes:
        project: Project ID.
        subject: Subject label.
        session: Session label.
        direct_archive: Direct-Archive (else the prearchive).
    """

    project: str
    subject: str
    session: str
    direct_archive: bool

    def zip_params(
        self, handler: str, *, overwrite: str, ignore_unparsable: bool
    ) -> dict[str, Any]:
        """Query parameters of a DICOM-zip (or other archive handler) request.

        Args:
            handler: ``import-handler`` value.
            overwrite: ``none``, ``append`` or ``delete``.
            ignore_unparsable: Send ``Ignore-Unparsable=true``.

        Returns:
            The parameters.
        """
        return {
            "import-handler": handler,
            "project": self.project,
            "subject": self.subject,
            "session": self.session,
            "overwrite": overwrite,
            "Ignore-Unparsable": "true" if ignore_unparsable else None,
            **archive_destination_params(self.project, self.direct_archive),
        }

    def gradual_params(self) -> dict[str, Any]:
        """Query parameters of a gradual-DICOM request (upper-case routing keys).

        Returns:
            The parameters.
        """
        return {
            "import-handler": "gradual-DICOM",
            "PROJECT_ID": self.project,
            "SUBJECT_ID": self.subject,
            "EXPT_LABEL": self.session,
            **archive_destination_params(self.project, self.direct_archive),
        }


def zip_payload(label: str, batch: list[Path], *, root: Path, workspace: Path) -> Payload:
    """A payload whose zip (``ZIP_STORED``) is built in ``workspace`` before it is sent.

    Args:
        label: Archive file name.
        batch: Files (under ``root``).
        root: Entry names are relative to it.
        workspace: Folder for the archive (deleted after the upload).

    Returns:
        The payload.
    """
    target = workspace / label

    def prepare() -> None:
        build_archive(batch, workspace, fmt="zip", name=label, root=root)

    return Payload(
        label=label,
        files=batch,
        content_type="application/zip",
        open_body=file_payload(target, "application/zip").open_body,
        prepare=prepare,
        cleanup=lambda: target.unlink(missing_ok=True),
    )


class DicomSender:
    """Sends DICOM to one XNAT through the import service.

    Args:
        client: The service's client (ledger checks; uploads use per-thread clients).
        settings: Retry settings.
        ledger: The ledger, or None.
    """

    def __init__(
        self, client: XNATClient, settings: TransferSettings, ledger: TransferLedger | None
    ) -> None:
        self.client = client
        self.settings = settings
        self.ledger = ledger

    def _ingest(self, target: Target, key_of: KeyOf | None = None) -> IngestLedger:
        scope = dicom_scope(
            self.client.base_url,
            target.project,
            target.subject,
            target.session,
            direct_archive=target.direct_archive,
        )
        return IngestLedger(self.ledger, scope, key_of)

    def _pending(self, ingest: IngestLedger, files: Sequence[Path], target: Target) -> list[Path]:
        def alive(remotes: set[str]) -> bool:
            return destination_alive(
                self.client, project=target.project, session=target.session, remotes=remotes
            )

        return ingest.split(files, alive)[0]

    def send_zip_file(
        self,
        source: Path,
        *,
        params: dict[str, Any],
        target: Target,
        callback: ProgressCallback,
    ) -> UploadSummary:
        """Send a zip as it is (counts in the summary refer to its entries).

        Args:
            source: The zip.
            params: Import parameters.
            target: Destination.
            callback: Progress callback.

        Returns:
            The summary.
        """
        with zipfile.ZipFile(source) as archive:
            count = sum(1 for info in archive.infolist() if not info.is_dir())
        ingest = self._ingest(target)
        to_send = self._pending(ingest, [source], target)
        payloads = [file_payload(source, "application/zip")] if to_send else []
        summary = self._send([source], 0, payloads, params, ingest, workers=1, callback=callback)
        scaled = {k: count for k in ("uploaded", "failed", "skipped") if summary[k] == 1}
        return summary.model_copy(update={"total_files": count, **scaled})

    def send_batches(
        self,
        files: list[Path],
        others: int,
        batches: Callable[[list[Path]], list[list[Path]]],
        *,
        fmt: str,
        root: Path,
        params: dict[str, Any],
        target: Target,
        workers: int,
        archive_workers: int,
        callback: ProgressCallback,
        factory: Callable[[], XNATClient] | None = None,
        timeout: float | None = None,
    ) -> UploadSummary:
        """Send files as archives: tars streamed into the requests, or zips built on disk.

        Args:
            files: DICOM files under ``root``.
            others: Non-DICOM files skipped.
            batches: Splits the files still to send into batches.
            fmt: ``tar`` or ``zip``.
            root: Entry names are relative to it.
            params: Import parameters.
            target: Destination.
            workers: Concurrent uploads.
            archive_workers: Concurrent zip builds.
            callback: Progress callback.
            factory: Makes per-thread clients (default: clones).
            timeout: Request timeout in seconds.

        Returns:
            The summary.
        """
        workspace = Path(tempfile.mkdtemp(prefix="xnat-upload-"))
        try:
            ingest = self._ingest(target)
            to_send = self._pending(ingest, files, target)
            payloads = []
            for number, batch in enumerate(batches(to_send) if to_send else [], start=1):
                label = f"batch-{number:04d}.{fmt}"
                if fmt == "tar":
                    payloads.append(tar_payload(label, batch, root=root))
                else:
                    payloads.append(zip_payload(label, batch, root=root, workspace=workspace))
            return self._send(
                files,
                others,
                payloads,
                params,
                ingest,
                workers=workers,
                callback=callback,
                archive_workers=archive_workers,
                factory=factory,
                timeout=timeout,
            )
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    def send_gradual(
        self,
        files: list[Path],
        others: int,
        target: Target,
        *,
        workers: int,
        callback: ProgressCallback,
        key_of: KeyOf | None = None,
    ) -> UploadSummary:
        """Send each file as one gradual-DICOM request.

        Args:
            files: DICOM files.
            others: Non-DICOM files skipped.
            target: Destination.
            workers: Concurrent requests.
            callback: Progress callback.
            key_of: Ledger keys (files extracted from a zip).

        Returns:
            The summary.
        """
        ingest = self._ingest(target, key_of)
        to_send = self._pending(ingest, files, target)
        payloads = FilePayloads(to_send, "application/dicom")
        params = target.gradual_params()
        return self._send(
            files, others, payloads, params, ingest, workers=workers, callback=callback
        )

    def send_gradual_zip(
        self, source: Path, target: Target, *, workers: int, callback: ProgressCallback
    ) -> UploadSummary:
        """Extract a zip safely to a temporary folder, then send its DICOM files gradually.

        Ledger keys are ``{zip}!{entry}`` with the zip's size and mtime.

        Args:
            source: The zip.
            target: Destination.
            workers: Concurrent requests.
            callback: Progress callback.

        Returns:
            The summary.
        """
        scratch = Path(tempfile.mkdtemp(prefix="xnat-gradual-"))
        try:
            folder = scratch / "x"
            safe_extract(source, folder)
            files, others = scan_source(folder)

            def key_of(path: Path) -> tuple[str, Path]:
                return f"{source}!{path.relative_to(folder).as_posix()}", source

            return self.send_gradual(
                files, others, target, workers=workers, callback=callback, key_of=key_of
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _send(
        self,
        files: list[Path],
        others: int,
        payloads: Sequence[Payload],
        params: dict[str, Any],
        ingest: IngestLedger,
        *,
        workers: int,
        callback: ProgressCallback,
        archive_workers: int = 1,
        factory: Callable[[], XNATClient] | None = None,
        timeout: float | None = None,
    ) -> UploadSummary:
        started = time.monotonic()
        already = len(files) - sum(len(p.files) for p in payloads)
        tracker = upload_tracker(callback, len(files))
        if already:
            logger.info("Ledger: %d file(s) already accepted by XNAT; not sending them", already)
            tracker.item_done(True, "already uploaded", items=already)
        outcome = send_payloads(
            payloads,
            params,
            clients=factory or self.client.clone,
            workers=workers,
            settings=self.settings,
            tracker=tracker,
            ingest=ingest,
            archive_workers=archive_workers,
            timeout=timeout,
        )
        return summarize(
            outcome,
            total_files=len(files) + others,
            skipped=already + others,
            started=started,
            tracker=tracker,
        )
