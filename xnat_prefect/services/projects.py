"""``ProjectService``: list, inspect, create, delete and configure XNAT projects."""

from __future__ import annotations

import builtins
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import (
    BadRequestError,
    ConflictError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models.project import Project
from xnat_prefect.models.session import Session
from xnat_prefect.models.subject import Subject
from xnat_prefect.services.base import (
    BaseService,
    apply_limit,
    check_choice,
    check_limit,
    check_new_label,
    check_ref,
    not_found,
)
from xnat_prefect.services.sessions import SessionService
from xnat_prefect.services.subjects import SubjectService

__all__ = ["ACCESSIBILITY_LEVELS", "ProjectNotEmptyError", "ProjectService"]

logger = get_logger(__name__)

ACCESSIBILITY_LEVELS = ("private", "protected", "public")


def _from_filtered_row(row: dict[str, str]) -> Project:
    """A row of the ``accessible=true`` listing (lower-case display ids, ``pi`` = "Last, First")."""
    data: dict[str, Any] = dict(row)
    pi = row.get("pi", "")
    if pi and not row.get("pi_lastname") and not row.get("pi_firstname"):
        last, _, first = pi.partition(",")
        data["pi_lastname"] = last.strip()
        data["pi_firstname"] = first.strip()
    return Project.model_validate(data)


class ProjectNotEmptyError(ConflictError, RuntimeError):
    """Refused to delete a project that still holds data (XNAT would delete all of it).

    A :class:`~xnat_prefect.errors.ConflictError` (status 409, never retried) and, like the
    subject guard, a ``RuntimeError``.

    Args:
        message: What was refused and how to proceed.
        contents: What the project holds (``subjects``, ``experiments``, ``files``).
        path: The project URL.
    """

    def __init__(self, message: str, *, contents: dict[str, int], path: str) -> None:
        super().__init__(409, message, method="DELETE", path=path)
        self.contents = contents


class ProjectService(BaseService):
    """Service for XNAT project operations.

    Example:
        ```python
        service = ProjectService(client)
        project = service.create("STUDY1", name="Study one", pi_lastname="Smith")
        print(project.subject_count, project.accessibility)
        ```
    """

    def list(self, accessible: bool = True, limit: int | None = None) -> builtins.list[Project]:
        """List projects.

        ``accessible=True`` asks XNAT's filtered listing (``accessible=true``: projects whose data
        the user can read); its columns are lower-case display ids (``id``, ``project_access``,
        ``pi``...) and are mapped onto :class:`Project` like the default listing's. With
        ``accessible=False`` the default listing is used (``ID, secondary_ID, name, ...``: every
        project the user can see, including protected ones it cannot read).

        Args:
            accessible: Only list accessible projects.
            limit: Maximum number of results (XNAT ignores ``limit`` here; applied client-side).

        Returns:
            List of Project objects.

        Raises:
            InvalidInputError: ``limit`` is not a positive integer.

        Example:
            ```python
            ids = [p.id for p in ProjectService(client).list(limit=10)]
            ```
        """
        limit = check_limit(limit)
        if accessible:
            rows = self.client.get_result_set("/data/projects", {"accessible": "true"})
            return apply_limit([_from_filtered_row(r) for r in rows], limit)
        rows = self.client.get_result_set("/data/projects")
        return apply_limit(Project.from_rows(rows), limit)

    def get(self, project_id: str, *, include_counts: bool = True) -> Project:
        """Get project details.

        Reads the item document (``format=json``), then ``prearchive_code`` and
        ``accessibility``, and (unless ``include_counts=False``) counts subjects and
        experiments with two ``columns=ID`` listings. Settings or counts the user may not read
        stay None.

        Args:
            project_id: Project ID (or alias).
            include_counts: Also fill ``subject_count`` and ``session_count``.

        Returns:
            Project object.

        Raises:
            ResourceNotFoundError: If project not found (or not visible to this user).

        Example:
            ```python
            project = ProjectService(client).get("STUDY1")
            print(project.name, project.pi, project.prearchive_code)
            ```
        """
        path = self.project_path(project_id, "project_id")
        fields = self.get_item_fields(path, what=f"project {project_id!r}")
        canonical = self.project_path(str(fields.get("ID") or project_id), "project_id")
        code = self._setting(f"{canonical}/prearchive_code")
        fields["prearchive_code"] = code if code and code.lstrip("-").isdigit() else ""
        fields["accessibility"] = self._setting(f"{canonical}/accessibility") or ""
        if include_counts:
            fields["subject_count"] = self._count(f"{canonical}/subjects")
            fields["session_count"] = self._count(f"{canonical}/experiments")
        return Project.model_validate(fields)

    def _setting(self, path: str) -> str | None:
        try:
            return self.client.get_text(path).strip()
        except (PermissionDeniedError, ResourceNotFoundError, BadRequestError):
            return None

    def _count(self, path: str) -> str:
        try:
            return str(len(self.client.get_result_set(path, {"columns": "ID"})))
        except PermissionDeniedError:
            return ""

    def _exists(self, project_id: str) -> bool:
        try:
            self.client.get_item(self.project_path(project_id, "project_id"))
        except ResourceNotFoundError:
            return False
        return True

    def create(
        self,
        project_id: str,
        name: str | None = None,
        description: str | None = None,
        keywords: str | None = None,
        pi_firstname: str | None = None,
        pi_lastname: str | None = None,
        accessibility: str = "private",
    ) -> Project:
        """Create a new project.

        ``PUT /data/projects/{id}`` would silently *update* an existing project, so the ID (or
        alias) is checked first and an existing one raises :class:`ConflictError`.

        Args:
            project_id: Project ID (must be unique; letters, digits, ``_``, ``-``).
            name: Project name (defaults to project_id).
            description: Project description.
            keywords: Comma-separated keywords.
            pi_firstname: PI first name.
            pi_lastname: PI last name.
            accessibility: Access level (private, protected, public).

        Returns:
            Created Project object.

        Raises:
            InvalidInputError: Bad ID or accessibility.
            ConflictError: The ID (or alias) exists, or XNAT found the name taken (409).
            PermissionDeniedError: The user may not create projects.

        Example:
            ```python
            ProjectService(client).create("STUDY1", name="Study one", accessibility="protected")
            ```
        """
        check_new_label(project_id, "project_id")
        level = check_choice(accessibility, "accessibility", ACCESSIBILITY_LEVELS)
        if self._exists(project_id):
            raise ConflictError(
                409,
                f"project {project_id!r} already exists (as an ID or alias); choose another "
                "project_id, or use get() to read the existing project",
                method="PUT",
                path=self.project_path(project_id),
            )
        params = {
            "name": name or project_id,
            "description": description,
            "keywords": keywords,
            "pi_firstname": pi_firstname,
            "pi_lastname": pi_lastname,
            "accessibility": level,
        }
        self.client.put(self.project_path(project_id, "project_id"), params=params)
        logger.info("Created project %s", project_id)
        project = self.get(project_id)
        if project.accessibility not in (None, level):
            self.set_accessibility(project_id, level)
            project = self.get(project_id)
        return project

    def delete(self, project_id: str, remove_files: bool = False, force: bool = False) -> bool:
        """Delete a project.

        Refuses (and logs the refusal) when the project still holds subjects, experiments or
        project resource files, because XNAT deletes all of them with it; pass ``force=True``
        to delete it anyway (logged at WARNING with what it held). XNAT answers 400 (not 404)
        for a missing project; that becomes :class:`ResourceNotFoundError`. A deleted project's
        ID cannot be reused on XNAT.

        Args:
            project_id: Project ID.
            remove_files: Also remove files from filesystem (``removeFiles=true``).
            force: Delete a project that still holds data.

        Returns:
            True if successful.

        Raises:
            ProjectNotEmptyError: The project holds data and ``force`` is False.
            ResourceNotFoundError: No such project (or not visible).
            PermissionDeniedError: The user is not an owner.

        Example:
            ```python
            ProjectService(client).delete("OLDSTUDY", remove_files=True)
            ```
        """
        path = self.project_path(project_id, "project_id")
        contents = self._contents(path)
        held = ", ".join(f"{n} {kind}" for kind, n in contents.items() if n)
        if held and not force:
            logger.warning("Refused to delete project %s: it holds %s", project_id, held)
            raise ProjectNotEmptyError(
                f"project {project_id!r} holds {held}; deleting it would delete all of them. "
                "Delete or move them first, or pass force=True to delete the project with "
                "everything in it",
                contents=contents,
                path=path,
            )
        params = {"removeFiles": "true"} if remove_files else None
        try:
            self.client.delete(path, params=params)
        except BadRequestError as exc:
            if self._exists(project_id):
                raise
            raise ResourceNotFoundError(
                404,
                f"project {project_id!r} does not exist (or is not visible to this user); "
                "nothing was deleted",
                method=exc.method,
                path=exc.path,
            ) from exc
        logger.warning(
            "Deleted project %s (remove_files=%s%s)",
            project_id,
            remove_files,
            f", forced: it held {held}" if held else "",
        )
        return True

    def _contents(self, path: str) -> dict[str, int]:
        """Subjects, experiments and project resource files of a project (0 when unreadable)."""
        counts: dict[str, int] = {}
        for kind, listing in (("subjects", "subjects"), ("experiments", "experiments")):
            try:
                rows = self.client.get_result_set(f"{path}/{listing}", {"columns": "ID"})
            except ResourceNotFoundError:
                rows = []
            counts[kind] = len(rows)
        try:
            counts["project resource files"] = len(self.client.get_result_set(f"{path}/files"))
        except ResourceNotFoundError:
            counts["project resource files"] = 0
        return counts

    def get_subjects(self, project_id: str, limit: int | None = None) -> builtins.list[Subject]:
        """Get subjects in a project (``GET /data/projects/{P}/subjects``).

        Args:
            project_id: Project ID.
            limit: Maximum number of results.

        Returns:
            List of :class:`Subject` (they also read like the seed's dicts).

        Raises:
            ResourceNotFoundError: No such project.

        Example:
            ```python
            labels = [s["label"] for s in ProjectService(client).get_subjects("STUDY1")]
            ```
        """
        check_ref(project_id, "project_id")
        return SubjectService(self.client).list(project=project_id, limit=limit)

    def get_sessions(self, project_id: str, limit: int | None = None) -> builtins.list[Session]:
        """Get sessions/experiments in a project (``GET /data/projects/{P}/experiments``).

        Args:
            project_id: Project ID.
            limit: Maximum number of results.

        Returns:
            List of :class:`Session` (they also read like the seed's dicts).

        Raises:
            ResourceNotFoundError: No such project.

        Example:
            ```python
            ids = [s.id for s in ProjectService(client).get_sessions("STUDY1", limit=50)]
            ```
        """
        check_ref(project_id, "project_id")
        return SessionService(self.client).list(project=project_id, limit=limit)

    def set_accessibility(self, project_id: str, accessibility: str) -> bool:
        """Set project accessibility level (``PUT /data/projects/{P}/accessibility/{level}``).

        Args:
            project_id: Project ID.
            accessibility: Access level (private, protected, public).

        Returns:
            True if successful.

        Raises:
            InvalidInputError: Not one of private, protected, public.
            ResourceNotFoundError: No such project.
            PermissionDeniedError: Not an owner, or the site forbids non-private projects.

        Example:
            ```python
            ProjectService(client).set_accessibility("STUDY1", "protected")
            ```
        """
        level = check_choice(accessibility, "accessibility", ACCESSIBILITY_LEVELS)
        path = f"{self.project_path(project_id, 'project_id')}/accessibility/{level}"
        try:
            self.client.put(path)
        except ResourceNotFoundError as exc:
            message = f"project {project_id!r} was not found (or is not visible to this user)"
            raise not_found(message, exc) from exc
        return True
