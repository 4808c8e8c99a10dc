"""Archive helpers of :class:`PrearchiveService`: the result model and reply parsing."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import unquote

from xnat_prefect.errors import ArchiveFailed, InvalidInputError
from xnat_prefect.models._base import OptStr, XNATModel
from xnat_prefect.services._validation import check_choice

__all__ = [
    "OVERWRITE_MODES",
    "ArchiveJob",
    "ArchiveResult",
    "OverwriteMode",
    "archive_uri",
    "overwrite_mode",
    "prearchive_src",
]

OVERWRITE_MODES = ("none", "append", "delete")
OverwriteMode = Literal["none", "append", "delete"]


class ArchiveResult(XNATModel):
    """Where a prearchive session went (``archive()`` result; reads like the seed's dict).

    Attributes:
        uri: ``/data/archive/projects/P/subjects/S/experiments/E`` (labels).
        project: Project ID.
        subject: Subject label.
        experiment_label: Experiment (session) label.
        experiment_id: Accession ID (``XNAT_E00001``), looked up after archiving.
        subject_id: Subject accession ID.
        src: The prearchive ``src`` that was archived.
        overwrite: ``none``, ``append`` or ``delete``.
        reconciled: The reply was lost and the outcome was read from the server state.
    """

    uri: str
    project: str
    subject: OptStr = None
    experiment_label: str
    experiment_id: OptStr = None
    subject_id: OptStr = None
    src: str
    overwrite: str = "none"
    reconciled: bool = False
    success: bool = True

    _mapping_aliases: ClassVar[dict[str, str]] = {
        "session": "experiment_label",
        "label": "experiment_label",
        "ID": "experiment_id",
        "archive_uri": "uri",
    }


class ArchiveJob:
    """What one archive call is about (for requests, reconciliation and error messages)."""

    def __init__(
        self,
        project: str,
        timestamp: str,
        session_name: str,
        src: str,
        mode: str,
        subject: str | None,
        experiment_label: str | None,
    ) -> None:
        self.project = project
        self.timestamp = timestamp
        self.session_name = session_name
        self.src = src
        self.mode = mode
        self.subject = subject
        self.experiment_label = experiment_label
        self.label = experiment_label or session_name

    def failed(self, reason: str, status: Any = None) -> ArchiveFailed:
        """An :class:`ArchiveFailed` naming everything about this archive.

        Args:
            reason: Why.
            status: Prearchive status (``CONFLICT``, ``ERROR``...), if known.

        Returns:
            The error (``target`` = the ``src``).
        """
        target = f"subject {self.subject!r}, " if self.subject else ""
        return ArchiveFailed(
            f"archiving prearchive session {self.session_name!r} (project {self.project}, "
            f"timestamp {self.timestamp}) as {target}experiment {self.label!r} with "
            f"overwrite={self.mode} failed: {reason}",
            target=self.src,
            status=None if status is None else str(status),
        )


def overwrite_mode(value: Any) -> str:
    if value is True:
        return "append"
    if value is False or value is None:
        return "none"
    if isinstance(value, str):
        return check_choice(value, "overwrite", OVERWRITE_MODES)
    raise InvalidInputError(
        f"overwrite={value!r} is not valid; pass False, True (append) or one of "
        f"{', '.join(OVERWRITE_MODES)}"
    )


def archive_uri(text: str) -> str | None:
    """``/data/archive/projects/P/subjects/S/experiments/E`` found in a reply or Location."""
    for line in text.replace(" ", "\n").splitlines():
        start = line.find("/archive/projects/")
        if start < 0:
            continue
        path = line[start:].split("?", 1)[0].split("#", 1)[0].rstrip("/")
        parts = path.split("/")
        if len(parts) == 8 and parts[4] == "subjects" and parts[6] == "experiments":
            return "/data" + path
    return None


def prearchive_src(text: str) -> tuple[str, str, str] | None:
    """``(project, timestamp, folder)`` of a ``/prearchive/projects/P/TS/F`` in a reply."""
    for line in text.replace(" ", "\n").splitlines():
        start = line.find("/prearchive/projects/")
        if start < 0:
            continue
        parts = line[start:].split("?", 1)[0].rstrip("/").split("/")
        if len(parts) == 6:
            return unquote(parts[3]), unquote(parts[4]), unquote(parts[5])
    return None
