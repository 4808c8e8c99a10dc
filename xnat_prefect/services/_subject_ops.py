"""Multi-step subject operations behind ``SubjectService``: batch renames and merges.

Kept apart from :mod:`xnat_prefect.services.subjects` only to keep modules small; the public
entry points (and their documentation) are the ``SubjectService`` methods.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import (
    InvalidInputError,
    OperationError,
    UnexpectedResponseError,
    XNATError,
)
from xnat_prefect.models.summaries import MergeSummary, RenameSummary
from xnat_prefect.services._renames import expand_template, is_valid_label
from xnat_prefect.services._validation import check_ref, segment

if TYPE_CHECKING:
    from xnat_prefect.services.subjects import SubjectService

__all__ = ["merge_into", "rename_with_mapping", "rename_with_pattern"]

logger = get_logger(__name__)


def _labels(service: SubjectService, project: str) -> dict[str, str]:
    return {s.label: s.id for s in service.list(project=project) if s.label}


def rename_with_mapping(
    service: SubjectService, project: str, plan: dict[str, str], *, dry_run: bool
) -> RenameSummary:
    """Apply a checked ``old -> new`` mapping (see ``SubjectService.rename_batch``).

    Args:
        service: The subject service.
        project: Project ID.
        plan: Validated mapping.
        dry_run: Only report.

    Returns:
        The summary.
    """
    summary = RenameSummary(dry_run=dry_run)
    if not plan:
        return summary
    labels = _labels(service, project)
    for old, new in plan.items():
        if old == new:
            summary.skipped[old] = "new label is the same as the old one"
        elif old not in labels:
            extra = f" ({new!r} exists: already renamed?)" if new in labels else ""
            summary.skipped[old] = f"no subject with this label in {project!r}{extra}"
        elif new in labels:
            summary.skipped[old] = f"target label {new!r} already exists; use merge_subjects()"
        else:
            try:
                if not dry_run:
                    service.rename(labels[old], new, project)
            except XNATError as exc:
                summary.errors[old] = str(exc)
                continue
            summary.renamed[old] = new
            labels[new] = labels.pop(old)
    return summary


def rename_with_pattern(
    service: SubjectService,
    project: str,
    regex: re.Pattern[str],
    to_template: str,
    *,
    dry_run: bool,
    merge: bool,
) -> RenameSummary:
    """Rename every label that fully matches ``regex`` (see ``SubjectService.rename_pattern``).

    Args:
        service: The subject service.
        project: Project ID.
        regex: Compiled, checked pattern.
        to_template: Checked template.
        dry_run: Only report.
        merge: Merge into existing targets instead of skipping them.

    Returns:
        The summary.
    """
    labels = _labels(service, project)
    planned: set[str] = set()  # targets that exist only because of an earlier (dry-run) rename
    summary = RenameSummary(dry_run=dry_run)
    for old in sorted(labels):
        match = regex.fullmatch(old)
        if match is None:
            continue
        new = expand_template(match, to_template)
        if new == old:
            summary.skipped[old] = "new label is the same as the old one"
        elif not is_valid_label(new):
            summary.errors[old] = f"template gives {new!r}; XNAT labels allow [A-Za-z0-9_-]"
        elif new in labels and not merge:
            summary.skipped[old] = f"target label {new!r} exists (pass merge=True to merge)"
        else:
            try:
                if new in labels and not (dry_run and new in planned):
                    service.merge_subjects(project, old, new, dry_run=dry_run)
                elif new not in labels and not dry_run:
                    service.rename(labels[old], new, project)
            except XNATError as exc:
                summary.errors[old] = str(exc)
                continue
            if new in labels:
                summary.merged[old] = new
                labels.pop(old)
            else:
                summary.renamed[old] = new
                labels[new] = labels.pop(old)
                planned.add(new)
    return summary


def merge_into(
    service: SubjectService,
    project: str,
    source_label: str,
    target_label: str,
    *,
    dry_run: bool,
) -> MergeSummary:
    """Move every experiment of source to target, then delete the emptied source.

    See ``SubjectService.merge_subjects`` for the contract.

    Args:
        service: The subject service.
        project: Project ID.
        source_label: Source subject label.
        target_label: Target subject label.
        dry_run: Only report.

    Returns:
        The summary.

    Raises:
        ResourceNotFoundError: Source or target missing.
        InvalidInputError: Same subject, or source/experiments owned by another project.
        OperationError: A move failed, or XNAT still lists experiments under the source.
    """
    check_ref(project, "project")
    check_ref(source_label, "source_label")
    check_ref(target_label, "target_label")
    if source_label == target_label:
        raise InvalidInputError("source_label and target_label are the same; nothing to merge")
    source = service.get(source_label, project)
    target = service.get(target_label, project)
    if source.id == target.id:
        raise InvalidInputError(f"{source_label!r} and {target_label!r} are one subject")
    if source.project and source.project != project:
        raise InvalidInputError(
            f"subject {source_label!r} is only shared into {project!r} (it belongs to "
            f"{source.project!r}); merge it in its own project"
        )
    rows = service.experiment_rows(project, source.id)
    foreign = [r.get("ID", "") for r in rows if r.get("project") not in (None, "", project)]
    if foreign:
        raise InvalidInputError(
            f"experiments {', '.join(foreign)} of {source_label!r} belong to other projects; "
            "move or unshare them in their own projects first"
        )
    ids = [r.get("ID", "") for r in rows]
    summary = MergeSummary(
        source=source_label,
        target=target_label,
        experiments=ids,
        experiments_moved=len(ids),
        dry_run=dry_run,
    )
    if dry_run:
        return summary
    moved: list[str] = []
    target_path = service.subject_path(target.id, project)
    for row in rows:
        url = f"{target_path}/experiments/{segment(row.get('ID', ''), 'experiment ID')}"
        try:
            response = service.client.put(url, params={"xsiType": row.get("xsiType") or None})
            if response.status_code == 201:
                raise UnexpectedResponseError(f"XNAT created a new experiment at {url}")
        except XNATError as exc:
            raise OperationError(
                f"merge of {source_label!r} into {target_label!r} stopped after moving "
                f"{len(moved)} of {len(ids)} experiment(s) ({', '.join(moved) or 'none'}): "
                f"moving {row.get('ID')} failed: {exc}. The source subject was kept; fix the "
                "cause and run merge_subjects() again",
                target=row.get("ID"),
            ) from exc
        moved.append(row.get("ID", ""))
    summary.experiments, summary.experiments_moved = moved, len(moved)
    source_path = service.subject_path(source.id, project)
    left = service.experiment_rows(project, source.id)
    if left:
        raise OperationError(
            f"after moving {len(moved)} experiment(s), XNAT still lists {len(left)} under "
            f"{source_label!r}; the source subject was kept",
            target=source.id,
        )
    if service.client.get_result_set(f"{source_path}/resources"):
        logger.warning(
            "Subject %s has subject-level resources; kept it after moving its experiments",
            source.id,
        )
        return summary
    service.client.delete(source_path)
    summary.source_deleted = True
    logger.info("Merged subject %s into %s (%d experiments)", source.id, target.id, len(moved))
    return summary
