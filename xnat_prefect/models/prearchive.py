"""Prearchive models: ``PrearchiveStatus``, ``PrearchiveSession``, ``PrearchiveScan``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from xnat_prefect.models._base import (
    OptBool,
    OptDate,
    OptDateTime,
    OptInt,
    OptStr,
    XNATModel,
    column,
    to_datetime,
)

__all__ = ["PrearchiveScan", "PrearchiveSession", "PrearchiveStatus", "to_prearchive_status"]


class PrearchiveStatus(StrEnum):
    """XNAT's prearchive statuses (``PrearcUtils.PrearcStatus``).

    ``LOCKED_*`` are the ``_``-prefixed lock variants. Unknown values stay plain strings in the
    models.
    """

    RECEIVING = "RECEIVING"
    BUILDING = "BUILDING"
    READY = "READY"
    ARCHIVING = "ARCHIVING"
    CONFLICT = "CONFLICT"
    ERROR = "ERROR"
    DELETING = "DELETING"
    MOVING = "MOVING"
    SEPARATING = "SEPARATING"
    RECEIVING_INTERRUPT = "RECEIVING_INTERRUPT"
    QUEUED_BUILDING = "QUEUED_BUILDING"
    QUEUED_ARCHIVING = "QUEUED_ARCHIVING"
    QUEUED_DELETING = "QUEUED_DELETING"
    QUEUED_MOVING = "QUEUED_MOVING"
    QUEUED_SEPARATING = "QUEUED_SEPARATING"
    LOCKED_RECEIVING = "_RECEIVING"
    LOCKED_BUILDING = "_BUILDING"
    LOCKED_ARCHIVING = "_ARCHIVING"
    LOCKED_DELETING = "_DELETING"
    LOCKED_MOVING = "_MOVING"
    LOCKED_SEPARATING = "_SEPARATING"
    LOCKED_CONFLICT = "_CONFLICT"
    LOCKED_RECEIVING_INTERRUPT = "_RECEIVING_INTERRUPT"


def to_prearchive_status(value: Any) -> PrearchiveStatus | str | None:
    """Map a status cell to :class:`PrearchiveStatus`, keeping unknown values as strings.

    Args:
        value: Raw cell.

    Returns:
        The enum member, the raw (stripped) string, or None when blank.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    try:
        return PrearchiveStatus(text)
    except ValueError:
        try:
            return PrearchiveStatus(text.upper())
        except ValueError:
            return text


StatusValue = Annotated[
    PrearchiveStatus | str | None,
    Field(union_mode="left_to_right"),
    BeforeValidator(to_prearchive_status),
]

_SETTLED = frozenset({PrearchiveStatus.READY, PrearchiveStatus.CONFLICT, PrearchiveStatus.ERROR})


class PrearchiveSession(XNATModel):
    """A session waiting in the prearchive.

    Columns: ``project, timestamp, lastmod, uploaded, scan_date, scan_time, subject,
    folderName, name, tag, status, url, autoarchive, prevent_anon, prevent_auto_commit, SOURCE,
    VISIT, PROTOCOL, TIMEZONE``; ``url`` has no ``/data`` prefix.

    Attributes:
        project: Project (``Unassigned`` when none matched).
        timestamp: Upload slot (``20240131_140509123``).
        lastmod: Last modification.
        uploaded: Upload time.
        scan_date: Acquisition date.
        scan_time: Acquisition time.
        subject: Subject label.
        folder_name: Session folder.
        name: Session label.
        tag: StudyInstanceUID.
        status: :class:`PrearchiveStatus` (or the raw string for unknown values).
        url: ``/prearchive/projects/P/TS/FOLDER``.
        autoarchive: ``Manual``, ``AutoArchive``, ``AutoArchiveOverwrite``.
        prevent_anon: Anonymization disabled for it.
        prevent_auto_commit: Skipped by the auto-archiver.
        source: ``SOURCE``.
        visit: ``VISIT``.
        protocol: ``PROTOCOL``.
        timezone: ``TIMEZONE``.
        scan_count: Number of scans, when a caller counted them (None otherwise).
    """

    project: OptStr = column("project")
    timestamp: OptStr = column("timestamp")
    lastmod: OptDateTime = column("lastmod")
    uploaded: OptDateTime = column("uploaded")
    scan_date: OptDate = column("scan_date")
    scan_time: OptStr = column("scan_time")
    subject: OptStr = column("subject")
    folder_name: OptStr = column("folderName", "folder_name")
    name: OptStr = column("name")
    tag: OptStr = column("tag")
    status: StatusValue = column("status")
    url: OptStr = column("url")
    autoarchive: OptStr = column("autoarchive")
    prevent_anon: OptBool = column("prevent_anon")
    prevent_auto_commit: OptBool = column("prevent_auto_commit")
    source: OptStr = column("SOURCE", "source")
    visit: OptStr = column("VISIT", "visit")
    protocol: OptStr = column("PROTOCOL", "protocol")
    timezone: OptStr = column("TIMEZONE", "timezone")
    scan_count: OptInt = column("scan_count")

    @property
    def upload_date(self) -> datetime | None:
        """When it was uploaded (``uploaded``, else parsed from ``timestamp``)."""
        return self.uploaded or to_datetime(self.timestamp)

    @property
    def src(self) -> str | None:
        """The archive service's ``src`` value (``/prearchive/projects/P/TS/FOLDER``)."""
        if self.url:
            return self.url[len("/data") :] if self.url.startswith("/data/") else self.url
        if self.project and self.timestamp and self.folder_name:
            return f"/prearchive/projects/{self.project}/{self.timestamp}/{self.folder_name}"
        return None

    @property
    def uri(self) -> str | None:
        """The REST path of the session (``/data/prearchive/projects/P/TS/FOLDER``)."""
        return f"/data{self.src}" if self.src else None

    @property
    def is_ready(self) -> bool:
        """READY: can be archived."""
        return self.status == PrearchiveStatus.READY

    @property
    def is_failed(self) -> bool:
        """ERROR: building or archiving failed."""
        return self.status == PrearchiveStatus.ERROR

    @property
    def is_conflict(self) -> bool:
        """CONFLICT: exists in the archive; archive with ``overwrite=append|delete``."""
        return self.status == PrearchiveStatus.CONFLICT

    @property
    def is_settled(self) -> bool:
        """Not changing on its own any more (READY, CONFLICT or ERROR)."""
        return self.status in _SETTLED


class PrearchiveScan(XNATModel):
    """A scan of a prearchive session.

    Columns of ``.../scans``: ``ID, xsiType, series_description``.

    Attributes:
        scan_id: Scan ID.
        xsi_type: Scan type.
        series_description: Series description.
    """

    scan_id: str = column("ID", "scan_id", "id", default=...)
    xsi_type: OptStr = column("xsiType", "xsi_type")
    series_description: OptStr = column("series_description")
