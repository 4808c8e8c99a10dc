"""Follow one study from upload to a settled archive session, failing in typed ways.

XNAT files uploads asynchronously (``xnat-rest.md`` §8.3, §9): files sit in a prearchive (or
Direct-Archive holding) session in RECEIVING until no file arrived for the rebuild interval,
then the session is built (READY) and, on auto-archive projects, archived; on manual projects
(prearchive code 0) it waits READY. The study is followed by its StudyInstanceUID (the
prearchive ``tag``), on every poll:

* a CONFLICT session is archived by the flow with ``overwrite`` when that is ``append`` or
  ``delete`` (and ``archive``), else :class:`~xnat_prefect.errors.ArchiveFailed`;
* an ERROR session is :class:`~xnat_prefect.errors.ArchiveFailed`;
* a READY session on a manual project is archived by the flow when ``archive`` (else the run
  ends, the session left READY); a READY session in ``Unassigned`` is
  :class:`~xnat_prefect.errors.SessionNotSettled` at once (routing found no project);
* once nothing is in flight and the experiment exists, every scan must list files (XNAT can
  show a resource with 0 files while its catalog is written);
* nothing observable changing for ``stall_seconds``, or ``max_wait_seconds`` passing, is
  :class:`~xnat_prefect.errors.SessionNotSettled` naming the last state seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ArchiveFailed,
    ResourceNotFoundError,
    SessionNotSettled,
    XNATError,
    is_transient,
)
from xnat_prefect.flows._common import RunLogger
from xnat_prefect.models.prearchive import PrearchiveSession
from xnat_prefect.services import ProjectService, ResourceService, ScanService, SessionService
from xnat_prefect.services.prearchive import PrearchiveService

__all__ = ["SessionSettler", "SettleOptions", "SettledSession", "list_direct_archive"]

OverwriteMode = Literal["none", "append", "delete"]
ArchivedBy = Literal["auto-archive", "flow", "direct-archive", "none"]
UNASSIGNED = "Unassigned"
_SETTLED = ("READY", "CONFLICT", "ERROR")


@dataclass(frozen=True)
class SettleOptions:
    """How to follow a study.

    Attributes:
        study_uid: StudyInstanceUID of the upload.
        project: Project the upload was sent to (None: routed by DICOM headers).
        label: Session label asked for (None: routed by DICOM headers).
        direct_archive: The upload used Direct-Archive.
        archive: Archive READY sessions of manual projects, and CONFLICT sessions when
            ``overwrite`` allows.
        overwrite: ``none``, ``append`` or ``delete`` for archives done by the flow.
        stall_seconds: Fail when nothing changed for this long.
        max_wait_seconds: Fail when not settled after this long.
        poll_interval_seconds: Pause between polls.
        existing_experiment: Accession ID of the session that existed before the upload.

    Example:
        ```python
        SettleOptions(uid, "P1", "S01_MR1", direct_archive=False, archive=True,
                      overwrite="none", stall_seconds=600, max_wait_seconds=3600,
                      poll_interval_seconds=5)
        ```
    """

    study_uid: str
    project: str | None
    label: str | None
    direct_archive: bool
    archive: bool
    overwrite: OverwriteMode
    stall_seconds: float
    max_wait_seconds: float
    poll_interval_seconds: float
    existing_experiment: str | None = None


@dataclass
class SettledSession:
    """Where the study ended.

    Attributes:
        project: Project ID.
        session_label: Session label.
        subject_label: Subject label.
        subject_id: Subject accession ID (archived sessions).
        experiment_id: Accession ID (None when left READY in the prearchive).
        archived_by: Who archived it (``none``: left in the prearchive).
        prearchive_src: The prearchive session left READY, when ``archived_by`` is ``none``.
        warnings: Notes for the run's result.

    Example:
        ```python
        settled.experiment_id, settled.archived_by
        ```
    """

    project: str
    session_label: str
    subject_label: str | None = None
    subject_id: str | None = None
    experiment_id: str | None = None
    archived_by: ArchivedBy = "auto-archive"
    prearchive_src: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Seen:
    rows: list[PrearchiveSession]
    direct: list[dict[str, Any]]
    experiment: dict[str, Any] | None = None
    empty_scans: list[str] = field(default_factory=list)

    def signature(self) -> tuple[Any, ...]:
        rows = tuple(sorted((r.src or "", str(r.status), str(r.lastmod)) for r in self.rows))
        direct = tuple(
            sorted((str(d.get("status")), str(d.get("lastModified"))) for d in self.direct)
        )
        exp = (self.experiment or {}).get("ID")
        return rows, direct, exp, tuple(self.empty_scans)

    def describe(self) -> str:
        parts = [f"prearchive {r.src} {r.status}" for r in self.rows]
        parts += [f"direct-archive {d.get('name')} {d.get('status')}" for d in self.direct]
        if self.experiment:
            parts.append(f"archived as {self.experiment.get('ID')}")
        if self.empty_scans:
            parts.append(f"scans listing 0 files: {', '.join(self.empty_scans)}")
        return "; ".join(parts) or "nothing visible in the prearchive or the archive"


def list_direct_archive(client: XNATClient) -> list[dict[str, Any]]:
    """Direct-Archive holding sessions (``POST /xapi/direct-archive``); [] when unsupported.

    Args:
        client: The client.

    Returns:
        The sessions (``project, tag, name, status, lastModified``...).

    Example:
        ```python
        waiting = [d for d in list_direct_archive(client) if d.get("tag") == study_uid]
        ```
    """
    try:
        payload = client.post("/xapi/direct-archive", json={}).json()
    except ResourceNotFoundError:
        return []
    if isinstance(payload, dict):
        payload = payload.get("items") or payload.get("results") or []
    return [p for p in payload if isinstance(p, dict)] if isinstance(payload, list) else []


class SessionSettler:
    """Poll the prearchive and the archive until the study is settled (see the module doc).

    Args:
        client: A logged-in client.
        options: What to follow and how.
        logger: Run logger.

    Example:
        ```python
        settled = SessionSettler(client, options, run_logger()).run()
        ```
    """

    def __init__(self, client: XNATClient, options: SettleOptions, logger: RunLogger) -> None:
        self.client = client
        self.options = options
        self.logger = logger
        self.prearchive = PrearchiveService(client)
        self.project = options.project
        self.label = options.label
        self.subject: str | None = None
        self.archived_by: ArchivedBy = (
            "direct-archive" if options.direct_archive else "auto-archive"
        )
        self.experiment_id: str | None = None
        self.subject_id: str | None = None
        self.warnings: list[str] = []
        self._codes: dict[str, int | None] = {}
        self._last_described = ""

    # --- observation ------------------------------------------------------------------------

    def _observe(self) -> _Seen:
        uid = self.options.study_uid
        rows: list[PrearchiveSession] = []
        if self.project is not None:
            rows = [r for r in self.prearchive.list(self.project) if r.tag == uid]
        if not rows and self.experiment_id is None:
            # routed elsewhere (Unassigned, another project) or not known yet: look everywhere
            rows = [r for r in self.prearchive.list() if r.tag == uid]
        direct = []
        if self.options.direct_archive:
            direct = [d for d in list_direct_archive(self.client) if d.get("tag") == uid]
        for row in rows:
            self.project = self.project or (row.project if row.project != UNASSIGNED else None)
            self.label = self.label or row.name
            self.subject = self.subject or row.subject
        seen = _Seen(rows=rows, direct=direct)
        if not any(str(r.status) not in _SETTLED for r in rows) and not direct:
            seen.experiment = self._find_experiment()
            if seen.experiment is not None:
                seen.empty_scans = self._empty_scans(str(seen.experiment["ID"]))
        return seen

    def _find_experiment(self) -> dict[str, Any] | None:
        sessions = SessionService(self.client)
        if self.experiment_id is not None:
            found = sessions.get(self.experiment_id)
            return {"ID": found.id, "label": found.label, "project": found.project}
        columns = ["UID", "label", "project", "subject_ID", "subject_label"]
        rows = sessions.list(project=self.project, columns=columns)
        for row in rows:
            if row.get("UID") == self.options.study_uid:
                return {
                    "ID": row.id,
                    "label": row.label,
                    "project": row.project,
                    "subject_ID": row.subject_id,
                    "subject_label": row.subject_label,
                }
        if self.project and self.label:
            for row in rows:
                if row.label == self.label and not row.get("UID"):
                    return {"ID": row.id, "label": row.label, "project": row.project}
        return None

    def _empty_scans(self, experiment_id: str) -> list[str]:
        resources = ResourceService(self.client)
        empty = []
        for scan in ScanService(self.client).list(experiment_id):
            listed = resources.list(experiment_id, scan_id=scan.scan_id)
            counts = []
            for resource in listed:
                if resource.file_count is None and resource.label:
                    files = resources.list_files(experiment_id, resource.label, scan.scan_id)
                    counts.append(len(files))
                else:
                    counts.append(resource.file_count or 0)
            if sum(counts) == 0:
                empty.append(scan.scan_id)
        return empty

    def _manual(self, project: str) -> bool:
        if project not in self._codes:
            self._codes[project] = (
                ProjectService(self.client).get(project, include_counts=False).prearchive_code
            )
        return self._codes[project] == 0

    # --- decisions --------------------------------------------------------------------------

    def _split_by_xnat(self, row: PrearchiveSession) -> bool:
        """Whether a CONFLICT is with a session this very upload created (same study, new).

        XNAT builds and archives a session once no file arrived for its rebuild interval; a
        batch that waited longer than that for a concurrency slot lands in a new prearchive
        session that conflicts with the part already archived.
        """
        if not (row.project and row.name):
            return False
        try:
            found = SessionService(self.client).get(row.name, project=row.project)
        except ResourceNotFoundError:
            return False
        same_study = found.get("UID") == self.options.study_uid
        return same_study and found.id != self.options.existing_experiment

    def _archive(self, row: PrearchiveSession, mode: OverwriteMode) -> None:
        project, timestamp, folder = row.project or "", row.timestamp or "", row.folder_name or ""
        self.logger.info("archiving prearchive %s (overwrite=%s)", row.src, mode)
        result = self.prearchive.archive(project, timestamp, folder, overwrite=mode)
        self.archived_by = "flow"
        self.project = result.project
        self.label = result.experiment_label
        self.subject = result.subject or self.subject
        self.experiment_id = result.experiment_id
        self.subject_id = result.subject_id

    def _act(self, seen: _Seen) -> SettledSession | None:
        """Handle CONFLICT/ERROR/READY rows; return the result when the study is settled."""
        opts = self.options
        for row in seen.rows:
            status = str(row.status)
            if status == "ERROR":
                raise ArchiveFailed(
                    f"prearchive session {row.src} of study {opts.study_uid} is ERROR: XNAT "
                    "could not build or archive it; read its log "
                    f"(GET /data{row.src}/logs) and rebuild or delete it",
                    target=row.src,
                    status=status,
                )
            if status == "CONFLICT":
                if opts.archive and opts.overwrite != "none":
                    self._archive(row, opts.overwrite)
                    return None
                if self._split_by_xnat(row):
                    self.warnings.append(
                        f"XNAT archived part of the upload before the rest arrived; merged "
                        f"{row.src} into it with overwrite=append"
                    )
                    self._archive(row, "append")
                    return None
                fix = (
                    "ingest with overwrite='append' or 'delete' to merge or replace it"
                    if opts.overwrite == "none"
                    else f"archive=False: archive it with overwrite={opts.overwrite!r} in XNAT"
                )
                raise ArchiveFailed(
                    f"prearchive session {row.src} is CONFLICT: a session with this label "
                    f"already exists in project {row.project}; {fix}",
                    target=row.src,
                    status=status,
                )
            if status == "READY" and row.project == UNASSIGNED:
                raise SessionNotSettled(
                    f"study {opts.study_uid} landed in the Unassigned prearchive ({row.src}): "
                    "XNAT could not route it to a project; pass project/subject/session or fix "
                    "the routing headers (Patient Comments 'Project:P Subject:S Session:E')",
                    target=row.src,
                    status=status,
                )
            if status == "READY" and row.project and self._manual(row.project):
                if opts.archive:
                    self._archive(row, opts.overwrite)
                    return None
                return SettledSession(
                    project=row.project,
                    session_label=row.name or row.folder_name or "",
                    subject_label=row.subject,
                    archived_by="none",
                    prearchive_src=row.src,
                    warnings=[f"left READY in the prearchive ({row.src}); archive=False"],
                )
        if seen.rows or seen.direct or seen.experiment is None or seen.empty_scans:
            return None
        exp = seen.experiment
        return SettledSession(
            project=str(exp.get("project") or self.project or ""),
            session_label=str(exp.get("label") or self.label or ""),
            subject_label=exp.get("subject_label") or self.subject,
            subject_id=exp.get("subject_ID") or self.subject_id,
            experiment_id=str(exp["ID"]),
            archived_by=self.archived_by,
            warnings=self.warnings,
        )

    # --- loop -------------------------------------------------------------------------------

    def run(self) -> SettledSession:
        """Poll until settled.

        Returns:
            Where the study ended.

        Raises:
            ArchiveFailed: CONFLICT (without an overwrite that resolves it) or ERROR.
            SessionNotSettled: Stalled, timed out, Unassigned, or scans without files.
        """
        opts = self.options
        start = last_change = time.monotonic()
        signature: tuple[Any, ...] | None = None
        seen: _Seen | None = None
        while True:
            try:
                seen = self._observe()
            except XNATError as exc:
                if not is_transient(exc):
                    raise
                self.logger.warning("polling XNAT failed (%s); trying again", exc)
            else:
                described = seen.describe()
                if described != self._last_described:
                    self.logger.info("study %s: %s", opts.study_uid, described)
                    self._last_described = described
                before = self.archived_by
                settled = self._act(seen)
                if settled is not None:
                    return settled
                now_signature = seen.signature()
                if now_signature != signature or self.archived_by != before:
                    signature, last_change = now_signature, time.monotonic()
            now = time.monotonic()
            last = seen.describe() if seen is not None else "nothing read yet"
            if now - last_change >= opts.stall_seconds:
                raise SessionNotSettled(
                    f"study {opts.study_uid} made no progress for {now - last_change:.1f} s "
                    f"(stall_seconds={opts.stall_seconds:g}); last seen: {last}. XNAT builds a "
                    "session once no file arrived for its rebuild interval "
                    "(sessionXmlRebuilderInterval): stall_seconds must be longer than that",
                    target=opts.study_uid,
                    status=_status_of(seen),
                )
            if now - start >= opts.max_wait_seconds:
                raise SessionNotSettled(
                    f"study {opts.study_uid} was not settled after {now - start:.1f} s "
                    f"(max_wait_seconds={opts.max_wait_seconds:g}); last seen: {last}",
                    target=opts.study_uid,
                    status=_status_of(seen),
                )
            time.sleep(opts.poll_interval_seconds)


def _status_of(seen: _Seen | None) -> str:
    if seen is None:
        return "UNKNOWN"
    if seen.rows:
        return str(seen.rows[0].status)
    if seen.direct:
        return str(seen.direct[0].get("status") or "UNKNOWN")
    if seen.empty_scans:
        return "EMPTY_RESOURCE"
    return "ARCHIVED" if seen.experiment else "NOT_FOUND"
