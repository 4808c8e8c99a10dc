"""Typed results of the composite flows: what a downstream flow (or a person) can rely on.

Every model is strict (unknown fields are errors), JSON-friendly (Prefect persists flow results)
and carries no patient names or patient IDs: only XNAT ids and labels, counts, sizes, UIDs of
DICOM instances and checksums.

Example:
    ```python
    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.flows import IngestResult, ingest_dicom

    result: IngestResult = ingest_dicom(XNATCredentials.load("BLOCK_NAME"), "/data/study1",
                                        project="P1", subject="S01", session="S01_MR1")
    print(result.experiment_id, result.verified)
    ```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ArchivedSession",
    "BatchReport",
    "CatalogRefreshResult",
    "DownloadSessionsResult",
    "IngestResult",
    "PipelineRunResult",
    "PipelineSessionResult",
    "PrearchiveArchiveReport",
    "PrearchiveItem",
    "ScanCheck",
    "SessionDownload",
    "Transport",
    "WatchResult",
]

Transport = Literal["cstore", "gradual", "parallel-zip"]
"""How DICOM reaches XNAT: C-STORE to its receiver, gradual-DICOM POSTs, or zip batches."""


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- ingest -------------------------------------------------------------------------------------


class BatchReport(_Result):
    """One batch of an ingest (one Prefect task).

    Attributes:
        batch: Batch number (1-based).
        files: Files in the batch.
        sent: Files XNAT accepted.
        failed: Files refused or not sent.
        bytes_sent: Bytes of the accepted files.
        series: Series numbers the batch carried.

    Example:
        ```python
        sum(b.bytes_sent for b in result.batches)
        ```
    """

    batch: int
    files: int
    sent: int
    failed: int = 0
    bytes_sent: int = 0
    series: list[str] = Field(default_factory=list)


class ScanCheck(_Result):
    """Local files of one series against the archived scan.

    Attributes:
        scan_id: Scan ID (the series number).
        local_files: DICOM files of the series in the source.
        archived_files: Files the scan's DICOM resource lists.
        uids_checked: SOP Instance UIDs were compared (the catalog lists them).
        missing_uids: SOP Instance UIDs sent but not archived.
        unexpected_uids: SOP Instance UIDs archived but not in the source.
        md5_checked: MD5 digests were compared.
        md5_mismatches: Local files whose MD5 is not in the scan's catalog.
        ok: Everything compared matched.

    Example:
        ```python
        [s.scan_id for s in result.scans if not s.ok]
        ```
    """

    scan_id: str
    local_files: int
    archived_files: int
    uids_checked: bool = False
    missing_uids: list[str] = Field(default_factory=list)
    unexpected_uids: list[str] = Field(default_factory=list)
    md5_checked: bool = False
    md5_mismatches: int = 0
    ok: bool = True


class IngestResult(_Result):
    """Outcome of :func:`~xnat_prefect.flows.ingest.ingest_dicom`.

    Attributes:
        server: The server's ``host:port``.
        project: Project ID the session is in.
        subject: Subject label.
        subject_id: Subject accession ID (when archived).
        session_label: Session (experiment) label.
        experiment_id: Accession ID (``XNAT_E00001``); None when left in the prearchive.
        study_instance_uid: StudyInstanceUID (XNAT's prearchive ``tag``).
        transport: How the files were sent.
        archived_by: ``auto-archive`` (the server), ``flow`` (archived by this flow),
            ``direct-archive``, or ``none`` (left READY in the prearchive).
        files_sent: Files XNAT accepted in this run.
        bytes_sent: Bytes of those files.
        batches: Per-batch report.
        scans: Per-scan verification.
        verified: Local and archive matched (scan count, files per scan, UIDs/MD5 when checked).
        duration_seconds: Wall time of the run.
        warnings: Things worth a look that did not fail the run.

    Example:
        ```python
        result = ingest_dicom(XNATCredentials.load("BLOCK_NAME"), "study1", transport="cstore")
        print(result.experiment_id, result.verified)
        ```
    """

    server: str
    project: str
    subject: str | None = None
    subject_id: str | None = None
    session_label: str
    experiment_id: str | None = None
    study_instance_uid: str
    transport: Transport
    archived_by: Literal["auto-archive", "flow", "direct-archive", "none"]
    files_sent: int
    bytes_sent: int
    batches: list[BatchReport] = Field(default_factory=list)
    scans: list[ScanCheck] = Field(default_factory=list)
    verified: bool
    duration_seconds: float
    warnings: list[str] = Field(default_factory=list)


# --- prearchive ---------------------------------------------------------------------------------


class PrearchiveItem(_Result):
    """One prearchive session as the archiving flow saw or left it.

    Attributes:
        project: Project ID.
        timestamp: Prearchive timestamp (upload slot).
        folder: Session folder name.
        session_label: Session label in the prearchive.
        subject: Subject label in the prearchive.
        status: Prearchive status when seen (``READY``, ``CONFLICT``...).
        target_subject: Subject label it was (or would be) archived under.
        target_label: Session label it was (or would be) archived under.
        experiment_id: Accession ID after archiving.
        age_minutes: Minutes since its last modification.
        message: Why it was skipped or failed.

    Example:
        ```python
        [(i.folder, i.message) for i in report.skipped]
        ```
    """

    project: str
    timestamp: str
    folder: str
    session_label: str | None = None
    subject: str | None = None
    status: str | None = None
    target_subject: str | None = None
    target_label: str | None = None
    experiment_id: str | None = None
    age_minutes: float | None = None
    message: str | None = None


class PrearchiveArchiveReport(_Result):
    """Outcome of :func:`~xnat_prefect.flows.prearchive.archive_prearchive_sessions`.

    Attributes:
        project: Project ID.
        archived: Sessions archived by this run.
        conflicts: CONFLICT sessions (exist in the archive; not touched).
        errors: ERROR sessions (not touched).
        failed: READY sessions whose archiving failed (the reason is in ``message``).
        skipped: Sessions left alone: still receiving or building, queued, too young.
        dry_run: Nothing was archived; ``archived`` lists what would have been.
        duration_seconds: Wall time of the run.

    Example:
        ```python
        report = archive_prearchive_sessions(XNATCredentials.load("BLOCK_NAME"), "P1")
        print(len(report.archived), report.success)
        ```
    """

    project: str
    archived: list[PrearchiveItem] = Field(default_factory=list)
    conflicts: list[PrearchiveItem] = Field(default_factory=list)
    errors: list[PrearchiveItem] = Field(default_factory=list)
    failed: list[PrearchiveItem] = Field(default_factory=list)
    skipped: list[PrearchiveItem] = Field(default_factory=list)
    dry_run: bool = False
    duration_seconds: float = 0.0

    @property
    def success(self) -> bool:
        """No archive attempt failed (CONFLICT/ERROR sessions are reported, not failures)."""
        return not self.failed


# --- pipelines ----------------------------------------------------------------------------------


class PipelineSessionResult(_Result):
    """One session's pipeline run.

    Attributes:
        session: The session as given (ID or label).
        experiment_id: Its accession ID, when resolved.
        job_id: Job id (``workflow:N``, ``container:N`` or ``pending:...``).
        workflow_id: XNAT workflow id.
        container_id: Container Service container id.
        status: Last status text XNAT reported.
        outcome: ``complete``, ``failed``, ``killed``, ``timed-out``, ``launch-failed`` or
            ``cancelled`` (the flow run was cancelled and the job killed).
        message: Error text of a bad end.
        duration_seconds: Launch to terminal state.

    Example:
        ```python
        [(r.session, r.outcome) for r in run.results]
        ```
    """

    session: str
    experiment_id: str | None = None
    job_id: str | None = None
    workflow_id: str | None = None
    container_id: str | None = None
    status: str | None = None
    outcome: Literal["complete", "failed", "killed", "timed-out", "launch-failed", "cancelled"]
    message: str | None = None
    duration_seconds: float = 0.0


class PipelineRunResult(_Result):
    """Outcome of :func:`~xnat_prefect.flows.pipelines.run_pipeline_and_wait`.

    Attributes:
        pipeline: Pipeline or wrapper name.
        project: Project ID, when given.
        results: One entry per session, in the order given.
        duration_seconds: Wall time of the run.

    Example:
        ```python
        run = run_pipeline_and_wait(XNATCredentials.load("BLOCK_NAME"), "dcm2niix-session",
                                    ["XNAT_E00001"])
        print(run.succeeded)
        ```
    """

    pipeline: str
    project: str | None = None
    results: list[PipelineSessionResult] = Field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def succeeded(self) -> list[str]:
        """Sessions whose job ended Complete."""
        return [r.session for r in self.results if r.outcome == "complete"]

    @property
    def failed(self) -> list[str]:
        """Sessions whose job did not end Complete."""
        return [r.session for r in self.results if r.outcome != "complete"]


# --- catalogs -----------------------------------------------------------------------------------


class CatalogRefreshResult(_Result):
    """Outcome of :func:`~xnat_prefect.flows.catalog.refresh_catalogs_flow`.

    Attributes:
        project: Project ID.
        options: Refresh operations asked for (empty: XNAT's default, all of them).
        experiments: Experiments considered.
        refreshed: Experiments refreshed.
        failed: Experiment -> reason.
        batches: Batches (tasks) run.
        duration_seconds: Wall time of the run.

    Example:
        ```python
        result = refresh_catalogs_flow(XNATCredentials.load("BLOCK_NAME"), "P1")
        print(result.refreshed)
        ```
    """

    project: str
    options: list[str] = Field(default_factory=list)
    experiments: int = 0
    refreshed: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    batches: int = 0
    duration_seconds: float = 0.0

    @property
    def success(self) -> bool:
        """Nothing failed."""
        return not self.failed


# --- downloads ----------------------------------------------------------------------------------


class SessionDownload(_Result):
    """One downloaded session.

    Attributes:
        session: The session as given (ID or label).
        output_dir: Folder the files went to.
        total_files: Files considered.
        downloaded: Files written in this run.
        skipped: Files already present and current (resume).
        bytes_received: Bytes received in this run.
        verified: Every file's MD5 matched XNAT's catalog.
        duration_seconds: Wall time.

    Example:
        ```python
        [(s.session, s.downloaded, s.skipped) for s in result.sessions]
        ```
    """

    session: str
    output_dir: str
    total_files: int = 0
    downloaded: int = 0
    skipped: int = 0
    bytes_received: int = 0
    verified: bool = False
    duration_seconds: float = 0.0


class DownloadSessionsResult(_Result):
    """Outcome of :func:`~xnat_prefect.flows.download.download_sessions`.

    Attributes:
        output_dir: Root folder.
        sessions: Sessions downloaded completely.
        failed: Session -> reason, for the others.
        files: Files written in this run, over all sessions.
        bytes_received: Bytes received in this run.
        verified: Every downloaded session was verified.
        duration_seconds: Wall time of the run.

    Example:
        ```python
        result = download_sessions(XNATCredentials.load("BLOCK_NAME"), ["XNAT_E00001"], "out")
        print(result.verified)
        ```
    """

    output_dir: str
    sessions: list[SessionDownload] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    files: int = 0
    bytes_received: int = 0
    verified: bool = False
    duration_seconds: float = 0.0


# --- watcher ------------------------------------------------------------------------------------


class ArchivedSession(_Result):
    """A session found newly archived by the watcher (one ``xnat.session.archived`` event).

    Attributes:
        experiment_id: Accession ID.
        project: Project ID.
        subject_id: Subject accession ID.
        subject_label: Subject label.
        session_label: Session label.
        insert_date: When XNAT archived it (server time, as XNAT reports it).

    Example:
        ```python
        [s.experiment_id for s in watch.new_sessions]
        ```
    """

    experiment_id: str
    project: str
    subject_id: str | None = None
    subject_label: str | None = None
    session_label: str | None = None
    insert_date: str | None = None


class WatchResult(_Result):
    """Outcome of :func:`~xnat_prefect.flows.watcher.watch_archive`.

    Attributes:
        server: The server's ``host:port``.
        project: Project ID watched.
        variable: Name of the Prefect Variable holding the watermark.
        previous_watermark: Watermark before the run (None on the first run).
        watermark: Watermark after the run.
        new_sessions: Sessions archived since the previous watermark (one event each).
        events_emitted: Events sent.
        baseline_only: First run without backfill: the watermark was set, nothing emitted.

    Example:
        ```python
        watch = watch_archive(XNATCredentials.load("BLOCK_NAME"), "P1")
        print(watch.events_emitted, watch.watermark)
        ```
    """

    server: str
    project: str
    variable: str
    previous_watermark: str | None = None
    watermark: str | None = None
    new_sessions: list[ArchivedSession] = Field(default_factory=list)
    events_emitted: int = 0
    baseline_only: bool = False
