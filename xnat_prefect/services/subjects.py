"""``SubjectService``: subjects (participants) of a project: list, create, rename, merge, delete.

XNAT facts this module guards against (``xnat-rest.md`` §4):

* ``PUT /data/projects/{P}/subjects/{S}`` on a missing S silently *creates* it, and on an
  existing S silently *updates* it: :meth:`SubjectService.create` checks first, and
  :meth:`SubjectService.rename` refuses unknown subjects.
* Deleting a subject from its owning project cascade-deletes its experiments:
  :meth:`SubjectService.delete` refuses unless ``force=True``.
* Moving an experiment to another subject is a PUT of the experiment under the target
  subject's URL (never the flat URL with ``subject_ID``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
)
from xnat_prefect.models.session import Session
from xnat_prefect.models.subject import Subject
from xnat_prefect.models.summaries import MergeSummary, RenameSummary
from xnat_prefect.services._renames import check_mapping, compile_pattern
from xnat_prefect.services._subject_ops import (
    merge_into,
    rename_with_mapping,
    rename_with_pattern,
)
from xnat_prefect.services.base import (
    BaseService,
    check_choice,
    check_limit,
    check_new_label,
    check_ref,
    columns_param,
)
from xnat_prefect.services.sessions import SessionService

__all__ = ["GENDERS", "SubjectHasExperimentsError", "SubjectService"]

logger = get_logger(__name__)

GENDERS = ("male", "female", "other", "unknown")


class SubjectHasExperimentsError(ConflictError, RuntimeError):
    """Refused to delete a subject that still has experiments (XNAT would delete them too).

    A :class:`~xnat_prefect.errors.ConflictError` (status 409, never retried) and, as the seed
    documents, a ``RuntimeError``.

    Args:
        message: What was refused and how to proceed.
        experiments: Accession IDs of the attached experiments.
        path: The subject URL.
    """

    def __init__(self, message: str, *, experiments: builtins.list[str], path: str) -> None:
        super().__init__(409, message, method="DELETE", path=path)
        self.experiments = experiments


class SubjectService(BaseService):
    """Service for XNAT subject operations.

    Example:
        ```python
        service = SubjectService(client)
        subject = service.create("STUDY1", "SUB001", gender="female", yob=1980)
        service.rename(subject.id, "PART001", project="STUDY1")
        ```
    """

    def list(
        self,
        project: str | None = None,
        limit: int | None = None,
        columns: builtins.list[str] | None = None,
    ) -> builtins.list[Subject]:
        """List subjects (``/data/projects/{P}/subjects``, or site-wide ``/data/subjects``).

        Project listings include subjects shared into the project (with their label there).

        Args:
            project: Filter by project ID.
            limit: Maximum number of results (sent as XNAT's ``limit``, also applied here).
            columns: Specific columns to retrieve (``ID`` is always added).

        Returns:
            List of Subject objects.

        Raises:
            ResourceNotFoundError: Unknown project.
            InvalidInputError: Bad limit or columns.

        Example:
            ```python
            SubjectService(client).list(project="STUDY1", columns=["label", "gender", "yob"])
            ```
        """
        limit = check_limit(limit)
        params = {"columns": columns_param(columns), "limit": limit}
        path = "/data/subjects" if project is None else f"{self.project_path(project)}/subjects"
        return Subject.from_rows(self.list_rows(path, params, limit=limit))

    def get(self, subject_id: str, project: str | None = None) -> Subject:
        """Get subject details (item document, ``format=json``).

        Args:
            subject_id: Subject ID or label.
            project: Project ID (required if using label).

        Returns:
            Subject object.

        Raises:
            ResourceNotFoundError: If subject not found.

        Example:
            ```python
            SubjectService(client).get("SUB001", project="STUDY1").yob
            ```
        """
        return Subject.model_validate(self.get_ref_fields("subject", subject_id, project))

    def _find(self, subject: str, project: str) -> Subject | None:
        try:
            return self.get(subject, project)
        except ResourceNotFoundError:
            return None

    def create(
        self,
        project: str,
        label: str,
        group: str | None = None,
        gender: str | None = None,
        yob: int | None = None,
    ) -> Subject:
        """Create a new subject (``PUT /data/projects/{P}/subjects/{label}`` → 201 + ID).

        XNAT's PUT would silently update a subject that already has this label, so the label is
        checked first.

        Args:
            project: Project ID.
            label: Subject label (letters, digits, ``_``, ``-``).
            group: Subject group.
            gender: Gender (male, female, other, unknown).
            yob: Year of birth.

        Returns:
            Created Subject object.

        Raises:
            ConflictError: The label already exists in the project.
            InvalidInputError: Bad label, gender or yob.
            ResourceNotFoundError: Unknown project.
            PermissionDeniedError: The user cannot create subjects in the project.

        Example:
            ```python
            SubjectService(client).create("STUDY1", "SUB001", group="control")
            ```
        """
        check_ref(project, "project")
        check_new_label(label, "label")
        sex = None if gender is None else check_choice(gender, "gender", GENDERS)
        if yob is not None and (isinstance(yob, bool) or not isinstance(yob, int) or yob < 1800):
            raise InvalidInputError(f"yob={yob!r} is not a year of birth; pass e.g. yob=1980")
        path = self.subject_path(label, project, "label")
        existing = self._find(label, project)
        if existing is not None:
            raise ConflictError(
                409,
                f"subject label {label!r} already exists in project {project!r} (ID "
                f"{existing.id}); XNAT would update it instead of creating one. Choose another "
                "label, or use get()/rename()",
                method="PUT",
                path=path,
            )
        params = {"group": group, "gender": sex, "yob": yob}
        response = self.client.put(path, params=params)
        new_id = response.text.strip()
        if response.status_code != 201:
            raise ConflictError(
                409,
                f"subject {label!r} appeared in project {project!r} while it was being created "
                f"(XNAT answered {response.status_code}, an update); check it with get()",
                method="PUT",
                path=path,
            )
        logger.info("Created subject %s in project %s", new_id, project)
        return self.get(new_id if new_id and " " not in new_id else label, project)

    def experiment_rows(self, project: str, subject_id: str) -> builtins.list[dict[str, str]]:
        """Raw rows of ``GET /data/projects/{P}/subjects/{S}/experiments``.

        Args:
            project: Project ID.
            subject_id: Subject accession ID (or label).

        Returns:
            The rows (``ID, project, date, xsiType, label, insert_date, URI``).
        """
        path = f"{self.subject_path(subject_id, project)}/experiments"
        return self.client.get_result_set(path)

    def delete(
        self,
        subject_id: str,
        project: str | None = None,
        remove_files: bool = False,
        force: bool = False,
    ) -> bool:
        """Delete a subject.

        By default, refuses to delete a subject that still has experiments attached (XNAT
        would cascade-delete the experiments). Pass force=True to override this safety check —
        but only do so after explicitly reassigning or archiving the experiments yourself.
        Deleting through a project the subject is only *shared* into removes the share only.

        Args:
            subject_id: Subject ID or label.
            project: Project ID (required when using a label).
            remove_files: Also remove files from filesystem.
            force: Skip the "subject has experiments" safety check. Use with extreme caution;
                cascade-deletes all attached experiments.

        Returns:
            True if successful.

        Raises:
            SubjectHasExperimentsError: The subject has experiments and ``force`` is False (a
                ``ConflictError`` and a ``RuntimeError``).
            ResourceNotFoundError: No such subject.
            PermissionDeniedError: The user may not delete (members cannot).

        Example:
            ```python
            SubjectService(client).delete("SUB001", project="STUDY1", remove_files=True)
            ```
        """
        subject = self.get(subject_id, project)
        scope = project or subject.project
        if not scope:
            raise UnexpectedResponseError(f"XNAT did not say which project owns {subject.id}")
        path = self.subject_path(subject.id, project)
        experiments = [row.get("ID", "") for row in self.experiment_rows(scope, subject.id)]
        if experiments and not force:
            shown = ", ".join(experiments[:10]) + (" ..." if len(experiments) > 10 else "")
            raise SubjectHasExperimentsError(
                f"subject {subject_id!r} in project {scope!r} has {len(experiments)} "
                f"experiment(s) ({shown}); deleting it would delete them too. Move them first "
                "(merge_subjects() or SessionService.share(..., primary=True)), or pass "
                "force=True to delete them with the subject",
                experiments=experiments,
                path=path,
            )
        if experiments:
            logger.warning(
                "Force-deleting subject %s with %d experiment(s)", subject.id, len(experiments)
            )
        self.client.delete(path, params={"removeFiles": "true" if remove_files else None})
        logger.info("Deleted subject %s from project %s", subject.id, scope)
        return True

    def rename(self, subject_id: str, new_label: str, project: str | None = None) -> Subject:
        """Rename a subject (``PUT .../subjects/{ID}?label=NEW``; 409 when NEW is taken).

        The subject must exist: XNAT's PUT on an unknown subject would create one.

        Args:
            subject_id: Current subject ID or label.
            new_label: New label.
            project: Project ID.

        Returns:
            Updated Subject object.

        Raises:
            ConflictError: ``new_label`` is already used in the project.
            ResourceNotFoundError: No such subject.
            InvalidInputError: Bad label.

        Example:
            ```python
            SubjectService(client).rename("SUB001", "PART001", project="STUDY1")
            ```
        """
        check_new_label(new_label, "new_label")
        subject = self.get(subject_id, project)
        if subject.label == new_label:
            return subject
        scope = project or subject.project
        path = self.subject_path(subject.id, scope)
        try:
            response = self.client.put(path, params={"label": new_label})
        except ConflictError as exc:
            raise ConflictError(
                409,
                f"cannot rename subject {subject_id!r} to {new_label!r} in project {scope!r}: "
                f"{exc.message}. Choose another label, or merge_subjects() to combine them",
                method=exc.method,
                path=exc.path,
            ) from exc
        if response.status_code == 201:
            raise UnexpectedResponseError(f"XNAT created a subject at {path} instead of renaming")
        return self.get(subject.id, scope)

    def rename_batch(
        self, project: str, mapping: Mapping[str, str], dry_run: bool = False
    ) -> RenameSummary:
        """Batch rename subjects using a mapping (every entry is validated before any change).

        Entries whose old label does not exist, whose new label equals the old one, or whose
        new label is already taken are *skipped* (with the reason); failed renames are
        *errors*. Entries are applied in mapping order.

        Args:
            project: Project ID.
            mapping: Dict of old_label -> new_label.
            dry_run: Preview changes without applying.

        Returns:
            :class:`RenameSummary` with renamed, skipped, errors.

        Raises:
            InvalidInputError: A label in the mapping is unusable (nothing is changed).
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            summary = service.rename_batch("STUDY1", {"S1": "P001", "S2": "P002"}, dry_run=True)
            ```
        """
        check_ref(project, "project")
        return rename_with_mapping(self, project, check_mapping(mapping), dry_run=dry_run)

    def rename_pattern(
        self,
        project: str,
        match_pattern: str,
        to_template: str,
        dry_run: bool = False,
        merge: bool = False,
    ) -> RenameSummary:
        r"""Rename subjects matching a pattern.

        ``match_pattern`` must match the WHOLE label (``re.fullmatch``); ``{1}``, ``{2}``... in
        ``to_template`` are its groups (``{0}`` the whole label). Labels are processed in
        sorted order. A new label that already exists is skipped, or with ``merge=True`` the
        subject is merged into it (:meth:`merge_subjects`). Non-matching subjects are not
        listed in the summary.

        Args:
            project: Project ID.
            match_pattern: Regex pattern with capture groups.
            to_template: Template using {1}, {2} for groups.
            dry_run: Preview changes without applying.
            merge: Allow merging into existing subjects.

        Returns:
            :class:`RenameSummary` with renamed, merged, skipped, errors.

        Raises:
            InvalidInputError: Bad regex or template (nothing is changed).
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            service.rename_pattern("STUDY1", r"SUB(\d+)", "PART{1}", merge=True)
            ```
        """
        check_ref(project, "project")
        regex = compile_pattern(match_pattern, to_template)
        return rename_with_pattern(self, project, regex, to_template, dry_run=dry_run, merge=merge)

    def get_sessions(self, subject_id: str, project: str | None = None) -> builtins.list[Session]:
        """Get sessions for a subject (``/data/projects/{P}/subjects/{S}/experiments``).

        Args:
            subject_id: Subject ID (or label with ``project``).
            project: Project ID (default: the subject's own project).

        Returns:
            List of :class:`Session` (they also read like the seed's dicts).

        Raises:
            ResourceNotFoundError: No such subject.

        Example:
            ```python
            SubjectService(client).get_sessions("SUB001", project="STUDY1")
            ```
        """
        if project is None:
            project = self.get(subject_id).project
            if not project:
                raise UnexpectedResponseError(f"XNAT did not say which project owns {subject_id}")
        return SessionService(self.client).list(project=project, subject=subject_id)

    def merge_subjects(
        self, project: str, source_label: str, target_label: str, dry_run: bool = False
    ) -> MergeSummary:
        """Merge source subject into target subject.

        This moves all experiments/sessions from the source subject to the target subject
        (``PUT /data/projects/{P}/subjects/{TARGET}/experiments/{E}``, XNAT's subject-scoped
        reassign), then deletes the empty source subject. The source is kept (with a WARNING)
        when it still owns subject-level resources. In a dry run nothing changes and
        ``experiments``/``experiments_moved`` describe what would move.

        Use this when renaming would result in a duplicate - the experiments are consolidated
        under the target subject.

        Args:
            project: Project ID.
            source_label: Source subject label (will be deleted).
            target_label: Target subject label (will receive experiments).
            dry_run: Preview changes without applying.

        Returns:
            :class:`MergeSummary` with experiments_moved, source_deleted, experiments.

        Raises:
            ResourceNotFoundError: If source or target not found.
            InvalidInputError: Source and target are the same, or the source (or one of its
                experiments) belongs to another project.
            OperationError: A move failed (the summary of what moved is in the message).

        Example:
            ```python
            SubjectService(client).merge_subjects("STUDY1", "SUB001_dup", "SUB001")
            ```
        """
        return merge_into(self, project, source_label, target_label, dry_run=dry_run)
