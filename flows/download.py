"""``download_sessions``: download many sessions, resumably, verified, within server limits.

One Prefect task per session, each holding one slot of the server's ``downloads`` limit while
``DownloadService.download_session`` fetches its files (``workers_per_session`` parallel GETs)
into ``output_dir/{session label}/...``. Downloads resume: ``.part`` files continue with HTTP
Range, and files the per-folder ledger shows complete and current are skipped, so re-running a
failed flow run only fetches what is missing. With ``verify``, every file's MD5 must match
XNAT's catalog (:class:`~xnat_prefect.errors.VerificationError` otherwise); a file that could
not be fetched is a :class:`~xnat_prefect.errors.TransferError`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import unmapped

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import InvalidInputError, TransferError, VerificationError
from xnat_prefect.flows._common import (
    FanoutExecutor,
    ProgressReporter,
    artifact_key,
    check_fanout,
    fanout_runner,
    flow_task_runner,
    resolve_credentials,
    run_logger,
)
from xnat_prefect.flows.results import DownloadSessionsResult, SessionDownload
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.tasks._common import retry_on_transient, xnat_client
from xnat_prefect.tasks.limits import xnat_slot

__all__ = ["download_sessions"]


@task(
    name="Download a session",
    task_run_name="download-{session}",
    retries=2,
    retry_delay_seconds=[5.0, 30.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def download_one_session(
    credentials: XNATCredentials,
    session: str,
    output_dir: str,
    options: dict[str, Any],
    progress: ProgressReporter | None = None,
) -> SessionDownload:
    """Download one session (resumable), holding one ``downloads`` slot.

    Args:
        credentials: The XNAT credentials block.
        session: Session ID (or label with ``options["project"]``).
        output_dir: Root folder.
        options: ``project``, ``include_resources``, ``include_assessors``, ``pattern``,
            ``resume``, ``verify``, ``workers``.
        progress: Progress artifact, advanced per session.

    Returns:
        What was fetched.

    Raises:
        TransferError: Some files could not be downloaded.
        VerificationError: ``verify`` and a checksum did not match (or could not be checked).

    Example:
        ```python
        download_one_session(XNATCredentials.load("BLOCK_NAME"), "XNAT_E00001", "/data/out",
                             {"verify": True, "workers": 2})
        ```
    """
    workers = int(options.get("workers", 1))
    with xnat_slot(credentials.server_key, "downloads"), xnat_client(credentials) as client:
        summary = DownloadService(client).download_session(
            session,
            Path(output_dir),
            project=options.get("project"),
            include_resources=bool(options.get("include_resources", True)),
            include_assessors=bool(options.get("include_assessors", False)),
            pattern=options.get("pattern"),
            resume=bool(options.get("resume", True)),
            verify=bool(options.get("verify", True)),
            parallel=workers > 1,
            workers=workers,
        )
    if summary.failed or summary.errors:
        first = summary.errors[0] if summary.errors else ("?", "no reason given")
        raise TransferError(
            f"{session}: {summary.failed} of {summary.total_files} file(s) failed "
            f"(first: {first[0]}: {first[1]}); run again to resume",
            target=session,
        )
    if options.get("verify", True) and not summary.verified:
        raise VerificationError(
            f"{session}: the downloaded files could not all be verified against XNAT's MD5s",
            target=session,
        )
    if progress is not None:
        progress.advance(1)
    run_logger().info(
        "%s: %d downloaded, %d already present, %d bytes",
        session,
        summary.downloaded,
        summary.skipped,
        summary.bytes_received,
    )
    return SessionDownload(
        session=session,
        output_dir=str(summary.output_dir or output_dir),
        total_files=summary.total_files,
        downloaded=summary.downloaded,
        skipped=summary.skipped,
        bytes_received=summary.bytes_received,
        verified=summary.verified,
        duration_seconds=round(summary.duration_s, 3),
    )


def _output_root(output_dir: str | Path) -> Path:
    """The resolved output folder, created; a path that is (or runs through) a file is refused."""
    root = Path(output_dir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise InvalidInputError(
            f"output_dir {root} exists and is not a folder; pass a folder path (or move the file)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise InvalidInputError(
            f"output_dir {root} cannot be created: {exc.filename or root} is a file, not a "
            "folder; pass a folder path"
        ) from exc
    return root


@flow(name="xnat-download-sessions", task_runner=flow_task_runner(4), validate_parameters=True)
def download_sessions(
    credentials: XNATCredentials | str,
    sessions: list[str],
    output_dir: str | Path,
    *,
    project: str | None = None,
    include_resources: bool = True,
    include_assessors: bool = False,
    pattern: str | None = None,
    resume: bool = True,
    verify: bool = True,
    workers_per_session: int = 2,
    max_workers: int = 4,
    raise_on_failure: bool = True,
    executor: FanoutExecutor = "threads",
    dask_address: str | None = None,
) -> DownloadSessionsResult:
    """Download sessions into ``output_dir`` (one folder per session), resumable and verified.

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        sessions: Session IDs (or labels, with ``project``).
        output_dir: Root folder.
        project: Project ID (needed for labels).
        include_resources: Also session-level resources.
        include_assessors: Also assessors.
        pattern: Glob on file names / paths (``*.dcm``).
        resume: Continue partial files; skip complete, current ones.
        verify: Check every file's MD5 against XNAT's catalog.
        workers_per_session: Parallel GETs inside one session.
        max_workers: Sessions downloaded at once by this run (the ``downloads`` limit applies on
            top, server-wide).
        raise_on_failure: Raise the first session's error; else report failures.
        executor: Where the sessions run: ``threads`` of this flow run, or ``dask`` (needs the
            ``dask`` extra) on the cluster at ``dask_address`` or, without one, on a
            LocalCluster of ``max_workers`` task slots started for this run. ``output_dir``
            must be on storage every Dask worker writes.
        dask_address: Scheduler address of an existing Dask cluster (``tcp://host:8786``).

    Returns:
        :class:`~xnat_prefect.flows.results.DownloadSessionsResult`.

    Raises:
        TransferError: A session's files could not all be fetched (``raise_on_failure``); the
            disk filled up (status ``ENOSPC``, no ``.part`` left).
        VerificationError: A checksum did not match, or XNAT lists no files for a scan whose
            resources report files (``raise_on_failure``).
        InvalidInputError: Bad parameters (``output_dir`` is a file, for one).
        MissingExtraError: ``executor='dask'`` without the ``dask`` extra (prefect-dask).

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import download_sessions

        done = download_sessions(XNATCredentials.load("BLOCK_NAME"),
                                 ["XNAT_E00001", "XNAT_E00002"], "/data/out")
        ```
    """
    started = time.monotonic()
    logger = run_logger()
    creds = resolve_credentials(credentials)
    targets = [sessions] if isinstance(sessions, str) else list(dict.fromkeys(sessions))
    for name, value in (("workers_per_session", workers_per_session), ("max_workers", max_workers)):
        if isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    if not targets:
        raise InvalidInputError("pass at least one session to download")
    dask_address = check_fanout(executor, dask_address)
    root = _output_root(output_dir)
    options: dict[str, Any] = {
        "project": project,
        "include_resources": include_resources,
        "include_assessors": include_assessors,
        "pattern": pattern,
        "resume": resume,
        "verify": verify,
        "workers": workers_per_session,
    }
    progress = ProgressReporter(
        artifact_key("xnat-download", project or "sessions"),
        total=len(targets),
        description=f"Downloading {len(targets)} session(s) to {root}",
    )
    result = DownloadSessionsResult(output_dir=str(root))
    errors: list[BaseException] = []
    runner = fanout_runner(
        min(max_workers, len(targets)), executor=executor, dask_address=dask_address
    )
    with runner:
        futures = runner.map(
            download_one_session,
            {
                "credentials": unmapped(creds),
                "session": targets,
                "output_dir": unmapped(str(root)),
                "options": unmapped(options),
                "progress": unmapped(progress),
            },
        )
        for session, future in zip(targets, futures, strict=True):
            try:
                result.sessions.append(SessionDownload.model_validate(future.result()))
            except Exception as exc:
                result.failed[session] = str(exc)
                errors.append(exc)
    progress.finish()
    result.files = sum(s.downloaded for s in result.sessions)
    result.bytes_received = sum(s.bytes_received for s in result.sessions)
    result.verified = verify and not result.failed and all(s.verified for s in result.sessions)
    result.duration_seconds = round(time.monotonic() - started, 3)
    create_table_artifact(
        [
            {
                "session": s.session,
                "files": s.total_files,
                "downloaded": s.downloaded,
                "already_present": s.skipped,
                "bytes": s.bytes_received,
                "verified": s.verified,
            }
            for s in result.sessions
        ]
        + [{"session": k, "error": v} for k, v in result.failed.items()],
        key=artifact_key("xnat-download-report", project or "sessions"),
        description=(
            f"**Download** to `{root}`: {len(result.sessions)} session(s) done, "
            f"{len(result.failed)} failed, {result.files} file(s), {result.bytes_received} bytes"
        ),
    )
    logger.info("%d session(s) downloaded, %d failed", len(result.sessions), len(result.failed))
    if errors and raise_on_failure:
        raise errors[0]
    return result
