"""Archiving a built prearchive session: subject, experiment, scans, DICOM resources, files.

What XNAT's ``PrearcSessionArchiver`` does, restated for the emulator's tables:

* target project/subject/label come from the request (``dest``, ``subject``, ``session``) or
  the session itself; Unassigned sessions need a destination project;
* an existing experiment with the label is a conflict unless ``overwrite`` is ``append``
  (new scans and files are added; existing files are kept unless ``overwrite_files``) or
  ``delete`` (scans present in the upload replace the archived scans with the same ID);
* merging into another subject, another session type, or a scan with the same ID but a
  different Series UID (append) is refused with 409;
* the files are moved into ``archive/resources/{resource_id}/`` and the prearchive session
  disappears.

Conflicts leave the session in CONFLICT, other failures in ERROR, with a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xnat_prefect.testing.routes._cascade import delete_scan, resource_dir
from xnat_prefect.testing.routes._prearc import (
    LOCKED_STATUSES,
    UNASSIGNED,
    PrearcLockedError,
    delete_session,
    load,
    move_file,
    session_dir,
    set_status,
)
from xnat_prefect.testing.routes._prearc_build import ScanSummary, build_session, scan_summaries
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

OVERWRITE_MODES = ("none", "append", "delete")


class ArchiveError(Exception):
    """Archiving failed.

    Args:
        status_code: HTTP status for the archive service.
        message: XNAT's reason text.
        prearc_status: Status the prearchive session takes (None: unchanged).
    """

    def __init__(self, status_code: int, message: str, prearc_status: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.prearc_status = prearc_status


@dataclass(frozen=True)
class ArchiveRequest:
    """Parameters of one archive operation.

    Attributes:
        project: Destination project (None: the session's).
        subject: Subject label override.
        label: Session label override.
        overwrite: ``none``, ``append`` or ``delete``.
        overwrite_files: Replace files that already exist (append).
        login: Acting user (history rows).
        require_status: Only archive when the session is in one of these statuses.
    """

    project: str | None = None
    subject: str | None = None
    label: str | None = None
    overwrite: str = "none"
    overwrite_files: bool = False
    login: str = "admin"
    require_status: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ArchiveResult:
    """Where a session was archived.

    Attributes:
        project: Project ID.
        subject: Subject label.
        label: Experiment label.
        experiment_id: Accession ID.
        created: Whether the experiment is new (False: merged).
    """

    project: str
    subject: str
    label: str
    experiment_id: str
    created: bool

    @property
    def uri(self) -> str:
        """``/data/archive/projects/P/subjects/S/experiments/E`` (labels)."""
        return (
            f"/data/archive/projects/{self.project}/subjects/{self.subject}"
            f"/experiments/{self.label}"
        )


@dataclass
class _Plan:
    project: str
    subject: str
    label: str
    subject_row: Row | None
    experiment: Row | None
    scans: list[ScanSummary]
    moved: list[tuple[Path, Path]] = field(default_factory=list)


def archive_session(
    state: EmulatorState, session_id: int, request: ArchiveRequest
) -> ArchiveResult:
    """Archive one prearchive session synchronously (building it first when needed).

    Args:
        state: Emulator state.
        session_id: Session key.
        request: Destination and merge options.

    Returns:
        Where it went.

    Raises:
        ArchiveError: With the HTTP status and message XNAT answers; the session status is
            updated as ``prearc_status`` says.
        SessionGoneError: The session no longer exists.
    """
    store = state.store
    try:
        row = _check(state, session_id, request)
        if not row["built"] or row["status"] == "RECEIVING":
            try:
                build_session(state, session_id)
            except PrearcLockedError as exc:
                raise ArchiveError(
                    403, "Operation already in progress on this prearchive entry."
                ) from exc
            if load(state, session_id)["status"] == "ERROR":
                raise ArchiveError(500, "The session could not be built.", "ERROR")
        with store.tx():
            row = _check(state, session_id, request)
            plan = _plan(state, row, request)
            try:
                result = _apply(state, row, plan, request)
            except BaseException:
                for source, target in reversed(plan.moved):
                    if target.exists():
                        move_file(target, source)
                raise
            delete_session(state, session_id)
            return result
    except ArchiveError as exc:
        if exc.prearc_status is not None:
            set_status(state, session_id, exc.prearc_status, f"Archive failed: {exc.message}")
        raise
    except Exception as exc:
        if store.one("SELECT 1 FROM prearc_sessions WHERE id=?", (session_id,)) is None:
            raise
        set_status(state, session_id, "ERROR", f"Archive failed: {exc!r}")
        raise ArchiveError(500, f"Archiving failed: {exc}", "ERROR") from exc


def _check(state: EmulatorState, session_id: int, request: ArchiveRequest) -> Row:
    row = load(state, session_id)
    if request.require_status is not None and row["status"] not in request.require_status:
        raise ArchiveError(409, f"The session is {row['status']}, not ready to archive.")
    if row["status"] in LOCKED_STATUSES:
        raise ArchiveError(403, "Operation already in progress on this prearchive entry.")
    return row


def _plan(state: EmulatorState, row: Row, request: ArchiveRequest) -> _Plan:
    store = state.store
    project = request.project or row["project"]
    if project == UNASSIGNED:
        raise ArchiveError(
            400,
            "Sessions in the Unassigned prearchive need a destination project "
            "(dest=/archive/projects/P or project=P).",
        )
    if store.one("SELECT 1 FROM projects WHERE id=?", (project,)) is None:
        raise ArchiveError(404, f"Unable to identify project {project}")
    subject = request.subject or row["subject"]
    if not subject:
        raise ArchiveError(
            400, "The session has no subject label; archive with subject=LABEL.", None
        )
    label = request.label or row["name"]
    subject_row = store.one(
        "SELECT * FROM subjects WHERE project=? AND label=?", (project, subject)
    )
    experiment = store.one(
        "SELECT * FROM experiments WHERE project=? AND label=?", (project, label)
    )
    scans = scan_summaries(state, int(row["id"]))
    if experiment is not None:
        if request.overwrite == "none":
            raise ArchiveError(
                409, "Session already exists, retry with overwrite enabled", "CONFLICT"
            )
        owner = store.one("SELECT label FROM subjects WHERE id=?", (experiment["subject_id"],))
        if owner is None or owner["label"] != subject:
            raise ArchiveError(
                409, "Invalid modification of session subject via archive process.", "CONFLICT"
            )
        if experiment["xsi_type"] != row["xsi_type"] and state.site_config(
            "preventCrossModalityMerge"
        ):
            raise ArchiveError(
                409,
                f"Unable to merge a {row['xsi_type']} session into {label}, which is a "
                f"{experiment['xsi_type']}.",
                "CONFLICT",
            )
        if request.overwrite == "append":
            for scan in scans:
                old = store.one(
                    "SELECT uid FROM scans WHERE experiment_id=? AND id=?",
                    (experiment["id"], scan.scan_id),
                )
                if old is not None and old["uid"] and scan.series_uid != old["uid"]:
                    raise ArchiveError(
                        409,
                        f"Session already contains a scan ({scan.scan_id}) with the same ID "
                        "and a different UID.",
                        "CONFLICT",
                    )
    return _Plan(project, subject, label, subject_row, experiment, scans)


def _apply(state: EmulatorState, row: Row, plan: _Plan, request: ArchiveRequest) -> ArchiveResult:
    store = state.store
    now = now_text()
    login = request.login
    if plan.subject_row is None:
        subject_id = state.accession_id("S")
        store.execute(
            "INSERT INTO subjects(id, project, label, insert_date, insert_user, last_modified) "
            "VALUES(?,?,?,?,?,?)",
            (subject_id, plan.project, plan.subject, now, login, now),
        )
        store.record_history(login, "created", "xnat:subjectData", subject_id, plan.project)
    else:
        subject_id = plan.subject_row["id"]
    created = plan.experiment is None
    if plan.experiment is None:
        experiment_id = state.accession_id("E")
        store.execute(
            "INSERT INTO experiments(id, project, subject_id, label, xsi_type, date, time, "
            "modality, uid, insert_date, insert_user, last_modified) "
            "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                experiment_id,
                plan.project,
                subject_id,
                plan.label,
                row["xsi_type"],
                row["scan_date"],
                row["scan_time"],
                row["modality"],
                row["tag"],
                now,
                login,
                now,
            ),
        )
    else:
        experiment_id = plan.experiment["id"]
        store.execute("UPDATE experiments SET last_modified=? WHERE id=?", (now, experiment_id))
    source = session_dir(state, row)
    for scan in plan.scans:
        _archive_scan(state, row, plan, request, experiment_id, scan, source)
    store.record_history(
        login,
        "archived",
        row["xsi_type"],
        experiment_id,
        plan.project,
        f"from /prearchive/projects/{row['project']}/{row['timestamp']}/{row['folder']} "
        f"(overwrite={request.overwrite})",
    )
    return ArchiveResult(plan.project, plan.subject, plan.label, experiment_id, created)


def _archive_scan(
    state: EmulatorState,
    row: Row,
    plan: _Plan,
    request: ArchiveRequest,
    experiment_id: str,
    scan: ScanSummary,
    source: Path,
) -> None:
    store = state.store
    now = now_text()
    old = store.one(
        "SELECT * FROM scans WHERE experiment_id=? AND id=?", (experiment_id, scan.scan_id)
    )
    if old is not None and request.overwrite == "delete":
        delete_scan(state, int(old["xnat_imagescandata_id"]), remove_files=True)
        old = None
    if old is None:
        scan_pk = store.execute(
            "INSERT INTO scans(experiment_id, id, xsi_type, type, quality, series_description, "
            "uid, frames, modality, insert_date, last_modified) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (
                experiment_id,
                scan.scan_id,
                scan.xsi_type,
                scan.series_description,
                "usable",
                scan.series_description,
                scan.series_uid,
                str(scan.file_count),
                scan.modality,
                now,
                now,
            ),
        )
    else:
        scan_pk = int(old["xnat_imagescandata_id"])
    resource = store.one(
        "SELECT xnat_abstractresource_id AS rid FROM resources "
        "WHERE parent_type='scan' AND parent_id=? AND label='DICOM'",
        (str(scan_pk),),
    )
    if resource is None:
        resource_id = store.execute(
            "INSERT INTO resources(parent_type, parent_id, label, format, content, insert_date) "
            "VALUES('scan', ?, 'DICOM', 'DICOM', 'RAW', ?)",
            (str(scan_pk), now),
        )
    else:
        resource_id = int(resource["rid"])
    target_dir = resource_dir(state, resource_id)
    replace = request.overwrite_files or request.overwrite == "delete"
    files = store.query(
        "SELECT * FROM prearc_files WHERE session_id=? AND scan_id=? ORDER BY name",
        (row["id"], scan.scan_id),
    )
    for item in files:
        name = Path(item["name"]).name
        exists = store.one(
            "SELECT 1 FROM files WHERE resource_id=? AND path=?", (resource_id, name)
        )
        if exists is not None and not replace:
            continue
        move_file(source / item["name"], target_dir / name)
        plan.moved.append((source / item["name"], target_dir / name))
        store.execute(
            "INSERT OR REPLACE INTO files(resource_id, path, size, digest, format, content, uid, "
            "modified) VALUES(?,?,?,?,'DICOM','RAW',?,?)",
            (resource_id, name, item["size"], item["digest"], item["sop_uid"], now),
        )
    totals = store.one(
        "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM files WHERE resource_id=?",
        (resource_id,),
    )
    assert totals is not None
    store.execute(
        "UPDATE resources SET file_count=?, file_size=? WHERE xnat_abstractresource_id=?",
        (totals["n"], totals["bytes"], resource_id),
    )
    store.execute(
        "UPDATE scans SET frames=?, last_modified=? WHERE xnat_imagescandata_id=?",
        (str(totals["n"]), now, scan_pk),
    )
