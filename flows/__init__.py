"""Composite XNAT flows (installed as ``xnat_prefect.flows``), each returning a typed result.

* :func:`ingest_dicom` — send a DICOM study (C-STORE, gradual-DICOM or zip batches), wait until
  XNAT has archived it, verify it, emit ``xnat.session.archived``.
* :func:`archive_prearchive_sessions` — archive a project's READY prearchive sessions.
* :func:`run_pipeline_and_wait` — run a legacy pipeline or a Container Service wrapper on
  sessions and wait; cancelling the run kills the remote jobs.
* :func:`refresh_catalogs_flow` — refresh resource catalogs in bounded batches.
* :func:`download_sessions` — resumable, verified bulk download.
* :func:`watch_archive` — emit one event per newly archived session (for schedules).

Every flow takes an ``XNATCredentials`` block or the name of a saved one, gates its parallel
work with the server's global concurrency limits, redacts secrets from its logs, and writes a
progress and a table artifact (ids, counts, checksums; never patient names or IDs).

Example:
    ```python
    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.flows import ingest_dicom

    result = ingest_dicom(XNATCredentials.load("BLOCK_NAME"), "/data/study1",
                          transport="gradual", project="P1", subject="S01", session="S01_MR1")
    ```
"""

from __future__ import annotations

from xnat_prefect.flows._common import EVENT_SESSION_ARCHIVED
from xnat_prefect.flows.catalog import refresh_catalogs_flow
from xnat_prefect.flows.download import download_sessions
from xnat_prefect.flows.ingest import ingest_dicom
from xnat_prefect.flows.pipelines import RunCancelled, run_pipeline_and_wait
from xnat_prefect.flows.prearchive import LabelRule, archive_prearchive_sessions
from xnat_prefect.flows.results import (
    ArchivedSession,
    BatchReport,
    CatalogRefreshResult,
    DownloadSessionsResult,
    IngestResult,
    PipelineRunResult,
    PipelineSessionResult,
    PrearchiveArchiveReport,
    PrearchiveItem,
    ScanCheck,
    SessionDownload,
    Transport,
    WatchResult,
)
from xnat_prefect.flows.watcher import watch_archive

__all__ = [
    "EVENT_SESSION_ARCHIVED",
    "ArchivedSession",
    "BatchReport",
    "CatalogRefreshResult",
    "DownloadSessionsResult",
    "IngestResult",
    "LabelRule",
    "PipelineRunResult",
    "PipelineSessionResult",
    "PrearchiveArchiveReport",
    "PrearchiveItem",
    "RunCancelled",
    "ScanCheck",
    "SessionDownload",
    "Transport",
    "WatchResult",
    "archive_prearchive_sessions",
    "download_sessions",
    "ingest_dicom",
    "refresh_catalogs_flow",
    "run_pipeline_and_wait",
    "watch_archive",
]
