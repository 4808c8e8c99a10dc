"""The non-upload tasks of an ingest: read the source, wait for the session, verify it.

One task each, for the whole session (never per file): reading headers, following the
prearchive and comparing the archive are one unit of work each.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import ArchiveFailed, ResourceNotFoundError
from xnat_prefect.flows._common import run_logger
from xnat_prefect.flows._ingest_settle import SessionSettler, SettledSession, SettleOptions
from xnat_prefect.flows._ingest_source import SourceManifest, read_source
from xnat_prefect.flows._ingest_verify import META_REWRITTEN_WARNING, VerifyReport, verify_archive
from xnat_prefect.services import SessionService
from xnat_prefect.tasks._common import retry_on_transient, xnat_client

__all__ = [
    "find_existing_session",
    "read_ingest_source",
    "refuse_existing",
    "settle_session",
    "verify_session",
]


@task(name="Read the DICOM source", task_run_name="read-source", cache_policy=NO_CACHE)
def read_ingest_source(source: str) -> SourceManifest:
    """Collect the DICOM files of a folder or zip and read their study/series/instance UIDs.

    Args:
        source: Folder or zip.

    Returns:
        The manifest (call ``cleanup()`` when done).

    Example:
        ```python
        manifest = read_ingest_source("/data/incoming/study1")
        ```
    """
    manifest = read_source(Path(source))
    run_logger().info(
        "source: %d DICOM file(s), %d bytes, %d series, study %s",
        len(manifest.files),
        manifest.total_bytes,
        len(manifest.by_scan()),
        manifest.study_uid,
    )
    return manifest


@task(
    name="Look for the session in the archive",
    task_run_name="find-existing-{study_uid}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def find_existing_session(
    credentials: XNATCredentials, project: str | None, session: str | None, study_uid: str
) -> str | None:
    """The accession ID of the archived session this ingest would merge into, if any.

    With a project and session label, that session; otherwise the session holding the study's
    StudyInstanceUID (in the project when given, else anywhere the user can read).

    Args:
        credentials: The XNAT credentials block.
        project: Project ID, when known.
        session: Session label, when known.
        study_uid: The study's StudyInstanceUID.

    Returns:
        The accession ID, or None.

    Example:
        ```python
        find_existing_session(XNATCredentials.load("BLOCK_NAME"), "P1", "S01_MR1", uid)
        ```
    """
    with xnat_client(credentials) as client:
        sessions = SessionService(client)
        if project and session:
            try:
                return sessions.get(session, project=project).id
            except ResourceNotFoundError:
                return None
        for row in sessions.list(project=project, columns=["UID", "label"]):
            if row.get("UID") == study_uid:
                return row.id
    return None


def refuse_existing(existing: str | None, project: str | None, session: str | None) -> None:
    """Raise the CONFLICT of ``overwrite='none'`` when the session already exists.

    Args:
        existing: Accession ID found by :func:`find_existing_session`.
        project: Project ID asked for.
        session: Session label asked for.

    Raises:
        ArchiveFailed: ``existing`` is set (status ``CONFLICT``).

    Example:
        ```python
        refuse_existing(None, "P1", "S01_MR1")  # nothing archived yet: no error
        ```
    """
    if existing is None:
        return
    where = f"session {session!r} of project {project}" if session else "this study"
    raise ArchiveFailed(
        f"{where} is already archived as {existing}; overwrite='none' never merges into an "
        "existing session: ingest with overwrite='append' (merge) or 'delete' (replace scans)",
        target=existing,
        status="CONFLICT",
    )


@task(
    name="Wait until the session has settled",
    task_run_name="settle-{options.study_uid}",
    cache_policy=NO_CACHE,
)
def settle_session(credentials: XNATCredentials, options: SettleOptions) -> SettledSession:
    """Follow the study through the prearchive to the archive (see ``_ingest_settle``).

    Args:
        credentials: The XNAT credentials block.
        options: What to follow and how long.

    Returns:
        Where the study ended.

    Example:
        ```python
        settled = settle_session(XNATCredentials.load("BLOCK_NAME"), options)
        ```
    """
    logger = run_logger()
    with xnat_client(credentials) as client:
        settled = SessionSettler(client, options, logger).run()
    logger.info(
        "settled: project %s, session %s, experiment %s (%s)",
        settled.project,
        settled.session_label,
        settled.experiment_id or "-",
        settled.archived_by,
    )
    return settled


@task(
    name="Verify the archived session",
    task_run_name="verify-{experiment_id}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def verify_session(
    credentials: XNATCredentials,
    experiment_id: str,
    manifest: SourceManifest,
    check_md5: bool,
    allow_extra: bool,
    meta_rewritten: bool = False,
) -> VerifyReport:
    """Compare the archived session with the local files (raises on any mismatch).

    Args:
        credentials: The XNAT credentials block.
        experiment_id: Accession ID.
        manifest: The local study.
        check_md5: Compare MD5 digests too.
        allow_extra: Archived data the source lacks is only a warning.
        meta_rewritten: Sent by C-STORE (the receiver rewrote the file meta): the MD5 check is
            skipped with one WARNING saying why.

    Returns:
        The per-scan checks.

    Example:
        ```python
        report = verify_session(XNATCredentials.load("BLOCK_NAME"), "XNAT_E00001", manifest,
                                check_md5=False, allow_extra=False)
        ```
    """
    with xnat_client(credentials) as client:
        report = verify_archive(
            client,
            experiment_id,
            manifest,
            check_md5=check_md5,
            allow_extra=allow_extra,
            meta_rewritten=meta_rewritten,
        )
    if check_md5 and meta_rewritten:
        run_logger().warning("%s: %s", experiment_id, META_REWRITTEN_WARNING)
    checked = "UIDs" if any(s.uids_checked for s in report.scans) else "file counts"
    run_logger().info(
        "verified %s: %d scan(s) match (%s)", experiment_id, len(report.scans), checked
    )
    return report
