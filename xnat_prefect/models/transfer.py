"""Transfer progress and summaries: uploads, downloads and DICOM C-STORE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from xnat_prefect.models.summaries import SummaryModel

__all__ = [
    "DICOMStoreSummary",
    "DownloadProgress",
    "DownloadSummary",
    "UploadProgress",
    "UploadSummary",
]


def _default_success(data: Any, failed_key: str) -> Any:
    if isinstance(data, dict) and data.get("success") is None:
        data = {**data, "success": not data.get(failed_key) and not data.get("errors")}
    return data


class UploadProgress(SummaryModel):
    """One progress report of an upload (passed to ``progress_callback``).

    Attributes:
        phase: ``collecting``, ``archiving``, ``uploading``, ``retrying`` or ``done``.
        current: Files (or batches) done so far.
        total: Files (or batches) in all.
        bytes_sent: Bytes sent so far.
        current_file: What is being sent now.
        succeeded: Items that succeeded so far.
        failed: Items that failed so far.
        message: Free text.
    """

    phase: str = "uploading"
    current: int = 0
    total: int = 0
    bytes_sent: int = 0
    current_file: str | None = None
    succeeded: int = 0
    failed: int = 0
    message: str | None = None

    @property
    def fraction(self) -> float:
        """Completed share, 0..1 (1 when there is nothing to do)."""
        return 1.0 if self.total <= 0 else min(1.0, self.current / self.total)


class UploadSummary(SummaryModel):
    """Outcome of an upload.

    Attributes:
        total_files: Files considered.
        uploaded: Files sent successfully.
        failed: Files that failed.
        skipped: Files skipped (not DICOM, duplicates...).
        bytes_sent: Bytes sent.
        duration_s: Wall time in seconds.
        errors: ``(path, reason)`` per failure.
        success: Nothing failed (computed when not given).
        session_uris: URIs XNAT returned (prearchive or archive sessions).
    """

    total_files: int = 0
    uploaded: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_sent: int = 0
    duration_s: float = 0.0
    errors: list[tuple[str, str]] = Field(default_factory=list)
    success: bool = True
    session_uris: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _success(cls, data: Any) -> Any:
        return _default_success(data, "failed")


class DownloadProgress(SummaryModel):
    """One progress report of a download.

    Attributes:
        phase: ``listing``, ``downloading``, ``extracting``, ``verifying`` or ``done``.
        current: Files done so far.
        total: Files in all (0 when unknown, e.g. a zip stream).
        bytes_received: Bytes received so far.
        total_bytes: Expected bytes, when known.
        current_file: What is being fetched now.
        message: Free text.
    """

    phase: str = "downloading"
    current: int = 0
    total: int = 0
    bytes_received: int = 0
    total_bytes: int | None = None
    current_file: str | None = None
    message: str | None = None


class DownloadSummary(SummaryModel):
    """Outcome of a download.

    Attributes:
        total_files: Files considered.
        downloaded: Files written.
        skipped: Files already present (resume) or filtered out.
        failed: Files that failed.
        bytes_received: Bytes received.
        output_dir: Where files went.
        paths: Files written.
        verified: Checksums were checked and all matched.
        errors: ``(path, reason)`` per failure.
        success: Nothing failed (computed when not given).
        duration_s: Wall time in seconds.
    """

    total_files: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_received: int = 0
    output_dir: Path | None = None
    paths: list[Path] = Field(default_factory=list)
    verified: bool = False
    errors: list[tuple[str, str]] = Field(default_factory=list)
    success: bool = True
    duration_s: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _success(cls, data: Any) -> Any:
        return _default_success(data, "failed")


class DICOMStoreSummary(SummaryModel):
    """Outcome of a DICOM C-STORE send.

    Attributes:
        total_files: Files considered.
        sent: Files the SCP accepted.
        failed: Files refused or not sent.
        log_dir: Where per-association logs went.
        workspace: Temporary workspace used.
        success: Nothing failed (computed when not given).
        failures: ``(path, reason)`` per failure.
    """

    total_files: int = 0
    sent: int = 0
    failed: int = 0
    log_dir: Path
    workspace: Path
    success: bool = True
    failures: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _success(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("success") is None:
            data = {**data, "success": not data.get("failed") and not data.get("failures")}
        return data
