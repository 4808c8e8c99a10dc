"""The emulator's prearchive store: sessions, their DICOM files, logs, folders and statuses.

A prearchive session is one study (``tag`` = StudyInstanceUID) in one project (``Unassigned``
when no project could be determined), held in ``prearchive/{project}/{timestamp}/{folder}``
with its files under ``SCANS/{scan}/DICOM/``. Direct-Archive sessions use the same tables with
``root = 'direct'`` and live in a holding area under ``archive/direct-archive`` until archived.

Every change runs inside ``store.tx()`` (one re-entrant lock), so the C-STORE threads, the HTTP
worker threads and the background sweeper see whole sessions only. File bytes are moved into
place (``os.replace``) while the lock is held, which keeps disk and database consistent.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

UNASSIGNED = "Unassigned"
PREARCHIVE = "prearchive"
DIRECT = "direct"
#: Statuses in which a session may take more files or be built/archived.
OPEN_STATUSES = ("RECEIVING", "READY", "CONFLICT", "ERROR")
#: Statuses in which another operation owns the session.
LOCKED_STATUSES = (
    "BUILDING",
    "ARCHIVING",
    "MOVING",
    "DELETING",
    "QUEUED_BUILDING",
    "QUEUED_ARCHIVING",
    "QUEUED_MOVING",
    "QUEUED_DELETING",
)
AUTOARCHIVE_BY_CODE = {0: "Manual", 4: "AutoArchive", 5: "AutoArchiveOverwrite"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS prearc_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    folder TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    tag TEXT NOT NULL,
    status TEXT NOT NULL,
    root TEXT NOT NULL DEFAULT 'prearchive',
    uploaded TEXT NOT NULL DEFAULT '',
    lastmod TEXT NOT NULL DEFAULT '',
    last_received REAL NOT NULL DEFAULT 0,
    scan_date TEXT NOT NULL DEFAULT '',
    scan_time TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    xsi_type TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    accession TEXT NOT NULL DEFAULT '',
    autoarchive TEXT NOT NULL DEFAULT '',
    aa INTEGER,
    overwrite TEXT NOT NULL DEFAULT 'none',
    prevent_anon TEXT NOT NULL DEFAULT '',
    prevent_auto_commit TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    visit TEXT NOT NULL DEFAULT '',
    protocol TEXT NOT NULL DEFAULT '',
    timezone TEXT NOT NULL DEFAULT '',
    built INTEGER NOT NULL DEFAULT 0,
    archive_after REAL,
    queued TEXT NOT NULL DEFAULT '',
    login TEXT NOT NULL DEFAULT '',
    UNIQUE (project, timestamp, folder)
);
CREATE INDEX IF NOT EXISTS prearc_sessions_tag ON prearc_sessions(project, tag);
CREATE TABLE IF NOT EXISTS prearc_files (
    session_id INTEGER NOT NULL,
    sop_uid TEXT NOT NULL,
    scan_id TEXT NOT NULL,
    series_uid TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    sop_class_uid TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (session_id, sop_uid)
);
CREATE TABLE IF NOT EXISTS prearc_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    date TEXT NOT NULL,
    entry TEXT NOT NULL
);
"""


class NotDicomError(ValueError):
    """A received file is not readable DICOM (or lacks its Study/SOP Instance UIDs)."""


class PrearcLockedError(RuntimeError):
    """Another operation holds the prearchive session (its status is a locked one)."""


#: Longest subject/session label (in UTF-8 bytes) a new prearchive session can take: the label
#: names a folder, and file systems refuse names over 255 bytes.
MAX_LABEL_BYTES = 255


class LabelTooLongError(ValueError):
    """A subject or session label is too long to name the session's folder."""


class SessionGoneError(LookupError):
    """The prearchive session no longer exists (archived, deleted or moved)."""


@dataclass(frozen=True)
class PrearcKey:
    """Where a prearchive session lives.

    Attributes:
        project: Project ID or ``Unassigned``.
        timestamp: Upload timestamp folder, e.g. ``20240131_140509123``.
        folder: Session folder (the session label).
        session_id: Database key of the session row.
        tag: StudyInstanceUID.
        name: Session label.
        direct: Whether the session is a Direct-Archive holding session.
    """

    project: str
    timestamp: str
    folder: str
    session_id: int = 0
    tag: str = ""
    name: str = ""
    direct: bool = False

    @property
    def url(self) -> str:
        """The ``url`` column value (no ``/data`` prefix)."""
        return f"/prearchive/projects/{self.project}/{self.timestamp}/{self.folder}"

    @property
    def uri(self) -> str:
        """The URI the import service answers (``/data/prearchive/...``)."""
        return "/data" + self.url

    @property
    def direct_uri(self) -> str:
        """The Direct-Archive URI (``/xapi/direct-archive/{P}/{studyUID}/{label}``)."""
        return f"/xapi/direct-archive/{self.project}/{self.tag}/{self.name}"


@dataclass(frozen=True)
class ReceiveOptions:
    """How received files are routed and flagged (upload parameters; all optional).

    Attributes:
        project: Project ID that overrides the header routing.
        subject: Subject label override.
        session: Session label override.
        slot: Fixed ``(timestamp, folder)`` (``dest=/prearchive/projects/P/TS/F``).
        auto_archive: ``AA``/``auto-archive`` value (None: the project's setting).
        direct_archive: Send the files to the Direct-Archive holding area.
        overwrite: Archive overwrite mode remembered for auto-archive (None: keep).
        login: The uploading user.
        calling_ae: The sender's AE title (C-STORE), for the session log.
        source: ``SOURCE`` column value.
        visit: ``VISIT`` column value.
        protocol: ``PROTOCOL`` column value.
        timezone: ``TIMEZONE`` column value.
        prevent_anon: ``prevent_anon`` column value.
        prevent_auto_commit: ``prevent_auto_commit`` column value.
    """

    project: str | None = None
    subject: str | None = None
    session: str | None = None
    slot: tuple[str, str] | None = None
    auto_archive: bool | None = None
    direct_archive: bool = False
    overwrite: str | None = None
    login: str = ""
    calling_ae: str = ""
    source: str = ""
    visit: str = ""
    protocol: str = ""
    timezone: str = ""
    prevent_anon: str = ""
    prevent_auto_commit: str = ""


# ----------------------------------------------------------------------------- paths and rows


def session_dir(state: EmulatorState, row: Row) -> Path:
    """The folder of a session's files.

    Args:
        state: Emulator state.
        row: ``prearc_sessions`` row.

    Returns:
        ``prearchive/P/TS/F`` or, for Direct-Archive, ``archive/direct-archive/P/TS/F``.
    """
    base = state.store.prearchive_dir
    if row["root"] == DIRECT:
        base = state.store.archive_dir / "direct-archive"
    return Path(base, str(row["project"]), str(row["timestamp"]), str(row["folder"]))


def xml_path(state: EmulatorState, row: Row) -> Path:
    """Where the built session XML is written (``prearchive/P/TS/F.xml``).

    Args:
        state: Emulator state.
        row: Session row.

    Returns:
        The path.
    """
    folder = session_dir(state, row)
    return folder.parent / f"{row['folder']}.xml"


def key_of(row: Row) -> PrearcKey:
    """The key of a session row.

    Args:
        row: Session row.

    Returns:
        Its :class:`PrearcKey`.
    """
    return PrearcKey(
        project=row["project"],
        timestamp=row["timestamp"],
        folder=row["folder"],
        session_id=int(row["id"]),
        tag=row["tag"],
        name=row["name"],
        direct=row["root"] == DIRECT,
    )


def load(state: EmulatorState, session_id: int) -> Row:
    """Read one session row.

    Args:
        state: Emulator state.
        session_id: Its key.

    Returns:
        The row.

    Raises:
        SessionGoneError: When it no longer exists.
    """
    row = state.store.one("SELECT * FROM prearc_sessions WHERE id=?", (session_id,))
    if row is None:
        raise SessionGoneError(f"prearchive session {session_id} no longer exists")
    return row


def find(state: EmulatorState, project: str, timestamp: str, folder: str) -> Row | None:
    """Find a prearchive (not Direct-Archive) session by its URL parts.

    Args:
        state: Emulator state.
        project: Project ID or ``Unassigned``.
        timestamp: Timestamp folder.
        folder: Session folder.

    Returns:
        The row or None.
    """
    return state.store.one(
        "SELECT * FROM prearc_sessions WHERE project=? AND timestamp=? AND folder=? AND root=?",
        (project, timestamp, folder, PREARCHIVE),
    )


def add_log(state: EmulatorState, session_id: int, entry: str) -> None:
    """Append one line to a session's log (``/logs``).

    Args:
        state: Emulator state.
        session_id: Session key.
        entry: The text.
    """
    state.store.execute(
        "INSERT INTO prearc_logs(session_id, date, entry) VALUES(?,?,?)",
        (session_id, now_text(), entry),
    )


def set_status(state: EmulatorState, session_id: int, status: str, log: str = "") -> None:
    """Change a session's status (and log why).

    Args:
        state: Emulator state.
        session_id: Session key.
        status: New status.
        log: Log line (none when empty).
    """
    with state.store.tx():
        state.store.execute(
            "UPDATE prearc_sessions SET status=?, lastmod=?, archive_after=NULL WHERE id=?",
            (status, now_text(), session_id),
        )
        if log:
            add_log(state, session_id, log)


def project_code(state: EmulatorState, project: str) -> int | None:
    """A project's prearchive code (None for Unassigned or unknown projects).

    Args:
        state: Emulator state.
        project: Project ID.

    Returns:
        0, 4, 5… or None.
    """
    if project == UNASSIGNED:
        return None
    row = state.store.one("SELECT prearchive_code FROM projects WHERE id=?", (project,))
    return None if row is None else int(row["prearchive_code"])


def autoarchive_text(state: EmulatorState, project: str, aa: bool | None) -> str:
    """The ``autoarchive`` column value for a new session.

    Args:
        state: Emulator state.
        project: Project ID or Unassigned.
        aa: The ``AA`` flag from the upload or headers.

    Returns:
        ``Manual``, ``AutoArchive``, ``AutoArchiveOverwrite`` or ``""``.
    """
    code = project_code(state, project)
    if code is None:
        return ""
    if aa is not None:
        return "AutoArchive" if aa else "Manual"
    return AUTOARCHIVE_BY_CODE.get(code, "AutoArchive" if code >= 4 else "Manual")


def move_file(source: Path, target: Path) -> None:
    """Move a file into place (rename; copy when crossing file systems).

    Args:
        source: Existing file.
        target: Destination (parent created).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        shutil.move(str(source), str(target))


# ----------------------------------------------------------------------------- removal


def delete_session(state: EmulatorState, session_id: int) -> None:
    """Delete a session: its rows, logs, folder and XML.

    Args:
        state: Emulator state.
        session_id: Session key.
    """
    store = state.store
    with store.tx():
        row = load(state, session_id)
        folder = session_dir(state, row)
        shutil.rmtree(folder, ignore_errors=True)
        xml_path(state, row).unlink(missing_ok=True)
        _prune(folder.parent)
        store.execute("DELETE FROM prearc_files WHERE session_id=?", (session_id,))
        store.execute("DELETE FROM prearc_logs WHERE session_id=?", (session_id,))
        store.execute("DELETE FROM prearc_sessions WHERE id=?", (session_id,))


def _prune(folder: Path) -> None:
    """Remove a timestamp folder (and its project folder) once empty."""
    for candidate in (folder, folder.parent):
        try:
            candidate.rmdir()
        except OSError:
            return


def relocate(state: EmulatorState, session_id: int, *, project: str, root: str) -> Row:
    """Move a session's folder to another project and/or area (prearchive or holding).

    Args:
        state: Emulator state.
        session_id: Session key.
        project: New project (or Unassigned).
        root: ``prearchive`` or ``direct``.

    Returns:
        The updated row.

    Raises:
        FileExistsError: The target project already has this timestamp/folder.
    """
    store = state.store
    with store.tx():
        row = load(state, session_id)
        clash = store.one(
            "SELECT id FROM prearc_sessions WHERE project=? AND timestamp=? AND folder=? AND id<>?",
            (project, row["timestamp"], row["folder"], session_id),
        )
        if clash is not None:
            raise FileExistsError(
                f"{row['timestamp']}/{row['folder']} already exists in the prearchive of {project}"
            )
        old_dir, old_xml = session_dir(state, row), xml_path(state, row)
        store.execute(
            "UPDATE prearc_sessions SET project=?, root=?, lastmod=?, autoarchive=? WHERE id=?",
            (
                project,
                root,
                now_text(),
                autoarchive_text(state, project, None if row["aa"] is None else bool(row["aa"])),
                session_id,
            ),
        )
        new = load(state, session_id)
        new_dir = session_dir(state, new)
        if old_dir.exists():
            new_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(old_dir), str(new_dir))
        old_xml.unlink(missing_ok=True)
        _prune(old_dir.parent)
        return new
