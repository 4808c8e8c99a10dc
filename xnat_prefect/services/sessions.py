"""``SessionService``: imaging sessions (experiments): list, create, update fields, share, delete.

XNAT facts this module follows (``xnat-rest.md`` §5):

* Create and update go to the subject-scoped URL
  ``/data/projects/{P}/subjects/{S}/experiments/{E}``; a flat ``PUT /data/experiments/{ID}?x=``
  answers 200 and stores nothing.
* Custom variables need the experiment's own xsiType prefix
  (``xnat:mrSessionData/fields/field[name=X]/field``) AND ``xsiType=``; the unprefixed form is a
  silent no-op. :meth:`SessionService.set_field` therefore reads the value back.
* The modality filter of a listing is XNAT's ``xsiType=`` (``MR`` → ``xnat:mrSessionData``).
"""

from __future__ import annotations

import builtins
import re
from datetime import date as date_cls
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
)
from xnat_prefect.models.resource import Resource
from xnat_prefect.models.scan import Scan
from xnat_prefect.models.session import Session, xsi_type_for_modality
from xnat_prefect.services.base import (
    BaseService,
    check_limit,
    check_new_label,
    check_ref,
    columns_param,
    missing_item,
    not_found,
    segment,
)
from xnat_prefect.services.resources import ResourceService
from xnat_prefect.services.scans import ScanService

__all__ = ["SESSION_DATA_FIELDS", "SESSION_SHORTCUTS", "SessionService"]

logger = get_logger(__name__)

SESSION_SHORTCUTS = frozenset(
    {
        "date",
        "time",
        "note",
        "visit_id",
        "visit",
        "protocol",
        "label",
        "scanner",
        "operator",
        "modality",
        "session_type",
        "UID",
        "dcmAccessionNumber",
        "dcmPatientId",
        "dcmPatientName",
        "coil",
        "fieldStrength",
    }
)
"""Experiment fields XNAT accepts by their short name on the subject-scoped PUT."""

SESSION_DATA_FIELDS = frozenset({"acquisition_site", "duration", "version", "original"})
"""Experiment fields without a shortcut: written as ``{xsiType}/{field}``."""

_XSI_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*:[A-Za-z][A-Za-z0-9]*$")
_MODALITY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?$")


def _xsi_type(modality: str | None, xsi_type: str) -> str:
    if modality is not None:
        if not isinstance(modality, str) or not _MODALITY.match(modality.strip()):
            raise InvalidInputError(f"modality={modality!r} is not valid; pass e.g. 'MR' or 'PET'")
        return xsi_type_for_modality(modality)
    if not isinstance(xsi_type, str) or not _XSI_TYPE.match(xsi_type):
        raise InvalidInputError(
            f"xsi_type={xsi_type!r} is not an XNAT type; pass e.g. 'xnat:mrSessionData'"
        )
    return xsi_type


class SessionService(BaseService):
    """Service for XNAT session/experiment operations.

    Example:
        ```python
        service = SessionService(client)
        session = service.create("STUDY1", "SUB001", "SUB001_MR1", modality="MR", date="2024-01-31")
        service.set_field(session.id, "note", "motion in run 2")
        ```
    """

    def list(
        self,
        project: str | None = None,
        subject: str | None = None,
        modality: str | None = None,
        limit: int | None = None,
        columns: builtins.list[str] | None = None,
    ) -> builtins.list[Session]:
        """List sessions/experiments.

        Routes: ``/data/projects/{P}/subjects/{S}/experiments``, ``/data/projects/{P}/experiments``
        or the site-wide ``/data/experiments``. Without ``project``, ``subject`` must be an
        accession ID (its project is looked up).

        Args:
            project: Filter by project ID.
            subject: Filter by subject ID (or label with ``project``).
            modality: Filter by modality (MR, PET, CT, PETMR, ...; an ``ns:type`` is used as is).
            limit: Maximum number of results (sent as XNAT's ``limit``, also applied here).
            columns: Specific columns to retrieve (``ID`` is always added).

        Returns:
            List of Session objects.

        Raises:
            ResourceNotFoundError: Unknown project or subject.
            InvalidInputError: Bad modality, limit or columns.

        Example:
            ```python
            SessionService(client).list(project="STUDY1", modality="MR", limit=20)
            ```
        """
        limit = check_limit(limit)
        params: dict[str, Any] = {"columns": columns_param(columns), "limit": limit}
        if modality is not None:
            is_type = isinstance(modality, str) and ":" in modality
            params["xsiType"] = _xsi_type(None, modality) if is_type else _xsi_type(modality, "")
        if subject is not None and project is None:
            fields = self.get_ref_fields("subject", subject, None, name="subject")
            project = str(fields.get("project") or "") or None
            if project is None:
                raise UnexpectedResponseError(f"XNAT did not say which project owns {subject}")
        if project is None:
            path = "/data/experiments"
        elif subject is None:
            path = f"{self.project_path(project)}/experiments"
        else:
            path = f"{self.subject_path(subject, project, 'subject')}/experiments"
        return Session.from_rows(self.list_rows(path, params, limit=limit))

    def get(self, session_id: str, project: str | None = None) -> Session:
        """Get session details (item document, ``format=json``).

        Args:
            session_id: Session ID or label.
            project: Project ID (helps with label lookup; required for a label).

        Returns:
            Session object (``scan_count`` from the document's scans).

        Raises:
            ResourceNotFoundError: If session not found.

        Example:
            ```python
            SessionService(client).get("SUB001_MR1", project="STUDY1").session_date
            ```
        """
        return Session.model_validate(self.get_ref_fields("session", session_id, project))

    def create(
        self,
        project: str,
        subject: str,
        label: str,
        xsi_type: str = "xnat:mrSessionData",
        date: str | None = None,
        time: str | None = None,
        visit_id: str | None = None,
        modality: str | None = None,
    ) -> Session:
        """Create a new session/experiment.

        ``PUT /data/projects/{P}/subjects/{S}/experiments/{label}?xsiType=...`` (→ 201 + ID).
        The subject must exist (XNAT would silently create a misspelt one) and the label must
        be free in the project (XNAT would silently update that session).

        Args:
            project: Project ID.
            subject: Subject ID or label.
            label: Session label (letters, digits, ``_``, ``-``).
            xsi_type: XSI type (xnat:mrSessionData, xnat:petSessionData, etc).
            date: Session date (YYYY-MM-DD).
            time: Session time (HH:MM:SS).
            visit_id: Visit identifier.
            modality: Modality (overrides xsi_type if provided).

        Returns:
            Created Session object.

        Raises:
            ConflictError: The label is already used in the project.
            ResourceNotFoundError: Unknown project or subject.
            InvalidInputError: Bad label, type, date or time.

        Example:
            ```python
            SessionService(client).create("STUDY1", "SUB001", "SUB001_PET1", modality="PET")
            ```
        """
        check_ref(project, "project")
        check_ref(subject, "subject")
        check_new_label(label, "label")
        session_type = _xsi_type(modality, xsi_type)
        if date is not None:
            try:
                date_cls.fromisoformat(date)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"date={date!r} is not YYYY-MM-DD") from exc
        if time is not None and (not isinstance(time, str) or not _TIME.match(time)):
            raise InvalidInputError(f"time={time!r} is not HH:MM:SS")
        subject_path = self.subject_path(subject, project, "subject")
        self.get_item_fields(
            subject_path,
            what=f"subject {subject!r} in project {project!r}",
            hint="; create it first with SubjectService.create()",
        )
        try:
            existing = self.get(label, project)
        except ResourceNotFoundError:
            existing = None
        path = f"{subject_path}/experiments/{segment(label, 'label')}"
        if existing is not None:
            raise ConflictError(
                409,
                f"session label {label!r} already exists in project {project!r} (ID "
                f"{existing.id}); XNAT would update it instead of creating one. Choose another "
                "label",
                method="PUT",
                path=path,
            )
        params = {"xsiType": session_type, "date": date, "time": time, "visit_id": visit_id}
        response = self.client.put(path, params=params)
        new_id = response.text.strip()
        if response.status_code != 201:
            raise ConflictError(
                409,
                f"session {label!r} appeared in project {project!r} while it was being created "
                f"(XNAT answered {response.status_code}, an update); check it with get()",
                method="PUT",
                path=path,
            )
        logger.info("Created session %s in project %s", new_id, project)
        return self.get(new_id if new_id and " " not in new_id else label, project)

    def delete(
        self, session_id: str, project: str | None = None, remove_files: bool = False
    ) -> bool:
        """Delete a session.

        Through its own project (or its accession ID) the session is deleted; through a project
        it is only *shared* into, XNAT removes the share only.

        Args:
            session_id: Session ID (or label with ``project``).
            project: Project ID.
            remove_files: Also remove files from filesystem.

        Returns:
            True if successful.

        Raises:
            ResourceNotFoundError: No such session.
            PermissionDeniedError: The user may not delete (members cannot).

        Example:
            ```python
            SessionService(client).delete("XNAT_E00001", remove_files=True)
            ```
        """
        path = self.experiment_path(session_id, project)
        try:
            self.client.delete(path, params={"removeFiles": "true" if remove_files else None})
        except ResourceNotFoundError as exc:
            raise not_found(missing_item("session", session_id, project), exc) from exc
        logger.debug("Deleted session %s (remove_files=%s)", session_id, remove_files)
        return True

    def get_scans(self, session_id: str, project: str | None = None) -> builtins.list[Scan]:
        """Get scans for a session (see :meth:`ScanService.list`).

        Args:
            session_id: Session ID (or label with ``project``).
            project: Project ID.

        Returns:
            List of :class:`Scan` (they also read like the seed's dicts).

        Example:
            ```python
            [s.type for s in SessionService(client).get_scans("XNAT_E00001")]
            ```
        """
        return ScanService(self.client).list(session_id, project=project)

    def get_resources(self, session_id: str, project: str | None = None) -> builtins.list[Resource]:
        """Get session-level resources (see :meth:`ResourceService.list`).

        Args:
            session_id: Session ID (or label with ``project``).
            project: Project ID.

        Returns:
            List of :class:`Resource` (they also read like the seed's dicts).

        Example:
            ```python
            [r.label for r in SessionService(client).get_resources("XNAT_E00001")]
            ```
        """
        return ResourceService(self.client).list(session_id, project=project)

    def set_field(
        self, session_id: str, field: str, value: str, project: str | None = None
    ) -> bool:
        """Set a field value on a session.

        Shortcut fields (:data:`SESSION_SHORTCUTS`: ``note``, ``visit_id``, ``date``...) are sent
        by name; other experiment fields (``acquisition_site``...) as ``{xsiType}/{field}``; a
        field given as an xpath (containing ``/``) as is; any other name is a custom variable,
        sent as ``{xsiType}/fields/field[name=NAME]/field`` and read back to make sure XNAT
        stored it. Always on the subject-scoped URL with ``xsiType=``.

        Args:
            session_id: Session ID (or label with ``project``).
            field: Field name (e.g., 'note', 'acquisition_site') or custom variable name.
            value: Field value.
            project: Project ID.

        Returns:
            True if successful.

        Raises:
            InvalidInputError: Bad field name or value.
            ResourceNotFoundError: No such session.
            UnexpectedResponseError: XNAT accepted a custom variable but did not store it.

        Example:
            ```python
            SessionService(client).set_field("XNAT_E00001", "acquisition_site", "Site A")
            ```
        """
        if not isinstance(field, str) or not (_FIELD_NAME.match(field) or "/" in field):
            raise InvalidInputError(
                f"field={field!r} is not a field name; pass e.g. 'note' or a custom variable "
                "name (letters, digits, '_')"
            )
        if not isinstance(value, str):
            raise InvalidInputError(f"value for {field!r} must be a string, got {value!r}")
        if field == "label":
            check_new_label(value, "value")
        ref = self.resolve_session(session_id, project)
        xsi = ref.xsi_type or "xnat:experimentData"
        custom = False
        if "/" in field or field in SESSION_SHORTCUTS:
            key = field
        elif field in SESSION_DATA_FIELDS:
            key = f"{xsi}/{field}"
        else:
            key, custom = f"{xsi}/fields/field[name={field}]/field", True
        response = self.client.put(ref.write_path, params={key: value, "xsiType": xsi})
        if response.status_code == 201:
            raise UnexpectedResponseError(f"XNAT created a session at {ref.write_path}")
        if custom:
            stored = self.get_item_fields(ref.data_path, what=f"session {ref.id}").get("fields")
            found = {str(k).lower(): v for k, v in (stored or {}).items()}
            if found.get(field.lower()) != value:
                raise UnexpectedResponseError(
                    f"XNAT answered 200 but custom variable {field!r} of session {ref.id} reads "
                    f"{found.get(field.lower())!r}, not {value!r}; check that the project "
                    "defines this variable for the session type"
                )
        return True

    def share(
        self,
        session_id: str,
        target_project: str,
        label: str | None = None,
        primary: bool = False,
        *,
        project: str | None = None,
    ) -> bool:
        """Share a session with another project (``PUT /data/experiments/{ID}/projects/{Q}``).

        ``primary=True`` MOVES the session: the target becomes its owning project.

        Args:
            session_id: Session ID (or label with ``project``).
            target_project: Target project ID.
            label: New label in target project.
            primary: Make target the primary project.
            project: Project of ``session_id`` when it is a label.

        Returns:
            True if successful.

        Raises:
            ConflictError: Already shared into the target, or the label is taken there.
            ResourceNotFoundError: Unknown session or target project.
            PermissionDeniedError: No create permission in the target.

        Example:
            ```python
            SessionService(client).share("XNAT_E00001", "STUDY2", label="S2_MR1")
            ```
        """
        target = segment(target_project, "target_project")
        if label is not None:
            check_new_label(label, "label")
        path = f"{self.session_data_path(session_id, project)}/projects/{target}"
        params = {"label": label, "primary": "true" if primary else None}
        try:
            self.client.put(path, params=params)
        except ConflictError as exc:
            raise ConflictError(
                409,
                f"cannot share session {session_id!r} into {target_project!r}: {exc.message}",
                method=exc.method,
                path=exc.path,
            ) from exc
        return True
