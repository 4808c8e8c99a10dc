"""``ingest_dicom``: send a DICOM study to XNAT, wait until it has settled, verify it.

1. Read the source (folder or zip): every file's study/series/instance UIDs, one study only.
2. Split it into batches along series and send them, one Prefect task per batch on a
   ``ThreadPoolTaskRunner(max_workers=...)`` (or a Dask cluster: ``executor='dask'``), each
   holding one slot of the server's ``uploads`` limit (``dicom`` for C-STORE) so the number
   of requests in flight holds across runs and Dask workers.
3. Follow the study by StudyInstanceUID through the prearchive (or Direct-Archive) to the
   archive; CONFLICT, ERROR, a stall, an Unassigned routing or scans listing no files fail with
   :class:`~xnat_prefect.errors.ArchiveFailed` / :class:`~xnat_prefect.errors.SessionNotSettled`.
   READY sessions of manual projects (prearchive code 0) are archived when ``archive``.
4. Verify the archive against the source (scans, files per scan, SOP Instance UIDs when the
   catalog lists them, MD5 on request): :class:`~xnat_prefect.errors.VerificationError`.
5. Emit ``xnat.session.archived`` and write a table artifact (ids, counts, checks; no patient
   names or IDs).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.utilities.annotations import unmapped

from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.errors import InvalidInputError, TransferError, is_transient
from xnat_prefect.flows._common import (
    FanoutExecutor,
    ProgressReporter,
    RunLogger,
    artifact_key,
    check_fanout,
    emit_session_archived,
    fanout_runner,
    flow_task_runner,
    resolve_credentials,
    resolve_dicom_node,
    run_logger,
)
from xnat_prefect.flows._ingest_send import CStoreNode, SendTarget, send_batch
from xnat_prefect.flows._ingest_settle import SettledSession, SettleOptions
from xnat_prefect.flows._ingest_source import Batch, SourceManifest, plan_batches
from xnat_prefect.flows._ingest_tasks import (
    find_existing_session,
    read_ingest_source,
    refuse_existing,
    settle_session,
    verify_session,
)
from xnat_prefect.flows.results import BatchReport, IngestResult, ScanCheck, Transport
from xnat_prefect.services.base import check_new_label, check_ref

__all__ = ["ingest_dicom"]

OverwriteMode = Literal["none", "append", "delete"]
TRANSPORTS = ("cstore", "gradual", "parallel-zip")


def _check_inputs(
    transport: str,
    labels: tuple[str | None, str | None, str | None],
    *,
    batches: int,
    max_workers: int,
    overwrite: str,
    timings: tuple[float, float, float],
) -> None:
    if transport not in TRANSPORTS:
        raise InvalidInputError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if transport != "cstore" and not all(labels):
        raise InvalidInputError(
            f"transport {transport!r} needs project, subject and session; pass them, or use "
            "transport='cstore' to let XNAT route the study by its DICOM headers"
        )
    _check_labels(transport, labels)
    if overwrite not in ("none", "append", "delete"):
        raise InvalidInputError(f"overwrite must be none, append or delete, got {overwrite!r}")
    for name, value in (("batches", batches), ("max_workers", max_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    names = ("stall_seconds", "max_wait_seconds", "poll_interval_seconds")
    for name, number in zip(names, timings, strict=True):
        if not number > 0:
            raise InvalidInputError(f"{name} must be > 0 seconds, got {number!r}")


def _check_labels(transport: str, labels: tuple[str | None, str | None, str | None]) -> None:
    """Refuse bad ids/labels before any task runs (the upload checks them again per batch).

    HTTP transports create (or merge into) the subject and session, so those must be valid new
    labels; for C-STORE they only name what to look for, so they must be usable in a URL.
    """
    project, subject, session = labels
    if project:
        check_ref(project, "project")
    for name, value in (("subject", subject), ("session", session)):
        if not value:  # only C-STORE gets here without every label (routed by the headers)
            continue
        if transport == "cstore":
            check_ref(value, name)
        else:
            check_new_label(value, name)


def _cstore_node(credentials: XNATCredentials, node: DicomNode | None) -> CStoreNode:
    if node is None:
        host = urlsplit(credentials.url).hostname or "localhost"
        return CStoreNode(host, 8104, "XNAT", "XNATPREFECT", 30.0)
    return CStoreNode(
        node.host, node.port, node.called_ae_title, node.calling_ae_title, node.timeout_seconds
    )


def _send_all(
    credentials: XNATCredentials,
    plan: list[Batch],
    target: SendTarget,
    progress: ProgressReporter,
    max_workers: int,
    *,
    executor: FanoutExecutor = "threads",
    dask_address: str | None = None,
) -> list[BatchReport]:
    runner = fanout_runner(
        min(max_workers, len(plan)), executor=executor, dask_address=dask_address
    )
    with runner:
        futures = runner.map(
            send_batch,
            {
                "credentials": unmapped(credentials),
                "batch": plan,
                "target": unmapped(target),
                "progress": unmapped(progress),
            },
        )
        reports: list[BatchReport] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                report = future.result()
            except Exception as exc:
                errors.append(exc)
            else:
                reports.append(BatchReport.model_validate(report))
    if len(errors) == 1:
        raise errors[0]
    first = errors[0] if errors else None
    if (
        first is not None
        and not isinstance(first, TransferError)
        and all(type(e) is type(first) and not is_transient(e) for e in errors)
    ):
        # the same permanent failure in every failed batch (a wrong AE title, a refused
        # label): its type says what to fix, a generic TransferError would hide it
        raise first
    if errors:
        raise TransferError(
            f"{len(errors)} of {len(plan)} batches failed; first: {errors[0]}",
            target="batches",
        ) from errors[0]
    return reports


def _table(
    result: IngestResult, scans: list[ScanCheck], settled: SettledSession
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for scan in scans:
        rows.append(
            {
                "experiment": settled.experiment_id or "-",
                "scan": scan.scan_id,
                "local_files": scan.local_files,
                "archived_files": scan.archived_files,
                "uids_checked": scan.uids_checked,
                "missing_uids": len(scan.missing_uids),
                "md5_checked": scan.md5_checked,
                "md5_mismatches": scan.md5_mismatches,
                "ok": scan.ok,
            }
        )
    return rows or [{"experiment": settled.experiment_id or "-", "files_sent": result.files_sent}]


def _describe(result: IngestResult) -> str:
    return (
        f"**XNAT ingest** ({result.transport}) into {result.server} project "
        f"`{result.project}` session `{result.session_label}` -> "
        f"`{result.experiment_id or 'prearchive'}`: {result.files_sent} file(s), "
        f"{result.bytes_sent} bytes in {len(result.batches)} batch(es), "
        f"archived by {result.archived_by}, verified={result.verified}"
    )


@flow(
    name="xnat-ingest-dicom",
    task_runner=flow_task_runner(4),
    validate_parameters=True,
)
def ingest_dicom(
    credentials: XNATCredentials | str,
    source: str | Path,
    *,
    transport: Transport = "parallel-zip",
    project: str | None = None,
    subject: str | None = None,
    session: str | None = None,
    dicom_node: DicomNode | str | None = None,
    batches: int = 4,
    max_workers: int = 4,
    direct_archive: bool = False,
    overwrite: OverwriteMode = "none",
    archive: bool = True,
    stall_seconds: float = 600.0,
    max_wait_seconds: float = 3600.0,
    poll_interval_seconds: float = 5.0,
    verify: bool = True,
    verify_checksums: bool = False,
    emit_events: bool = True,
    executor: FanoutExecutor = "threads",
    dask_address: str | None = None,
) -> IngestResult:
    """Ingest one DICOM study (folder or zip) into XNAT, wait until archived, verify it.

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        source: Folder of DICOM files, or a zip of them (one study).
        transport: ``parallel-zip`` (DICOM-zip imports), ``gradual`` (gradual-DICOM, file by
            file) or ``cstore`` (DICOM C-STORE to the receiver; routed by the headers).
        project: Project ID (required for HTTP transports; expected project for C-STORE).
        subject: Subject label (required for HTTP transports).
        session: Session label (required for HTTP transports).
        dicom_node: C-STORE destination block (or its name); default: the XNAT host, port
            8104, AE title ``XNAT``.
        batches: Batches to split the study into (series are kept whole for zips).
        max_workers: Batches sent at once by this run (the server-wide ``uploads``/``dicom``
            concurrency limit applies on top; C-STORE also stops at the node's
            ``max_associations``).
        direct_archive: Send with ``Direct-Archive=true`` (HTTP transports).
        overwrite: ``none`` (an existing session is a conflict), ``append`` or ``delete``.
        archive: Archive the session when it waits READY on a manual project, and resolve a
            CONFLICT with ``overwrite`` when that is ``append``/``delete``.
        stall_seconds: Fail when nothing changes for this long; must exceed XNAT's rebuild
            interval (``sessionXmlRebuilderInterval``, 5 minutes by default).
        max_wait_seconds: Fail when not settled after this long.
        poll_interval_seconds: Pause between polls of the prearchive/archive.
        verify: Compare the archived session with the source.
        verify_checksums: Also compare MD5s (only when the site does not anonymize on receipt;
            with ``cstore`` the receiver rewrites the file meta, so the MD5s are skipped with a
            warning and the scans, file counts and SOP Instance UIDs are verified).
        emit_events: Emit ``xnat.session.archived`` when archived.
        executor: Where the batches run: ``threads`` of this flow run, or ``dask`` (needs the
            ``dask`` extra) on the cluster at ``dask_address`` or, without one, on a
            LocalCluster of ``max_workers`` task slots started for this run. Source and
            scratch folder (``TMPDIR``) must be on storage every Dask worker reads.
        dask_address: Scheduler address of an existing Dask cluster (``tcp://host:8786``).

    Returns:
        :class:`~xnat_prefect.flows.results.IngestResult`.

    Raises:
        InvalidInputError: Bad parameters or source (several studies, no DICOM...).
        MissingExtraError: ``executor='dask'`` without the ``dask`` extra (prefect-dask).
        TransferError: Batches XNAT did not accept (names the first local file and why).
        DicomNetworkError: Every C-STORE batch failed the same way (e.g. a wrong AE title).
        ArchiveFailed: The session ended CONFLICT or ERROR.
        SessionNotSettled: Stalled, timed out, Unassigned, or scans listing no files.
        VerificationError: The archive does not match the source.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import ingest_dicom

        result = ingest_dicom(XNATCredentials.load("BLOCK_NAME"), "/data/study1",
                              transport="gradual", project="P1", subject="S01",
                              session="S01_MR1")
        ```
    """
    started = time.monotonic()
    logger = run_logger()
    creds = resolve_credentials(credentials)
    labels = (project, subject, session)
    _check_inputs(
        transport,
        labels,
        batches=batches,
        max_workers=max_workers,
        overwrite=overwrite,
        timings=(stall_seconds, max_wait_seconds, poll_interval_seconds),
    )
    dask_address = check_fanout(executor, dask_address)
    node = None
    if transport == "cstore":
        node_block = resolve_dicom_node(dicom_node)
        node = _cstore_node(creds, node_block)
        if node_block is not None:
            max_workers = min(max_workers, node_block.max_associations)
    manifest = read_ingest_source(str(source))
    workspace = Path(tempfile.mkdtemp(prefix="xnat-ingest-zips-"))
    try:
        existing = find_existing_session(creds, project, session, manifest.study_uid)
        if overwrite == "none":
            refuse_existing(existing, project, session)
        return _ingest(
            creds,
            manifest,
            logger,
            transport=transport,
            labels=labels,
            node=node,
            batches=batches,
            max_workers=max_workers,
            workspace=workspace,
            direct_archive=direct_archive,
            overwrite=overwrite,
            archive=archive,
            timings=(stall_seconds, max_wait_seconds, poll_interval_seconds),
            verify=verify,
            verify_checksums=verify_checksums,
            emit_events=emit_events,
            existing=existing,
            started=started,
            executor=executor,
            dask_address=dask_address,
        )
    finally:
        manifest.cleanup()
        shutil.rmtree(workspace, ignore_errors=True)


def _ingest(
    creds: XNATCredentials,
    manifest: SourceManifest,
    logger: RunLogger,
    *,
    transport: Transport,
    labels: tuple[str | None, str | None, str | None],
    node: CStoreNode | None,
    batches: int,
    max_workers: int,
    workspace: Path,
    direct_archive: bool,
    overwrite: OverwriteMode,
    archive: bool,
    timings: tuple[float, float, float],
    verify: bool,
    verify_checksums: bool,
    emit_events: bool,
    existing: str | None,
    started: float,
    executor: FanoutExecutor = "threads",
    dask_address: str | None = None,
) -> IngestResult:
    project, subject, session = labels
    plan = plan_batches(manifest, batches, keep_series_whole=transport == "parallel-zip")
    progress = ProgressReporter(
        artifact_key("xnat-ingest", project or "routed", session or manifest.study_uid),
        total=len(manifest.files),
        description=f"Sending {len(manifest.files)} DICOM file(s) by {transport}",
    )
    target = SendTarget(
        transport=transport,
        project=project,
        subject=subject,
        session=session,
        direct_archive=direct_archive and transport != "cstore",
        zip_overwrite="delete" if overwrite == "delete" else "append",
        root=manifest.root,
        workspace=workspace,
        node=node,
    )
    logger.info(
        "sending %d file(s) in %d batch(es) by %s", len(manifest.files), len(plan), transport
    )
    reports = _send_all(
        creds, plan, target, progress, max_workers, executor=executor, dask_address=dask_address
    )
    progress.finish()
    stall, max_wait, poll = timings
    options = SettleOptions(
        study_uid=manifest.study_uid,
        project=project,
        label=session,
        direct_archive=target.direct_archive,
        archive=archive,
        overwrite=overwrite,
        stall_seconds=stall,
        max_wait_seconds=max_wait,
        poll_interval_seconds=poll,
        existing_experiment=existing,
    )
    settled = settle_session(creds, options)
    warnings = list(settled.warnings)
    if project and settled.project != project:
        warnings.append(f"XNAT filed the study in project {settled.project}, not {project}")
    scans: list[ScanCheck] = []
    verified = False
    if verify and settled.experiment_id:
        report = verify_session(
            creds,
            settled.experiment_id,
            manifest,
            verify_checksums,
            overwrite != "none",
            meta_rewritten=transport == "cstore",
        )
        scans, verified = report.scans, True
        warnings.extend(report.warnings)
    elif not verify:
        warnings.append("verification skipped (verify=False)")
    result = IngestResult(
        server=creds.server_key,
        project=settled.project,
        subject=settled.subject_label,
        subject_id=settled.subject_id,
        session_label=settled.session_label,
        experiment_id=settled.experiment_id,
        study_instance_uid=manifest.study_uid,
        transport=transport,
        archived_by=settled.archived_by,
        files_sent=sum(r.sent for r in reports),
        bytes_sent=sum(r.bytes_sent for r in reports),
        batches=reports,
        scans=scans,
        verified=verified,
        duration_seconds=round(time.monotonic() - started, 3),
        warnings=warnings,
    )
    if emit_events and settled.experiment_id:
        emit_session_archived(
            server=creds.server_key,
            experiment_id=settled.experiment_id,
            project=settled.project,
            subject_id=settled.subject_id,
            subject_label=settled.subject_label,
            session_label=settled.session_label,
            details={
                "transport": transport,
                "archived_by": settled.archived_by,
                "scans": len(manifest.by_scan()),
                "files": len(manifest.files),
                "verified": verified,
            },
        )
    create_table_artifact(
        _table(result, scans, settled),
        key=artifact_key("xnat-ingest-report", settled.project, settled.session_label),
        description=_describe(result),
    )
    logger.info(_describe(result))
    return result
