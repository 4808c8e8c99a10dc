"""``archive_prearchive_sessions``: archive a project's READY prearchive sessions, safely.

* Only READY sessions whose last change is at least ``min_age_minutes`` old are archived: a
  session still RECEIVING, BUILDING, queued or being archived is never touched (XNAT may still
  be adding files), and each session's status is read again right before its archive.
* CONFLICT (exists in the archive) and ERROR sessions are reported, not touched.
* Subject and session labels can be changed on the way: exact ``subject_map``/``label_map``
  first, then the first matching :class:`LabelRule` (a regular expression on the whole label).
* One task per session, each holding one slot of the server's ``api`` limit.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped
from pydantic import BaseModel, ConfigDict, field_validator

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import ArchiveFailed, InvalidInputError, XNATError
from xnat_prefect.flows._common import (
    artifact_key,
    emit_session_archived,
    flow_task_runner,
    resolve_credentials,
    run_logger,
)
from xnat_prefect.flows.results import PrearchiveArchiveReport, PrearchiveItem
from xnat_prefect.models.prearchive import PrearchiveSession
from xnat_prefect.services.prearchive import PrearchiveService
from xnat_prefect.tasks._common import retry_on_transient, xnat_client
from xnat_prefect.tasks.limits import xnat_slot

__all__ = ["LabelRule", "archive_prearchive_sessions", "classify_sessions"]

OverwriteMode = Literal["none", "append", "delete"]


class LabelRule(BaseModel):
    r"""Rename rule: when ``pattern`` matches the whole label, use ``replacement`` instead.

    Attributes:
        field: ``subject`` or ``session``.
        pattern: Regular expression matched against the whole label.
        replacement: Template with ``\1`` / ``\g<name>`` groups.

    Example:
        ```python
        LabelRule(field="subject", pattern=r"sub-(\d+)", replacement=r"SUBJ\1")
        ```
    """

    model_config = ConfigDict(extra="forbid")

    field: Literal["subject", "session"]
    pattern: str
    replacement: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a valid regular expression: {exc}") from exc
        return value


def _relabel(
    value: str | None, exact: dict[str, str], rules: list[LabelRule], field: str
) -> str | None:
    if value is None:
        return None
    if value in exact:
        return exact[value]
    for rule in rules:
        if rule.field != field:
            continue
        match = re.fullmatch(rule.pattern, value)
        if match:
            return match.expand(rule.replacement)
    return value


def _age_minutes(row: PrearchiveSession, now: datetime) -> float | None:
    when = row.lastmod or row.upload_date
    if when is None:
        return None
    current = now if when.tzinfo is None else now.astimezone(when.tzinfo)
    if when.tzinfo is None and current.tzinfo is not None:
        current = current.replace(tzinfo=None)
    return max(0.0, (current - when) / timedelta(minutes=1))


def _item(row: PrearchiveSession, **fields: Any) -> PrearchiveItem:
    return PrearchiveItem(
        project=row.project or "",
        timestamp=row.timestamp or "",
        folder=row.folder_name or "",
        session_label=row.name,
        subject=row.subject,
        status=str(row.status) if row.status is not None else None,
        **fields,
    )


def classify_sessions(
    rows: list[PrearchiveSession],
    *,
    min_age_minutes: float,
    subject_map: dict[str, str],
    label_map: dict[str, str],
    rules: list[LabelRule],
    now: datetime | None = None,
) -> tuple[list[PrearchiveItem], PrearchiveArchiveReport]:
    """Sort prearchive sessions into "to archive" and the report's other lists.

    Args:
        rows: The project's prearchive sessions.
        min_age_minutes: READY sessions changed more recently than this are skipped.
        subject_map: Exact subject relabels.
        label_map: Exact session relabels.
        rules: Regex relabel rules.
        now: Current server-local time (default: ``datetime.now()``).

    Returns:
        ``(to_archive, report)``; the report has conflicts, errors and skipped filled.

    Example:
        ```python
        todo, report = classify_sessions(rows, min_age_minutes=10, subject_map={},
                                         label_map={}, rules=[])
        ```
    """
    current = now or datetime.now()
    report = PrearchiveArchiveReport(project=(rows[0].project or "") if rows else "")
    todo: list[PrearchiveItem] = []
    for row in rows:
        status = str(row.status)
        age = _age_minutes(row, current)
        if status == "CONFLICT":
            report.conflicts.append(_item(row, age_minutes=age, message="exists in the archive"))
        elif status == "ERROR":
            report.errors.append(_item(row, age_minutes=age, message="XNAT failed to build it"))
        elif status != "READY":
            report.skipped.append(_item(row, age_minutes=age, message=f"still {status}"))
        elif age is not None and age < min_age_minutes:
            message = f"changed {age:.1f} min ago (min_age_minutes={min_age_minutes:g})"
            report.skipped.append(_item(row, age_minutes=age, message=message))
        else:
            todo.append(
                _item(
                    row,
                    age_minutes=age,
                    target_subject=_relabel(row.subject, subject_map, rules, "subject"),
                    target_label=_relabel(row.name, label_map, rules, "session"),
                )
            )
    return todo, report


@task(
    name="List prearchive sessions",
    task_run_name="list-prearchive-{project}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def list_project_prearchive(credentials: XNATCredentials, project: str) -> list[PrearchiveSession]:
    """The project's prearchive sessions.

    Args:
        credentials: The XNAT credentials block.
        project: Project ID.

    Returns:
        The sessions.

    Example:
        ```python
        rows = list_project_prearchive(XNATCredentials.load("BLOCK_NAME"), "P1")
        ```
    """
    with xnat_client(credentials) as client:
        return PrearchiveService(client).list(project)


@task(
    name="Archive a prearchive session",
    task_run_name="archive-{item.project}-{item.folder}",
    cache_policy=NO_CACHE,
)
def archive_ready_session(
    credentials: XNATCredentials, item: PrearchiveItem, overwrite: OverwriteMode
) -> PrearchiveItem:
    """Archive one session if it is still READY (never retried blindly: not idempotent).

    Args:
        credentials: The XNAT credentials block.
        item: The session and its target labels.
        overwrite: ``none``, ``append`` or ``delete``.

    Returns:
        The item with ``experiment_id`` (archived), or with ``message`` and its current
        ``status`` when it is no longer READY (skipped).

    Raises:
        ArchiveFailed: XNAT refused the archive (or answered 200 with an error text), or the
            session could not be read; ``target`` is the prearchive ``src``, the message names
            project, timestamp and folder (other XNAT errors are the ``__cause__``).

    Example:
        ```python
        archive_ready_session(XNATCredentials.load("BLOCK_NAME"), item, "none")
        ```
    """
    logger = run_logger()
    src = f"/prearchive/projects/{item.project}/{item.timestamp}/{item.folder}"
    try:
        with xnat_slot(credentials.server_key, "api"), xnat_client(credentials) as client:
            service = PrearchiveService(client)
            current = service.get(item.project, item.timestamp, item.folder)
            if str(current.status) != "READY":
                return item.model_copy(
                    update={"status": str(current.status), "message": f"now {current.status}"}
                )
            result = service.archive(
                item.project,
                item.timestamp,
                item.folder,
                subject=item.target_subject if item.target_subject != item.subject else None,
                experiment_label=(
                    item.target_label if item.target_label != item.session_label else None
                ),
                overwrite=overwrite,
            )
    except XNATError as exc:
        logger.warning("archiving %s/%s failed: %s", item.timestamp, item.folder, exc)
        if isinstance(exc, ArchiveFailed):
            raise
        raise ArchiveFailed(
            f"archiving prearchive session {src} failed: {exc}", target=src, status=item.status
        ) from exc
    logger.info("archived %s/%s as %s", item.timestamp, item.folder, result.experiment_id)
    return item.model_copy(
        update={
            "status": "ARCHIVED",
            "experiment_id": result.experiment_id,
            "target_subject": result.subject,
            "target_label": result.experiment_label,
        }
    )


@flow(name="xnat-archive-prearchive", task_runner=flow_task_runner(4), validate_parameters=True)
def archive_prearchive_sessions(
    credentials: XNATCredentials | str,
    project: str,
    *,
    min_age_minutes: float = 10.0,
    subject_map: dict[str, str] | None = None,
    label_map: dict[str, str] | None = None,
    rules: list[LabelRule] | None = None,
    overwrite: OverwriteMode = "none",
    max_workers: int = 4,
    dry_run: bool = False,
    emit_events: bool = True,
    raise_on_failure: bool = True,
) -> PrearchiveArchiveReport:
    """Archive the READY prearchive sessions of a project; report CONFLICT/ERROR ones.

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        project: Project ID.
        min_age_minutes: Leave READY sessions changed more recently than this.
        subject_map: Exact subject relabels (prearchive label -> archive label).
        label_map: Exact session relabels.
        rules: Regex relabel rules, applied when no exact map entry matches.
        overwrite: ``none``, ``append`` or ``delete`` when the session exists in the archive.
        max_workers: Sessions archived at once by this run.
        dry_run: Only report what would be archived.
        emit_events: Emit ``xnat.session.archived`` per archived session.
        raise_on_failure: Raise the first failed archive once every session was tried and the
            report artifact is written; else only report failures (``report.failed``).

    Returns:
        :class:`~xnat_prefect.flows.results.PrearchiveArchiveReport`.

    Raises:
        ArchiveFailed: An archive failed (``raise_on_failure``): the first one, ``target`` =
            its prearchive ``src``.
        InvalidInputError: Bad parameters.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import archive_prearchive_sessions

        report = archive_prearchive_sessions(XNATCredentials.load("BLOCK_NAME"), "P1",
                                             min_age_minutes=30, subject_map={"sub01": "S01"})
        ```
    """
    started = time.monotonic()
    logger = run_logger()
    creds = resolve_credentials(credentials)
    if isinstance(max_workers, bool) or max_workers < 1 or min_age_minutes < 0:
        raise InvalidInputError("max_workers must be >= 1 and min_age_minutes >= 0")
    rows = list_project_prearchive(creds, project)
    todo, report = classify_sessions(
        rows,
        min_age_minutes=min_age_minutes,
        subject_map=subject_map or {},
        label_map=label_map or {},
        rules=rules or [],
    )
    report.project, report.dry_run = project, dry_run
    logger.info(
        "%d READY session(s) to archive; %d conflict, %d error, %d skipped",
        len(todo),
        len(report.conflicts),
        len(report.errors),
        len(report.skipped),
    )
    failures: list[BaseException] = []
    if dry_run or not todo:
        report.archived = todo if dry_run else []
    else:
        runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
            max_workers=min(max_workers, len(todo))
        )
        with runner:
            futures = runner.map(
                archive_ready_session,
                {"credentials": unmapped(creds), "item": todo, "overwrite": unmapped(overwrite)},
            )
            for wanted, future in zip(todo, futures, strict=True):
                try:
                    item = PrearchiveItem.model_validate(future.result())
                except Exception as exc:  # every session is tried; the report lists them all
                    failures.append(exc)
                    report.failed.append(wanted.model_copy(update={"message": str(exc)}))
                    continue
                if item.status == "ARCHIVED":
                    report.archived.append(item)
                else:
                    report.skipped.append(item)
    if emit_events and not dry_run:
        for item in report.archived:
            if item.experiment_id:
                emit_session_archived(
                    server=creds.server_key,
                    experiment_id=item.experiment_id,
                    project=project,
                    subject_id=None,
                    subject_label=item.target_subject,
                    session_label=item.target_label,
                    details={"archived_by": "prearchive-flow"},
                )
    report.duration_seconds = round(time.monotonic() - started, 3)
    _artifact(report)
    if failures and raise_on_failure:
        logger.error("%d of %d archive(s) failed", len(failures), len(todo))
        raise failures[0]
    return report


def _artifact(report: PrearchiveArchiveReport) -> None:
    rows: list[dict[str, Any]] = []
    for outcome, items in (
        ("archived", report.archived),
        ("conflict", report.conflicts),
        ("error", report.errors),
        ("failed", report.failed),
        ("skipped", report.skipped),
    ):
        for item in items:
            rows.append(
                {
                    "outcome": "would archive"
                    if report.dry_run and outcome == "archived"
                    else outcome,
                    "prearchive": f"{item.timestamp}/{item.folder}",
                    "status": item.status,
                    "target": f"{item.target_subject or '-'}/{item.target_label or '-'}",
                    "experiment": item.experiment_id or "-",
                    "message": item.message or "",
                }
            )
    create_table_artifact(
        rows or [{"outcome": "nothing to do"}],
        key=artifact_key("xnat-prearchive", report.project),
        description=(
            f"**Prearchive of {report.project}**: {len(report.archived)} archived, "
            f"{len(report.conflicts)} conflict, {len(report.errors)} error, "
            f"{len(report.failed)} failed, {len(report.skipped)} skipped"
        ),
    )
