"""``PrearchiveService``: list, inspect, archive, delete, rebuild and move prearchive sessions.

XNAT facts this module relies on (``xnat-rest.md`` §9):

* ``GET /data/prearchive[/projects/P]`` lists sessions (all cells strings; ``url`` has no
  ``/data``); ``GET /data/prearchive/projects/P/TS/F?format=json`` is a one-row table.
* ``POST /data/services/archive?src=/prearchive/projects/P/TS/F`` archives synchronously and
  answers 200 ``text/uri-list`` with ``/data/archive/projects/P/subjects/S/experiments/E``. We
  send ``auto-archive=false`` so auto-archive projects do not answer 303; a 303 is still handled
  by reading its ``Location`` (never followed). 409 = conflict (the row becomes CONFLICT).
* Archiving is not idempotent. When the reply is lost (timeout, broken connection, 5xx from a
  proxy) we read the server state instead of resending blindly: session gone + experiment present
  = archived; ARCHIVING = wait; CONFLICT/ERROR = failed; still READY after a lost request = the
  archive never ran, so it is sent once more.
* There is no ``action=rebuild`` (XNAT answers 400): :meth:`PrearchiveService.rebuild` uses the
  session's synchronous ``action=build``, not the asynchronous batch service
  ``/data/services/prearchive/rebuild``.
* ``action=move&newProject=Q`` moves synchronously and answers **301** with the new URI as body.
"""

from __future__ import annotations

import builtins
import time
from urllib.parse import unquote

import httpx

from xnat_prefect._redact import get_logger
from xnat_prefect.client import check_body_for_error
from xnat_prefect.errors import (
    ConflictError,
    ResourceNotFoundError,
    ServerError,
    SessionNotSettled,
    UnexpectedResponseError,
    XNATError,
    XNATRequestError,
    XNATStatusError,
)
from xnat_prefect.models.prearchive import PrearchiveScan, PrearchiveSession, PrearchiveStatus
from xnat_prefect.services._prearchive_archive import (
    OVERWRITE_MODES,
    ArchiveJob,
    ArchiveResult,
    OverwriteMode,
    archive_uri,
    overwrite_mode,
    prearchive_src,
)
from xnat_prefect.services.base import (
    BaseService,
    check_new_label,
    check_ref,
    not_found,
    segment,
)

__all__ = ["OVERWRITE_MODES", "ArchiveResult", "PrearchiveService"]

logger = get_logger(__name__)

ARCHIVE_SERVICE = "/data/services/archive"
_IN_FLIGHT = frozenset(
    {
        PrearchiveStatus.ARCHIVING,
        PrearchiveStatus.QUEUED_ARCHIVING,
        PrearchiveStatus.LOCKED_ARCHIVING,
    }
)
_FAILED = frozenset({PrearchiveStatus.CONFLICT, PrearchiveStatus.LOCKED_CONFLICT})


class PrearchiveService(BaseService):
    """Service for XNAT prearchive operations.

    Attributes:
        archive_wait_seconds: How long to wait for a session seen ARCHIVING after a lost reply
            (XNAT's own ``sessionArchiveTimeoutInterval`` default is 600 s).
        settle_poll_seconds: Pause between state checks while waiting.

    Example:
        ```python
        service = PrearchiveService(client)
        for session in service.list(project="MYPROJECT"):
            if session.is_ready:
                result = service.archive("MYPROJECT", session.timestamp, session.folder_name)
                print(result.uri, result.experiment_id)
        ```
    """

    archive_wait_seconds: float = 600.0
    settle_poll_seconds: float = 1.0

    # --- paths ----------------------------------------------------------------------------------

    @staticmethod
    def _path(project: str, timestamp: str, session_name: str) -> str:
        return (
            f"/data/prearchive/projects/{segment(project, 'project')}/"
            f"{segment(timestamp, 'timestamp')}/{segment(session_name, 'session_name')}"
        )

    @staticmethod
    def _src(project: str, timestamp: str, session_name: str) -> str:
        return f"/prearchive/projects/{project}/{timestamp}/{session_name}"

    def _find(self, project: str, timestamp: str, session_name: str) -> PrearchiveSession | None:
        try:
            rows = self.client.get_result_set(self._path(project, timestamp, session_name))
        except ResourceNotFoundError:
            return None
        return PrearchiveSession.model_validate(rows[0]) if rows else None

    # --- reads ----------------------------------------------------------------------------------

    def list(self, project: str | None = None) -> builtins.list[PrearchiveSession]:
        """List prearchive sessions (``GET /data/prearchive[/projects/P]``).

        Args:
            project: Filter by project ID (``Unassigned`` for sessions without one).

        Returns:
            One :class:`PrearchiveSession` per row (``status`` is a :class:`PrearchiveStatus`).

        Raises:
            ResourceNotFoundError: Unknown project.
            PermissionDeniedError: No access to the project's prearchive.

        Example:
            ```python
            ready = [s for s in PrearchiveService(client).list("P1") if s.is_ready]
            ```
        """
        path = "/data/prearchive"
        if project is not None:
            path = f"/data/prearchive/projects/{segment(project, 'project')}"
        try:
            rows = self.client.get_result_set(path)
        except ResourceNotFoundError as exc:
            raise not_found(f"project {project!r} was not found (or is not visible)", exc) from exc
        return PrearchiveSession.from_rows(rows)

    def get(self, project: str, timestamp: str, session_name: str) -> PrearchiveSession:
        """Get prearchive session details (``.../{TS}/{F}?format=json``, a one-row table).

        Args:
            project: Project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive (its folder name).

        Returns:
            The session.

        Raises:
            ResourceNotFoundError: If session not found.

        Example:
            ```python
            PrearchiveService(client).get("P1", "20240101_120000123", "SESSION01").status
            ```
        """
        path = self._path(project, timestamp, session_name)
        where = self._src(project, timestamp, session_name)
        try:
            rows = self.client.get_result_set(path)
        except ResourceNotFoundError as exc:
            message = f"prearchive session {where} was not found (archived, moved or deleted?)"
            raise not_found(message, exc) from exc
        if not rows:
            raise ResourceNotFoundError(
                404, f"prearchive session {where} was not found", method="GET", path=path
            )
        return PrearchiveSession.model_validate(rows[0])

    def get_scans(
        self, project: str, timestamp: str, session_name: str
    ) -> builtins.list[PrearchiveScan]:
        """Get scans from a prearchive session (``.../scans``: ``ID, xsiType, series_description``).

        Args:
            project: Project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive.

        Returns:
            One :class:`PrearchiveScan` per scan.

        Raises:
            ResourceNotFoundError: No such session.

        Example:
            ```python
            [s.scan_id for s in PrearchiveService(client).get_scans("P1", ts, "SESSION01")]
            ```
        """
        path = self._path(project, timestamp, session_name) + "/scans"
        try:
            rows = self.client.get_result_set(path)
        except ResourceNotFoundError as exc:
            where = self._src(project, timestamp, session_name)
            raise not_found(f"prearchive session {where} was not found", exc) from exc
        return PrearchiveScan.from_rows(rows)

    # --- archive --------------------------------------------------------------------------------

    def archive(
        self,
        project: str,
        timestamp: str,
        session_name: str,
        subject: str | None = None,
        experiment_label: str | None = None,
        overwrite: bool | OverwriteMode = False,
    ) -> ArchiveResult:
        """Archive a session from prearchive (``POST /data/services/archive``).

        ``overwrite``: False = ``none`` (an existing session is a conflict); True = ``append``
        (merge new scans and files, keep existing ones); ``"delete"`` must be asked for by name
        (scans in the upload replace archived scans with the same ID).

        Args:
            project: Project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive.
            subject: Target subject ID (optional, uses DICOM if not provided).
            experiment_label: Target session label.
            overwrite: Overwrite existing session data (bool or ``none|append|delete``).

        Returns:
            :class:`ArchiveResult` (archive URI, labels, accession IDs).

        Raises:
            ArchiveFailed: 409/423 conflict (``target`` = the ``src``, the message names project,
                timestamp, session and the target labels), a 200 reply with error text, the
                session ending CONFLICT/ERROR after a lost reply, or an unreadable reply.
            SessionNotSettled: After a lost reply the session stayed ARCHIVING too long.
            ResourceNotFoundError: No such prearchive session.
            PermissionDeniedError: No edit rights on the project, or another operation holds it.
            InvalidInputError: Bad ``overwrite`` or labels.

        Example:
            ```python
            result = PrearchiveService(client).archive(
                "P1", "20240101_120000123", "SESSION01", experiment_label="SUBJ01_MR1",
                overwrite="append",
            )
            print(result.experiment_id)
            ```
        """
        mode = overwrite_mode(overwrite)
        if subject is not None:
            check_ref(subject, "subject")
        if experiment_label is not None:
            check_new_label(experiment_label, "experiment_label")
        session = self.get(project, timestamp, session_name)
        src = session.src or self._src(project, timestamp, session_name)
        job = ArchiveJob(project, timestamp, session_name, src, mode, subject, experiment_label)
        job.label = experiment_label or session.name or session_name
        try:
            response = self._send_archive(job)
        except (XNATRequestError, ServerError) as exc:
            if isinstance(exc, XNATRequestError) and not exc.request_sent:
                raise
            logger.warning(
                "Archive reply for the %s session of %s was lost (%s); checking the server state",
                timestamp,
                project,
                type(exc).__name__,
            )
            return self._settle_lost_archive(job, exc)
        return self._archive_result(job, response)

    def _send_archive(self, job: ArchiveJob) -> httpx.Response:
        params = {
            "src": job.src,
            "auto-archive": "false",
            "overwrite": job.mode,
            "subject": job.subject,
            "label": job.experiment_label,
        }
        try:
            return self.client.post(ARCHIVE_SERVICE, params=params)
        except ConflictError as exc:
            raise job.failed(f"XNAT refused: {exc.message}", "CONFLICT") from exc
        except ResourceNotFoundError as exc:
            message = f"prearchive session {job.src} is gone (already archived or deleted?)"
            raise not_found(message, exc) from exc
        except XNATStatusError as exc:
            if exc.status_code == 423:  # "Duplicate archive attempt"
                raise job.failed(f"XNAT refused: {exc.message}", "LOCKED") from exc
            raise

    def _archive_result(self, job: ArchiveJob, response: httpx.Response) -> ArchiveResult:
        if 300 <= response.status_code < 400:
            text = response.headers.get("location", "") + "\n" + response.text
        else:
            error = check_body_for_error(response.text)
            if error:
                raise job.failed(f"XNAT answered {response.status_code} with an error: {error}")
            text = response.text
        uri = archive_uri(text)
        if uri is None:
            raise job.failed(f"unexpected archive reply {response.status_code}: {text[:200]!r}")
        return self._result_for(job, uri, reconciled=False)

    def _result_for(self, job: ArchiveJob, uri: str, *, reconciled: bool) -> ArchiveResult:
        parts = [unquote(p) for p in uri.split("/")]
        project, subject, label = parts[4], parts[6], parts[8]
        experiment_id = subject_id = None
        try:
            ref = self.resolve_session(label, project)
            experiment_id, subject_id = ref.id, ref.subject_id
        except ResourceNotFoundError:
            logger.warning("Archived a session into %s but could not look up its ID", project)
        return ArchiveResult(
            uri=uri,
            project=project,
            subject=subject,
            experiment_label=label,
            experiment_id=experiment_id,
            subject_id=subject_id,
            src=job.src,
            overwrite=job.mode,
            reconciled=reconciled,
        )

    def _settle_lost_archive(self, job: ArchiveJob, error: XNATError) -> ArchiveResult:
        deadline = time.monotonic() + self.archive_wait_seconds
        resent = False
        while True:
            current = self._find(job.project, job.timestamp, job.session_name)
            if current is None:
                return self._archived_without_reply(job, error)
            status = current.status
            if status in _FAILED or status == PrearchiveStatus.ERROR:
                reason = f"the session is {status} in the prearchive ({error})"
                raise job.failed(reason, status) from error
            if status not in _IN_FLIGHT:
                if resent or not isinstance(error, XNATRequestError):
                    raise job.failed(f"the archive did not happen: {error}", status) from error
                resent = True
                logger.info(
                    "Archive of the %s session of %s never ran (still %s); sending it again",
                    job.timestamp,
                    job.project,
                    status,
                )
                try:
                    return self._archive_result(job, self._send_archive(job))
                except (XNATRequestError, ServerError) as exc:
                    error = exc
                    continue
            if time.monotonic() >= deadline:
                raise SessionNotSettled(
                    f"{job.src} is still {status} {self.archive_wait_seconds:.0f} s after the "
                    "archive reply was lost; check the prearchive before archiving again",
                    target=job.src,
                    status=str(status),
                ) from error
            time.sleep(self.settle_poll_seconds)

    def _archived_without_reply(self, job: ArchiveJob, error: XNATError) -> ArchiveResult:
        try:
            ref = self.resolve_session(job.label, job.project)
        except ResourceNotFoundError as exc:
            raise job.failed(
                f"the session left the prearchive but no experiment {job.label!r} exists in "
                f"{job.project} (deleted or moved by someone else?); first error: {error}"
            ) from exc
        subject = job.subject
        if ref.subject_id:
            try:
                fields = self.get_item_fields(
                    f"/data/subjects/{segment(ref.subject_id, 'subject')}", what="subject"
                )
                subject = fields.get("label") or subject
            except ResourceNotFoundError:
                logger.debug("subject %s of %s not readable", ref.subject_id, ref.id)
        uri = (
            f"/data/archive/projects/{job.project}/subjects/{subject or ref.subject_id}"
            f"/experiments/{ref.label or job.label}"
        )
        return self._result_for(job, uri, reconciled=True)

    # --- other actions --------------------------------------------------------------------------

    def delete(self, project: str, timestamp: str, session_name: str) -> bool:
        """Delete a session from prearchive (``DELETE .../{TS}/{F}``).

        A lost reply is settled by looking: gone = deleted; still there = sent once more.

        Args:
            project: Project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive.

        Returns:
            True if successful.

        Raises:
            ResourceNotFoundError: No such session.
            ConflictError: The session is locked (being archived, moved or deleted).
            PermissionDeniedError: No edit rights on the project.

        Example:
            ```python
            PrearchiveService(client).delete("P1", "20240101_120000123", "SESSION01")
            ```
        """
        path = self._path(project, timestamp, session_name)
        where = self._src(project, timestamp, session_name)
        try:
            self.client.delete(path, retry=False)
        except ResourceNotFoundError as exc:
            raise not_found(f"prearchive session {where} was not found", exc) from exc
        except XNATRequestError as exc:
            if exc.request_sent and self._find(project, timestamp, session_name) is None:
                return True
            logger.info(
                "Delete of the %s session of %s did not complete (%s); sending it again",
                timestamp,
                project,
                type(exc).__name__,
            )
            try:
                self.client.delete(path)
            except ResourceNotFoundError:
                return True
        return True

    def rebuild(self, project: str, timestamp: str, session_name: str) -> PrearchiveSession:
        """Rebuild/refresh a prearchive session (``POST ...?action=build``, synchronous).

        XNAT has no ``action=rebuild`` (400); ``build`` rewrites the session XML now and
        recomputes the status. The batch service ``/data/services/prearchive/rebuild`` would
        only queue the work (QUEUED_BUILDING), so it is not used.

        Args:
            project: Project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive.

        Returns:
            The session as it is after the build.

        Raises:
            ResourceNotFoundError: No such session.
            ConflictError: "session document locked" (another operation holds it).
            UnexpectedResponseError: XNAT answered 200 with error text.

        Example:
            ```python
            PrearchiveService(client).rebuild("P1", "20240101_120000123", "SESSION01").status
            ```
        """
        path = self._path(project, timestamp, session_name)
        where = self._src(project, timestamp, session_name)
        try:
            response = self.client.post(path, params={"action": "build"}, retry=True)
        except ResourceNotFoundError as exc:
            raise not_found(f"prearchive session {where} was not found", exc) from exc
        error = check_body_for_error(response.text)
        if error:
            raise UnexpectedResponseError(
                f"rebuilding {where} failed: {error}", status_code=response.status_code
            )
        return self.get(project, timestamp, session_name)

    def move(
        self, project: str, timestamp: str, session_name: str, target_project: str
    ) -> PrearchiveSession:
        """Move a prearchive session to another project (``action=move&newProject=``).

        XNAT moves synchronously and answers 301 with the new URI as body. A lost reply is
        settled by looking at both places.

        Args:
            project: Source project ID.
            timestamp: Prearchive timestamp.
            session_name: Session name in prearchive.
            target_project: Target project ID.

        Returns:
            The session at its new place.

        Raises:
            ResourceNotFoundError: No such session or target project.
            PermissionDeniedError: No edit rights on the target project.
            ConflictError: The target already holds that timestamp/folder, or the session is locked.

        Example:
            ```python
            moved = PrearchiveService(client).move("Unassigned", ts, "SESSION01", "P1")
            print(moved.url)
            ```
        """
        check_ref(target_project, "target_project")
        path = self._path(project, timestamp, session_name)
        where = self._src(project, timestamp, session_name)
        if target_project == project:
            return self.get(project, timestamp, session_name)
        params = {"action": "move", "newProject": target_project}
        try:
            response = self.client.post(path, params=params)
        except ResourceNotFoundError as exc:
            raise not_found(f"prearchive session {where} or project was not found", exc) from exc
        except XNATRequestError as exc:
            if not exc.request_sent:
                raise
            moved = self._find(target_project, timestamp, session_name)
            if moved is not None:
                return moved
            if self._find(project, timestamp, session_name) is None:
                raise
            response = self.client.post(path, params=params, retry=False)
        text = response.headers.get("location", "") + "\n" + response.text
        error = None if response.status_code in (301, 302, 303) else check_body_for_error(text)
        new_src = prearchive_src(text)
        if error or new_src is None:
            raise UnexpectedResponseError(
                f"moving {where} to {target_project}: unexpected reply {response.status_code} "
                f"{(error or text)[:200]!r}",
                status_code=response.status_code,
            )
        new_project, new_timestamp, new_name = new_src
        return self.get(new_project, new_timestamp, new_name)
