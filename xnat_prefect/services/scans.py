"""``ScanService``: scans (series) of a session: list, inspect, delete, quality and notes.

Scan routes exist only under ``/data/experiments/{ID}/scans`` and the subject-scoped
``/data/projects/{P}/subjects/{S}/experiments/{E}/scans``
(``/data/projects/{P}/experiments/{E}/scans`` returns the experiment document). Reads and
deletes use the first form (a label given with ``project`` is resolved to the accession ID
first); scan field writes use the subject-scoped form.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import NoReturn
from urllib.parse import quote

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import ConflictError, InvalidInputError, ResourceNotFoundError, XNATError
from xnat_prefect.models.resource import Resource
from xnat_prefect.models.scan import Scan
from xnat_prefect.models.summaries import BatchSummary
from xnat_prefect.services.base import (
    BaseService,
    check_choice,
    check_ref,
    columns_param,
    missing_item,
    not_found,
    segment,
)
from xnat_prefect.services.resources import ResourceService

__all__ = ["SCAN_QUALITIES", "ScanService", "ScansWouldBeDeletedError"]

logger = get_logger(__name__)

SCAN_QUALITIES = ("usable", "questionable", "unusable")

ProgressCallback = Callable[[int, int, str], None]


class ScansWouldBeDeletedError(ConflictError, RuntimeError):
    """Refused ``delete_multiple(session, ["*"])`` without ``force``: every scan would go.

    A :class:`~xnat_prefect.errors.ConflictError` (status 409, never retried) and, like the
    subject and project guards, a ``RuntimeError``.

    Args:
        message: What was refused and how to proceed.
        scans: IDs of the scans that would have been deleted.
        path: The session's scans URL.
    """

    def __init__(self, message: str, *, scans: builtins.list[str], path: str) -> None:
        super().__init__(409, message, method="DELETE", path=path)
        self.scans = scans


class ScanService(BaseService):
    """Service for XNAT scan operations.

    Example:
        ```python
        service = ScanService(client)
        for scan in service.list("SUB001_MR1", project="STUDY1"):
            print(scan.scan_id, scan.type, scan.quality)
        service.set_quality("XNAT_E00001", "3", "unusable")
        ```
    """

    def list(
        self,
        session_id: str,
        project: str | None = None,
        columns: builtins.list[str] | None = None,
    ) -> builtins.list[Scan]:
        """List scans in a session (``GET /data/experiments/{ID}/scans``).

        Args:
            session_id: Session ID (or label with ``project``).
            project: Project ID (optional).
            columns: Specific columns to retrieve (``ID`` is always added).

        Returns:
            List of Scan objects.

        Raises:
            ResourceNotFoundError: No such session.

        Example:
            ```python
            ScanService(client).list("XNAT_E00001", columns=["type", "frames"])
            ```
        """
        params = {"columns": columns_param(columns)}
        base = self.session_data_path(session_id, project)
        try:
            rows = self.client.get_result_set(f"{base}/scans", params)
        except ResourceNotFoundError as exc:
            raise not_found(missing_item("session", session_id, project), exc) from exc
        return Scan.from_rows(rows)

    def _scan_fields(self, base: str, session_id: str, scan_id: str) -> Scan:
        path = f"{base}/scans/{segment(scan_id, 'scan_id')}"
        fields = self.get_item_fields(path, what=f"scan {scan_id!r} of session {session_id!r}")
        files = fields.get("file")
        if isinstance(files, builtins.list) and "file_count" not in fields:
            counts = [str(f.get("file_count", "")) for f in files if isinstance(f, dict)]
            if counts and all(c.isdigit() for c in counts):
                fields["file_count"] = str(sum(int(c) for c in counts))
        return Scan.model_validate(fields)

    def get(self, session_id: str, scan_id: str, project: str | None = None) -> Scan:
        """Get scan details (item document, ``format=json``).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            project: Project ID (optional).

        Returns:
            Scan object.

        Raises:
            ResourceNotFoundError: If scan not found.

        Example:
            ```python
            ScanService(client).get("XNAT_E00001", "1").series_description
            ```
        """
        check_ref(scan_id, "scan_id")
        return self._scan_fields(self.session_data_path(session_id, project), session_id, scan_id)

    def _delete_at(self, base: str, scan_id: str, remove_files: bool) -> None:
        path = f"{base}/scans/{quote(scan_id, safe='')}"
        try:
            self.client.delete(path, params={"removeFiles": "true" if remove_files else None})
        except ResourceNotFoundError as exc:
            raise not_found(f"scan {scan_id!r} was not found", exc) from exc

    def delete(
        self,
        session_id: str,
        scan_id: str,
        project: str | None = None,
        remove_files: bool = False,
    ) -> bool:
        """Delete a scan.

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            project: Project ID.
            remove_files: Also remove files from filesystem.

        Returns:
            True if successful.

        Raises:
            ResourceNotFoundError: No such session or scan.
            PermissionDeniedError: The user may not delete (members cannot).

        Example:
            ```python
            ScanService(client).delete("XNAT_E00001", "99", remove_files=True)
            ```
        """
        check_ref(scan_id, "scan_id")
        self._delete_at(self.session_data_path(session_id, project), scan_id, remove_files)
        return True

    def delete_multiple(
        self,
        session_id: str,
        scan_ids: builtins.list[str],
        project: str | None = None,
        remove_files: bool = False,
        parallel: bool = True,
        workers: int = 4,
        progress_callback: ProgressCallback | None = None,
        *,
        force: bool = False,
    ) -> BatchSummary:
        """Delete multiple scans.

        ``["*"]`` deletes every scan of the session only with ``force=True`` (logged at
        WARNING); without it the call is refused (and the refusal logged) before anything is
        deleted. Failures of single scans are collected, not raised. ``progress_callback``
        runs in the calling thread after each scan, in completion order; an exception it raises
        propagates (scans already submitted still finish).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_ids: List of scan IDs to delete ("*" for all).
            project: Project ID.
            remove_files: Also remove files.
            parallel: Use parallel deletion (a ``ThreadPoolExecutor(max_workers=workers)``).
            workers: Number of parallel workers.
            progress_callback: Callback(current, total, scan_id).
            force: Needed with ``["*"]``: delete every scan of the session.

        Returns:
            :class:`BatchSummary` (``summary["deleted"]`` lists deleted scans; ``failed`` maps
            scan ID to reason; ``errors`` has one line per failure).

        Raises:
            InvalidInputError: ``scan_ids`` is not a list, mixes ``"*"`` with IDs, holds a bad ID,
                or ``workers`` < 1.
            ResourceNotFoundError: No such session.
            ScansWouldBeDeletedError: ``["*"]`` without ``force`` on a session that has scans.

        Example:
            ```python
            summary = ScanService(client).delete_multiple("XNAT_E00001", ["3", "4"], workers=2)
            assert summary.success, summary.errors
            ```
        """
        if isinstance(scan_ids, str) or not isinstance(scan_ids, (builtins.list, tuple)):
            raise InvalidInputError(
                f"scan_ids must be a list of scan IDs (or ['*'] for all), got {scan_ids!r}"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers={workers!r} must be a positive integer")
        everything = "*" in scan_ids
        if everything and len(scan_ids) > 1:
            raise InvalidInputError("'*' deletes all scans; pass scan_ids=['*'] alone")
        wanted = [] if everything else list(dict.fromkeys(scan_ids))
        for scan_id in wanted:
            check_ref(scan_id, "scan_ids item")
        base = self.session_data_path(session_id, project)
        if everything:
            rows = self.client.get_result_set(f"{base}/scans", {"columns": "ID"})
            wanted = [row["ID"] for row in rows if row.get("ID")]
            accession = base.rsplit("/", 1)[-1]
            if wanted and not force:
                self._refuse_all(session_id, accession, wanted, f"{base}/scans")
            logger.warning(
                "Deleting ALL %d scan(s) of session %s (remove_files=%s, forced)",
                len(wanted),
                accession,
                remove_files,
            )
        summary = BatchSummary(operation="delete", total=len(wanted))
        done: set[str] = set()

        def record(scan_id: str, error: XNATError | None) -> None:
            if error is None:
                done.add(scan_id)
            else:
                summary.record_failure(scan_id, str(error))
            if progress_callback is not None:
                progress_callback(len(done) + len(summary.failed), len(wanted), scan_id)

        if parallel and len(wanted) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(wanted))) as pool:
                futures: dict[Future[None], str] = {
                    pool.submit(self._delete_at, base, scan_id, remove_files): scan_id
                    for scan_id in wanted
                }
                for future in as_completed(futures):
                    error = future.exception()
                    if error is None:
                        record(futures[future], None)
                    elif isinstance(error, XNATError):
                        record(futures[future], error)
                    else:
                        raise error
        else:
            for scan_id in wanted:
                try:
                    self._delete_at(base, scan_id, remove_files)
                except XNATError as exc:
                    record(scan_id, exc)
                else:
                    record(scan_id, None)
        summary.succeeded = [scan_id for scan_id in wanted if scan_id in done]
        return summary

    @staticmethod
    def _refuse_all(
        session_id: str, accession: str, scans: builtins.list[str], path: str
    ) -> NoReturn:
        shown = ", ".join(scans[:10]) + (
            f", ... ({len(scans) - 10} more)" if len(scans) > 10 else ""
        )
        name = repr(session_id) if accession == session_id else f"{session_id!r} ({accession})"
        logger.warning(
            "Refused to delete ALL %d scan(s) of session %s without force", len(scans), accession
        )
        raise ScansWouldBeDeletedError(
            f"scan_ids=['*'] would delete all {len(scans)} scan(s) of session {name}: {shown}; "
            "pass force=True to delete them all, or list the scan IDs to delete",
            scans=scans,
            path=path,
        )

    def get_resources(
        self, session_id: str, scan_id: str, project: str | None = None
    ) -> builtins.list[Resource]:
        """Get resources for a scan (see :meth:`ResourceService.list`).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            project: Project ID.

        Returns:
            List of :class:`Resource` (they also read like the seed's dicts).

        Example:
            ```python
            [r.label for r in ScanService(client).get_resources("XNAT_E00001", "1")]
            ```
        """
        return ResourceService(self.client).list(session_id, scan_id=scan_id, project=project)

    def _update(
        self, session_id: str, scan_id: str, project: str | None, params: dict[str, str]
    ) -> None:
        check_ref(scan_id, "scan_id")
        ref = self.resolve_session(session_id, project)
        self._scan_fields(ref.data_path, session_id, scan_id)  # 404 here, not XNAT's 400
        self.client.put(f"{ref.write_path}/scans/{quote(scan_id, safe='')}", params=params)

    def set_quality(
        self, session_id: str, scan_id: str, quality: str, project: str | None = None
    ) -> bool:
        """Set scan quality assessment (``PUT .../scans/{SCAN}?quality=``).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            quality: Quality value (usable, questionable, unusable).
            project: Project ID.

        Returns:
            True if successful.

        Raises:
            InvalidInputError: Not one of usable, questionable, unusable.
            ResourceNotFoundError: No such session or scan.
            PermissionDeniedError: The user may not edit the session.

        Example:
            ```python
            ScanService(client).set_quality("XNAT_E00001", "2", "questionable")
            ```
        """
        value = check_choice(quality, "quality", SCAN_QUALITIES)
        self._update(session_id, scan_id, project, {"quality": value})
        return True

    def set_note(
        self, session_id: str, scan_id: str, note: str, project: str | None = None
    ) -> bool:
        """Set scan note (``PUT .../scans/{SCAN}?note=``).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID.
            note: Note text.
            project: Project ID.

        Returns:
            True if successful.

        Raises:
            InvalidInputError: ``note`` is not a string.
            ResourceNotFoundError: No such session or scan.
            PermissionDeniedError: The user may not edit the session.

        Example:
            ```python
            ScanService(client).set_note("XNAT_E00001", "2", "motion artefacts")
            ```
        """
        if not isinstance(note, str):
            raise InvalidInputError(f"note must be a string, got {type(note).__name__}")
        self._update(session_id, scan_id, project, {"note": note})
        return True
