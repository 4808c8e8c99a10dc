"""The upload task of an ingest: one Prefect task per batch, each holding one server slot.

Per transport (``xnat-rest.md`` §8, §10):

* ``gradual``: the batch's files go one by one to the gradual-DICOM importer
  (``UploadService.upload_dicom_gradual_files`` with one worker), so one batch = at most one
  request in flight; slot kind ``uploads``.
* ``parallel-zip``: the batch is zipped on disk (``ZIP_STORED``) *before* taking a slot, then
  sent as one DICOM-zip import (``UploadService.upload_dicom``); slot kind ``uploads``.
* ``cstore``: the batch goes over one DICOM association (``dicom.store_scu.send_files``) to
  XNAT's receiver; slot kind ``dicom``.

The HTTP transports consult the transfer ledger (:mod:`xnat_prefect.services.ledger`, the
per-user one in ``$XNAT_PREFECT_LEDGER_DIR``): files XNAT already accepted for the same
destination, unchanged since, are not sent again, so re-running a crashed ingest sends only
what is missing (a zip batch is skipped when all its files were accepted). With
``overwrite='delete'`` the ledger is not consulted: a replacement sends everything.

A batch with files XNAT did not accept fails with :class:`~xnat_prefect.errors.TransferError`
naming how many, the first local file and why. Transient failures (timeouts, 429/502/503/504,
a refused or busy DICOM association, C-STORE files left unsent only because associations were
lost) are retried by Prefect; the emulator and XNAT both replace a re-sent SOP instance, so a
retried batch cannot duplicate data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.archives import build_archive
from xnat_prefect.dicom.store_scu import NOT_SENT, DicomNetworkError, StoreResult, send_files
from xnat_prefect.errors import InvalidInputError, TransferError, is_transient
from xnat_prefect.flows._common import ProgressReporter, run_logger
from xnat_prefect.flows._ingest_source import Batch
from xnat_prefect.flows.results import BatchReport, Transport
from xnat_prefect.models.transfer import UploadProgress, UploadSummary
from xnat_prefect.services._transfer_import import IngestLedger, destination_alive, dicom_scope
from xnat_prefect.services.ledger import TransferLedger, file_stamp
from xnat_prefect.services.uploads import UploadService
from xnat_prefect.tasks._common import xnat_client
from xnat_prefect.tasks.limits import xnat_slot

__all__ = ["CStoreNode", "SendTarget", "send_batch"]

#: ``TransferError.status`` of a C-STORE batch whose files were only lost to the network.
NETWORK_LOST = "NETWORK_LOST"


@dataclass(frozen=True)
class CStoreNode:
    """Where C-STORE batches go.

    Attributes:
        host: Receiver host.
        port: Receiver port.
        called_aet: Receiver AE title.
        calling_aet: Our AE title.
        timeout: Network timeout of an association, in seconds.

    Example:
        ```python
        CStoreNode("xnat.example.org", 8104, "XNAT", "XNATPREFECT", 30.0)
        ```
    """

    host: str
    port: int
    called_aet: str
    calling_aet: str
    timeout: float


@dataclass(frozen=True)
class SendTarget:
    """Everything a batch task needs besides the batch.

    Attributes:
        transport: ``cstore``, ``gradual`` or ``parallel-zip``.
        project: Project ID (HTTP transports).
        subject: Subject label (HTTP transports).
        session: Session label (HTTP transports).
        direct_archive: Send with ``Direct-Archive=true`` instead of into the prearchive.
        zip_overwrite: ``overwrite`` of each zip import (``append`` or ``delete``).
        root: Folder the source files are under (zip entry names are relative to it).
        workspace: Scratch folder for zips.
        node: C-STORE destination (``cstore`` only).

    Example:
        ```python
        SendTarget("gradual", "P1", "S01", "S01_MR1", False, "append", root, workspace)
        ```
    """

    transport: Transport
    project: str | None
    subject: str | None
    session: str | None
    direct_archive: bool
    zip_overwrite: Literal["append", "delete"]
    root: Path
    workspace: Path
    node: CStoreNode | None = None

    @property
    def resume(self) -> bool:
        """Whether files the ledger shows as accepted are skipped (not when replacing)."""
        return self.zip_overwrite != "delete"


def _retry_transient(task_obj: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else None
    if isinstance(exc, DicomNetworkError):
        return exc.transient
    if isinstance(exc, TransferError) and exc.status == NETWORK_LOST:
        return True
    return exc is not None and is_transient(exc)


@contextmanager
def _ledger(target: SendTarget) -> Iterator[TransferLedger | None]:
    """The per-user transfer ledger, or None (replacing, or the ledger cannot be opened)."""
    if not target.resume:
        yield None
        return
    try:
        ledger = TransferLedger.default()
    except InvalidInputError as exc:
        run_logger().warning("%s; this batch is sent without it (a re-run resends it)", exc)
        yield None
        return
    with ledger:
        yield ledger


def _destination(
    client: XNATClient, ledger: TransferLedger | None, target: SendTarget, labels: tuple[str, ...]
) -> IngestLedger:
    project, subject, session = labels
    scope = dicom_scope(
        client.base_url, project, subject, session, direct_archive=target.direct_archive
    )
    return IngestLedger(ledger, scope)


class _Advance:
    """Turns cumulative ``UploadProgress.current`` values into progress increments."""

    def __init__(self, progress: ProgressReporter | None) -> None:
        self.progress = progress
        self.seen = 0

    def __call__(self, report: UploadProgress) -> None:
        if self.progress is not None and report.current > self.seen:
            self.progress.advance(report.current - self.seen)
            self.seen = report.current


@task(
    name="Send a DICOM batch",
    task_run_name="send-{target.transport}-batch-{batch.number}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
def send_batch(
    credentials: XNATCredentials,
    batch: Batch,
    target: SendTarget,
    progress: ProgressReporter | None = None,
) -> BatchReport:
    """Send one batch of DICOM files, holding one ``uploads`` (or ``dicom``) slot.

    Args:
        credentials: The XNAT credentials block.
        batch: The batch.
        target: Transport and destination.
        progress: Progress artifact to advance per file.

    Returns:
        What was sent.

    Raises:
        TransferError: XNAT did not accept some files.
        DicomNetworkError: No DICOM association could be opened (``cstore``).

    Example:
        ```python
        report = send_batch(XNATCredentials.load("BLOCK_NAME"), batch, target)
        ```
    """
    logger = run_logger()
    server = credentials.server_key
    if target.transport == "cstore":
        report = _send_cstore(server, batch, target, progress)
    elif target.transport == "gradual":
        report = _send_gradual(credentials, batch, target, progress)
    else:
        report = _send_zip(credentials, batch, target, progress)
    logger.info(
        "batch %d: %d of %d file(s) sent (%d bytes, scans %s)",
        batch.number,
        report.sent,
        report.files,
        report.bytes_sent,
        ",".join(report.series),
    )
    return report


def _check_summary(batch: Batch, summary: UploadSummary) -> None:
    if summary.failed or summary.errors:
        # XNAT names the upload ("upload.dcm", the zip), not the local file: name it here
        first = (
            f"{summary.errors[0][0]}: {summary.errors[0][1]}"
            if summary.errors
            else "no reason given"
        )
        raise TransferError(
            f"batch {batch.number}: {summary.failed} of {summary.total_files} file(s) were not "
            f"accepted by XNAT (first: {first}); fix or remove the file(s) and run again",
            target=f"batch-{batch.number}",
        )


def _labels(target: SendTarget) -> tuple[str, str, str]:
    if not (target.project and target.subject and target.session):
        raise TransferError("HTTP transports need project, subject and session labels")
    return target.project, target.subject, target.session


def _send_gradual(
    credentials: XNATCredentials,
    batch: Batch,
    target: SendTarget,
    progress: ProgressReporter | None,
) -> BatchReport:
    project, subject, session = _labels(target)
    with (
        _ledger(target) as ledger,
        xnat_slot(credentials.server_key, "uploads"),
        xnat_client(credentials) as client,
    ):
        service = UploadService(client, ledger=ledger if ledger is not None else False)
        summary = service.upload_dicom_gradual_files(
            files=list(batch.files),
            project=project,
            subject=subject,
            session=session,
            workers=1,
            direct_archive=target.direct_archive,
            progress_callback=_Advance(progress),
        )
    _check_summary(batch, summary)
    return BatchReport(
        batch=batch.number,
        files=len(batch.files),
        sent=summary.uploaded,
        bytes_sent=summary.bytes_sent,
        series=list(batch.scan_ids),
    )


def _send_zip(
    credentials: XNATCredentials,
    batch: Batch,
    target: SendTarget,
    progress: ProgressReporter | None,
) -> BatchReport:
    project, subject, session = _labels(target)
    files = [Path(f).resolve() for f in batch.files]
    with _ledger(target) as ledger, xnat_client(credentials) as client:
        destination = _destination(client, ledger, target, (project, subject, session))

        def alive(remotes: set[str]) -> bool:
            return destination_alive(client, project=project, session=session, remotes=remotes)

        # a zip import is all or nothing: skip the batch only when every file was accepted
        if not destination.split(files, alive)[0]:
            run_logger().info(
                "batch %d: XNAT already accepted its %d file(s) (transfer ledger); not sending",
                batch.number,
                len(files),
            )
            if progress is not None:
                progress.advance(len(files))
            return BatchReport(
                batch=batch.number,
                files=len(files),
                sent=0,
                bytes_sent=0,
                series=list(batch.scan_ids),
            )
        stamps = {f: file_stamp(f) for f in files}  # a file changed while zipped is not confirmed
        name = f"batch-{batch.number:04d}.zip"
        info = build_archive(batch.files, target.workspace, fmt="zip", name=name, root=target.root)
        try:
            with xnat_slot(credentials.server_key, "uploads"):
                summary = UploadService(client, ledger=False).upload_dicom(
                    project,
                    subject,
                    session,
                    info.path,
                    overwrite=target.zip_overwrite == "delete",
                    quarantine=not target.direct_archive,
                    parallel=False,
                    workers=1,
                )
        finally:
            info.path.unlink(missing_ok=True)
        _check_summary(batch, summary)
        remote = summary.session_uris[0] if summary.session_uris else None
        unchanged = [f for f in files if file_stamp(f) == stamps[f]]
        destination.confirm(unchanged, remote=remote, md5s={})
    if progress is not None:
        progress.advance(len(batch.files))
    return BatchReport(
        batch=batch.number,
        files=len(batch.files),
        sent=summary.uploaded,
        bytes_sent=summary.bytes_sent or info.size,
        series=list(batch.scan_ids),
    )


def _send_cstore(
    server: str, batch: Batch, target: SendTarget, progress: ProgressReporter | None
) -> BatchReport:
    node = target.node
    if node is None:
        raise TransferError("transport 'cstore' needs a DICOM node (host, port, AE title)")

    def on_result(result: StoreResult) -> None:
        if progress is not None:
            progress.advance(1)

    with xnat_slot(server, "dicom"):
        results = send_files(
            list(batch.files),
            node.host,
            node.port,
            node.called_aet,
            calling_aet=node.calling_aet,
            timeout=node.timeout,
            on_result=on_result,
        )
    failed = [r for r in results if not r.ok]
    if failed and all(r.status == NOT_SENT and r.transient for r in failed):
        # only lost associations: Prefect retries the batch (re-sent instances are replaced)
        lost = TransferError(
            f"batch {batch.number}: {len(failed)} of {len(results)} file(s) were not sent to "
            f"{node.called_aet}@{node.host}:{node.port} because the DICOM associations were "
            f"lost (first: {failed[0].path}: {failed[0].error}); check the network to the "
            "receiver and run again",
            target=f"batch-{batch.number}",
            status=NETWORK_LOST,
        )
        lost.transient = True  # type: ignore[attr-defined]
        raise lost
    if failed:
        raise TransferError(
            f"batch {batch.number}: {len(failed)} of {len(results)} file(s) were refused by "
            f"{node.called_aet}@{node.host}:{node.port} (first: {failed[0].path}: "
            f"{failed[0].error})",
            target=f"batch-{batch.number}",
        )
    return BatchReport(
        batch=batch.number,
        files=len(batch.files),
        sent=len(results),
        bytes_sent=sum(r.path.stat().st_size for r in results),
        series=list(batch.scan_ids),
    )
