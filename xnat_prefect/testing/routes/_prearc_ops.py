"""Prearchive life cycle: the background sweep, auto-archive, Direct-Archive, queued operations.

XNAT's ``SessionXMLRebuilder`` builds a RECEIVING session once no file arrived for the quiet
interval (``timing.rebuild_quiet_seconds`` here), then archives it when the project's
prearchive code is 4/5 or the upload said ``AA=true`` (after ``timing.archive_delay_seconds``).
Unassigned sessions and code-0 projects stay READY. Direct-Archive sessions are archived right
after the quiet interval; on failure they fall back into the prearchive as CONFLICT/ERROR.
Batch services (``/data/services/prearchive/move|delete|rebuild``, multi-session archive)
queue work here (``QUEUED_*`` statuses) for the sweeper.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from xnat_prefect.testing.routes._archiving import ArchiveError, ArchiveRequest, archive_session
from xnat_prefect.testing.routes._prearc import (
    DIRECT,
    LOCKED_STATUSES,
    PREARCHIVE,
    UNASSIGNED,
    PrearcLockedError,
    SessionGoneError,
    add_log,
    delete_session,
    load,
    project_code,
    relocate,
    set_status,
)
from xnat_prefect.testing.routes._prearc_build import build_session
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

LOG = logging.getLogger(__name__)
QUEUED_STATUS = {
    "archive": "QUEUED_ARCHIVING",
    "move": "QUEUED_MOVING",
    "delete": "QUEUED_DELETING",
    "build": "QUEUED_BUILDING",
}
_TRUE = ("true", "1", "yes")
_HOLDS_KEY = "prearc_import_holds"


class ImportHold:
    """Sessions an in-flight import request is still writing or building.

    XNAT's importer builds (and maybe archives) the sessions of a DICOM-zip upload itself, in
    the request; its rebuilder never races it. The sweeper skips held sessions for that reason,
    however long the upload takes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()

    def add(self, session_id: int) -> None:
        """Hold one more reference on a session.

        Args:
            session_id: Prearchive session id.
        """
        with self._lock:
            self._counts[session_id] += 1

    def release(self, session_ids: list[int]) -> None:
        """Drop one reference per listed session.

        Args:
            session_ids: Ids previously passed to ``add``.
        """
        with self._lock:
            self._counts.subtract(session_ids)
            for session_id in session_ids:
                if self._counts[session_id] <= 0:
                    del self._counts[session_id]

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._counts


def _holds(state: EmulatorState) -> ImportHold:
    holds = state.extras.get(_HOLDS_KEY)
    if holds is None:
        holds = state.extras.setdefault(_HOLDS_KEY, ImportHold())
    assert isinstance(holds, ImportHold)
    return holds


@contextlib.contextmanager
def import_hold(state: EmulatorState) -> Iterator[list[int]]:
    """Keep the sweeper off the sessions an import request receives, until it returns.

    Args:
        state: Emulator state.

    Yields:
        A list the caller appends session ids to (each is held as soon as it is appended via
        ``hold_session``); all are released on exit.
    """
    held: list[int] = []
    try:
        yield held
    finally:
        _holds(state).release(held)


def hold_session(state: EmulatorState, held: list[int], session_id: int) -> None:
    """Hold a session for the rest of an ``import_hold`` block (once per block).

    Args:
        state: Emulator state.
        held: The list ``import_hold`` yielded.
        session_id: Prearchive session id.
    """
    if session_id not in held:
        _holds(state).add(session_id)
        held.append(session_id)


def skipped_by_sweeper(row: Row) -> bool:
    """Whether the sweeper leaves a session alone (uploader sessions, prevent_auto_commit).

    Args:
        row: Session row.

    Returns:
        True for ``SOURCE=uploader`` or ``prevent_auto_commit=true`` prearchive sessions.
    """
    if row["root"] != PREARCHIVE:
        return False
    return (
        str(row["prevent_auto_commit"]).lower() in _TRUE or str(row["source"]).lower() == "uploader"
    )


def auto_archive_applies(state: EmulatorState, row: Row) -> bool:
    """Whether a session is archived without being asked (AA flag, else project code ≥ 4).

    Args:
        state: Emulator state.
        row: Session row.

    Returns:
        The decision (always False for Unassigned).
    """
    if row["project"] == UNASSIGNED:
        return False
    if row["aa"] is not None:
        return bool(row["aa"])
    code = project_code(state, row["project"])
    return code is not None and code >= 4


def auto_request(state: EmulatorState, row: Row, **overrides: Any) -> ArchiveRequest:
    """The archive request the sweeper uses for a session.

    Code 5 (``AutoArchiveOverwrite``) merges with ``append`` and replaces existing files.

    Args:
        state: Emulator state.
        row: Session row.
        **overrides: Other :class:`ArchiveRequest` fields.

    Returns:
        The request.
    """
    overwrite = row["overwrite"] or "none"
    replace = False
    if project_code(state, row["project"]) == 5 and overwrite == "none":
        overwrite, replace = "append", True
    values: dict[str, Any] = {
        "overwrite": overwrite,
        "overwrite_files": replace,
        "login": row["login"] or state.config.admin_user,
    }
    values.update(overrides)
    return ArchiveRequest(**values)


def schedule_auto_archive(state: EmulatorState, session_id: int) -> bool:
    """Queue the auto-archive of a READY session when its project or flags ask for it.

    Args:
        state: Emulator state.
        session_id: Session key.

    Returns:
        Whether it was queued.
    """
    row = load(state, session_id)
    if row["status"] != "READY" or not auto_archive_applies(state, row):
        return False
    due = time.time() + state.timing.archive_delay_seconds
    state.store.execute(
        "UPDATE prearc_sessions SET archive_after=? WHERE id=? AND status='READY'",
        (due, session_id),
    )
    return True


def archive_direct(state: EmulatorState, session_id: int) -> str | None:
    """Archive a Direct-Archive holding session now; on failure move it to the prearchive.

    Args:
        state: Emulator state.
        session_id: Session key.

    Returns:
        The archive URI, or None when it fell back into the prearchive.
    """
    row = load(state, session_id)
    try:
        return archive_session(state, session_id, auto_request(state, row)).uri
    except ArchiveError as exc:
        status = exc.prearc_status or "ERROR"
        with contextlib.suppress(FileExistsError):
            relocate(state, session_id, project=row["project"], root=PREARCHIVE)
        set_status(state, session_id, status, f"Attempt to direct-archive failed: {exc.message}")
        return None


def queue(state: EmulatorState, session_id: int, op: str, **params: Any) -> None:
    """Queue an operation for the sweeper (status becomes ``QUEUED_*``).

    Args:
        state: Emulator state.
        session_id: Session key.
        op: ``archive``, ``move``, ``delete`` or ``build``.
        **params: Operation parameters (JSON-serializable).

    Raises:
        PrearcLockedError: Another operation already holds the session.
    """
    with state.store.tx():
        row = load(state, session_id)
        if row["status"] in LOCKED_STATUSES:
            raise PrearcLockedError("Operation already in progress on this prearchive entry.")
        payload = json.dumps({"op": op, "prev": row["status"], **params})
        state.store.execute(
            "UPDATE prearc_sessions SET status=?, queued=?, archive_after=NULL WHERE id=?",
            (QUEUED_STATUS[op], payload, session_id),
        )
        add_log(state, session_id, f"Queued {op}")


def move_session(state: EmulatorState, session_id: int, project: str) -> Row:
    """Move a session to another project's prearchive (rebuilding its XML when built).

    Args:
        state: Emulator state.
        session_id: Session key.
        project: Destination project ID.

    Returns:
        The moved row.

    Raises:
        PrearcLockedError: Another operation holds the session.
        FileExistsError: The destination already has the same timestamp/folder.
    """
    row = load(state, session_id)
    if row["status"] in LOCKED_STATUSES:
        raise PrearcLockedError("Operation already in progress on this prearchive entry.")
    moved = relocate(state, session_id, project=project, root=PREARCHIVE)
    add_log(state, session_id, f"Moved from {row['project']} to {project}")
    if moved["built"] and moved["status"] != "RECEIVING":
        build_session(state, session_id)
    return load(state, session_id)


def _run_queued(state: EmulatorState, row: Row) -> None:
    payload = json.loads(row["queued"] or "{}")
    session_id = int(row["id"])
    state.store.execute(
        "UPDATE prearc_sessions SET status=?, queued='' WHERE id=?",
        (payload.get("prev") or "READY", session_id),
    )
    op = payload.get("op")
    if op == "delete":
        delete_session(state, session_id)
    elif op == "build":
        build_session(state, session_id)
    elif op == "move":
        try:
            move_session(state, session_id, str(payload["project"]))
        except FileExistsError as exc:
            set_status(state, session_id, "CONFLICT", f"Move failed: {exc}")
    elif op == "archive":
        try:
            archive_session(state, session_id, ArchiveRequest(**payload.get("request", {})))
        except ArchiveError as exc:
            LOG.debug("queued archive of %s failed: %s", session_id, exc.message)


def _advance(state: EmulatorState, row: Row, now: float) -> None:
    session_id = int(row["id"])
    status = row["status"]
    if status.startswith("QUEUED_"):
        _run_queued(state, row)
        return
    if session_id in _holds(state):
        return
    if status == "RECEIVING":
        if skipped_by_sweeper(row):
            return
        quiet_since = now - state.timing.rebuild_quiet_seconds
        if row["last_received"] > quiet_since:
            return
        built = build_session(state, session_id, quiet_since=quiet_since)
        if built is None or built["status"] != "READY":
            return
        if built["root"] == DIRECT:
            archive_direct(state, session_id)
            return
        if not schedule_auto_archive(state, session_id):
            return
        row = load(state, session_id)
    if status in ("READY", "RECEIVING") and row["archive_after"] is not None:
        if row["archive_after"] > time.time():
            return
        try:
            archive_session(state, session_id, auto_request(state, row, require_status=("READY",)))
        except ArchiveError as exc:
            LOG.debug("auto-archive of %s failed: %s", session_id, exc.message)
            state.store.execute(
                "UPDATE prearc_sessions SET archive_after=NULL WHERE id=?", (session_id,)
            )


def tick(state: EmulatorState) -> bool:
    """One sweep: build quiet sessions, archive due ones, run queued operations.

    Args:
        state: Emulator state.

    Returns:
        True while any session is RECEIVING (and not skipped), queued or due to archive.
    """
    now = time.time()
    rows = state.store.query(
        "SELECT * FROM prearc_sessions WHERE status IN ('RECEIVING') OR status LIKE 'QUEUED%' "
        "OR archive_after IS NOT NULL ORDER BY id"
    )
    for row in rows:
        try:
            _advance(state, row, now)
        except (SessionGoneError, PrearcLockedError):
            continue
        except Exception as exc:  # one broken session must not stop the sweep
            LOG.exception("prearchive sweep failed for session %s", row["id"])
            with contextlib.suppress(SessionGoneError):
                set_status(state, int(row["id"]), "ERROR", f"Unexpected error: {exc!r}")
    return pending(state)


def pending(state: EmulatorState) -> bool:
    """Whether the sweeper still has prearchive work.

    Args:
        state: Emulator state.

    Returns:
        The flag.
    """
    rows = state.store.query(
        "SELECT * FROM prearc_sessions WHERE status='RECEIVING' OR status LIKE 'QUEUED%' "
        "OR archive_after IS NOT NULL"
    )
    return any(
        r["status"] != "RECEIVING" or r["archive_after"] is not None or not skipped_by_sweeper(r)
        for r in rows
    )
