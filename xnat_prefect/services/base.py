"""``BaseService`` and the helpers every service shares.

XNAT's URL rules that every service must follow (see ``xnat-rest.md`` §1.4, §5, §6):

* Flat item URLs (``/data/subjects/{ID}``, ``/data/experiments/{ID}``) take **accession IDs
  only**; a label there is a 404. Inside a project (``/data/projects/{P}/subjects/{S}``,
  ``.../experiments/{E}``) the label is tried first, then the accession ID.
* Scan and resource routes of a session exist only as ``/data/experiments/{ID}/...`` and
  ``/data/projects/{P}/subjects/{S}/experiments/{E}/...``.
  ``/data/projects/{P}/experiments/{E}/scans`` is NOT a scan listing: prefix routing answers
  it with the experiment document. So a session label is first resolved to its accession ID
  (:meth:`BaseService.resolve_session`).
* Writes on an experiment go to the subject-scoped URL: a flat ``PUT /data/experiments/{ID}?x=``
  answers 200 and stores nothing.

Every id or label that goes into a URL is checked (:func:`check_ref`) and percent-quoted
(:func:`segment`); a bad one raises :class:`~xnat_prefect.errors.InvalidInputError` naming the
parameter and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import ResourceNotFoundError, UnexpectedResponseError
from xnat_prefect.models._resultset import parse_item_document
from xnat_prefect.services._validation import (
    VALID_LABEL,
    apply_limit,
    check_choice,
    check_limit,
    check_new_label,
    check_ref,
    columns_param,
    segment,
)

__all__ = [
    "VALID_LABEL",
    "BaseService",
    "ItemKind",
    "SessionRef",
    "apply_limit",
    "check_choice",
    "check_limit",
    "check_new_label",
    "check_ref",
    "columns_param",
    "label_hint",
    "missing_item",
    "not_found",
    "segment",
]


#: The items addressed by label in a project or by accession ID alone.
ItemKind = Literal["subject", "session"]
_EXAMPLE_IDS: dict[str, str] = {"subject": "XNAT_S00001", "session": "XNAT_E00001"}


@dataclass(frozen=True)
class SessionRef:
    """Where a session lives, as read from its item document.

    Attributes:
        id: Accession ID (``XNAT_E00001``).
        label: Label in its primary project.
        project: Primary project ID.
        subject_id: Subject accession ID.
        xsi_type: Session type (``xnat:mrSessionData``).
    """

    id: str
    label: str | None
    project: str | None
    subject_id: str | None
    xsi_type: str | None

    @property
    def data_path(self) -> str:
        """``/data/experiments/{ID}``: the root for scan and resource routes (reads and files)."""
        return f"/data/experiments/{quote(self.id, safe='')}"

    @property
    def write_path(self) -> str:
        """``/data/projects/{P}/subjects/{S}/experiments/{ID}``: the URL for item writes.

        Raises:
            UnexpectedResponseError: The session document lacked its project or subject.
        """
        if not self.project or not self.subject_id:
            raise UnexpectedResponseError(
                f"XNAT's document of session {self.id} lacks its project or subject; cannot "
                "build the subject-scoped URL that writes need"
            )
        return (
            f"/data/projects/{quote(self.project, safe='')}/subjects/"
            f"{quote(self.subject_id, safe='')}/experiments/{quote(self.id, safe='')}"
        )


class BaseService:
    """Base class of the services: holds the client and the URL/validation helpers.

    Args:
        client: An :class:`~xnat_prefect.client.XNATClient` (logged in on first use).

    Example:
        ```python
        with XNATClient("https://xnat.example.org", "jdoe", "secret") as client:
            service = ProjectService(client)
            print([p.id for p in service.list()])
        ```
    """

    def __init__(self, client: XNATClient) -> None:
        self.client = client

    # --- paths --------------------------------------------------------------------------------

    @staticmethod
    def project_path(project: str, name: str = "project") -> str:
        """``/data/projects/{P}`` (P may be an ID or an alias).

        Args:
            project: Project ID.
            name: Parameter name for errors.

        Returns:
            The path.
        """
        return f"/data/projects/{segment(project, name)}"

    def subject_path(self, subject: str, project: str | None, name: str = "subject_id") -> str:
        """Item URL of a subject: project-scoped (label or ID) or flat (accession ID only).

        Args:
            subject: Subject label (with ``project``) or accession ID.
            project: Project ID, or None.
            name: Parameter name for errors.

        Returns:
            The path.
        """
        if project is None:
            return f"/data/subjects/{segment(subject, name)}"
        return f"{self.project_path(project)}/subjects/{segment(subject, name)}"

    def experiment_path(self, session: str, project: str | None, name: str = "session_id") -> str:
        """Item URL of an experiment for GET/DELETE: project-scoped or flat (accession ID).

        Never append ``/scans`` to the project-scoped form; use :meth:`session_data_path`.

        Args:
            session: Session label (with ``project``) or accession ID.
            project: Project ID, or None.
            name: Parameter name for errors.

        Returns:
            The path.
        """
        if project is None:
            return f"/data/experiments/{segment(session, name)}"
        return f"{self.project_path(project)}/experiments/{segment(session, name)}"

    # --- reads --------------------------------------------------------------------------------

    def get_item_fields(self, path: str, *, what: str, hint: str = "") -> dict[str, Any]:
        """GET an item document (``format=json``) and flatten it.

        Args:
            path: Item URL.
            what: Description for a not-found message (``"subject 'S1' in project P"``).
            hint: Extra advice appended to the not-found message.

        Returns:
            The flattened item (see :func:`~xnat_prefect.models.parse_item_document`).

        Raises:
            ResourceNotFoundError: The item does not exist or is not visible.
            UnexpectedResponseError: The reply is not an item document.
        """
        try:
            payload = self.client.get_item(path)
        except ResourceNotFoundError as exc:
            message = f"{what} was not found (or is not visible to this user){hint}"
            raise not_found(message, exc) from exc
        return parse_item_document(payload)

    def get_ref_fields(
        self, kind: ItemKind, ref: str, project: str | None, *, name: str | None = None
    ) -> dict[str, Any]:
        """GET a subject or session document by its label in a project, or by accession ID.

        Args:
            kind: ``subject`` or ``session``.
            ref: Label (with ``project``) or accession ID.
            project: Project ID, or None (a flat URL: accession IDs only).
            name: Parameter name for errors (default ``subject_id`` / ``session_id``).

        Returns:
            The flattened item (see :meth:`get_item_fields`).

        Raises:
            ResourceNotFoundError: The item does not exist or is not visible (the message says
                how labels and accession IDs are addressed).
        """
        name = name or f"{kind}_id"
        if kind == "subject":
            path = self.subject_path(ref, project, name)
        else:
            path = self.experiment_path(ref, project, name)
        hint = label_hint(project, _EXAMPLE_IDS[kind])
        return self.get_item_fields(path, what=_item_what(kind, ref, project), hint=hint)

    def resolve_session(self, session_id: str, project: str | None = None) -> SessionRef:
        """Resolve a session label or ID to its accession ID, project, subject and type.

        Args:
            session_id: Accession ID, or label when ``project`` is given.
            project: Project the label belongs to.

        Returns:
            The :class:`SessionRef`.

        Raises:
            ResourceNotFoundError: No such session (the message explains the ID/label rule).

        Example:
            ```python
            ref = service.resolve_session("MR_01", project="P1")
            client.get_result_set(f"{ref.data_path}/scans")
            ```
        """
        fields = self.get_ref_fields("session", session_id, project)
        return SessionRef(
            id=str(fields.get("ID") or session_id),
            label=fields.get("label") or None,
            project=fields.get("project") or project,
            subject_id=fields.get("subject_ID") or None,
            xsi_type=fields.get("xsiType") or None,
        )

    def session_data_path(self, session_id: str, project: str | None = None) -> str:
        """``/data/experiments/{accession ID}``: the root for scan/resource/file routes.

        With ``project`` the label is resolved first (one GET); without it ``session_id`` must
        be the accession ID and no request is made.

        Args:
            session_id: Accession ID, or label when ``project`` is given.
            project: Project ID.

        Returns:
            The path.
        """
        if project is None:
            return f"/data/experiments/{segment(session_id, 'session_id')}"
        return self.resolve_session(session_id, project).data_path

    def resource_parent_path(
        self, session_id: str, scan_id: str | None = None, project: str | None = None
    ) -> str:
        """The parent of ``/resources``: the session, or one of its scans.

        Args:
            session_id: Accession ID, or label when ``project`` is given.
            scan_id: Scan ID for scan-level resources.
            project: Project ID.

        Returns:
            ``/data/experiments/{ID}`` or ``/data/experiments/{ID}/scans/{SCAN}``.
        """
        scan = None if scan_id is None else segment(scan_id, "scan_id")
        base = self.session_data_path(session_id, project)
        return base if scan is None else f"{base}/scans/{scan}"

    def list_rows(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = None
    ) -> list[dict[str, str]]:
        """GET a table and truncate it to ``limit`` rows.

        Args:
            path: Listing URL.
            params: Query parameters.
            limit: Checked limit.

        Returns:
            The rows.
        """
        return apply_limit(self.client.get_result_set(path, params), limit)


def not_found(message: str, exc: ResourceNotFoundError) -> ResourceNotFoundError:
    """A :class:`ResourceNotFoundError` with our message, keeping the request details.

    Args:
        message: What was not found and how to fix the call.
        exc: The original error.

    Returns:
        The new error (``raise not_found(...) from exc``).
    """
    return ResourceNotFoundError(404, message, method=exc.method, path=exc.path)


def _item_what(kind: ItemKind, ref: str, project: str | None) -> str:
    where = f" in project {project!r}" if project else ""
    return f"{kind} {ref!r}{where}"


def missing_item(kind: ItemKind, ref: str, project: str | None) -> str:
    """The message for a subject or session that was not found.

    Args:
        kind: ``subject`` or ``session``.
        ref: Label (with ``project``) or accession ID.
        project: Project ID, or None.

    Returns:
        ``"session 'MR1' in project 'P1' was not found"``, plus how to address it without a
        project.
    """
    return f"{_item_what(kind, ref, project)} was not found" + label_hint(
        project, _EXAMPLE_IDS[kind]
    )


def label_hint(project: str | None, example: str) -> str:
    """Advice for a not-found item looked up without a project.

    Args:
        project: The project given (None: a flat URL, accession IDs only).
        example: An accession ID example (``XNAT_S00001``).

    Returns:
        ``"; flat URLs need the accession ID ..."`` or ``""``.
    """
    if project is None:
        return (
            f"; without project= XNAT needs the accession ID ({example}): pass project= to use "
            "a label"
        )
    return ""
