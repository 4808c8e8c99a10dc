"""``watch_archive``: emit one ``xnat.session.archived`` event per newly archived session.

Meant for a schedule (every few minutes). The watermark — the newest ``insert_date`` seen, plus
the IDs archived at that very instant (XNAT dates have a coarse resolution) — is kept in a
Prefect Variable per server and project, ``xnat_watermark_<server>_<project>``. Each run lists
the project's sessions, emits an event for every session archived after the watermark (oldest
first), then advances the watermark. The first run only records the watermark unless
``backfill``. Deployments trigger downstream work (pipelines, downloads) on the event.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.flows._common import (
    artifact_key,
    emit_session_archived,
    flow_task_runner,
    resolve_credentials,
    run_logger,
    variable_name,
)
from xnat_prefect.flows.results import ArchivedSession, WatchResult
from xnat_prefect.services import SessionService
from xnat_prefect.tasks._common import retry_on_transient, xnat_client

__all__ = ["new_sessions_since", "watch_archive", "watermark_variable"]

COLUMNS = ["insert_date", "label", "subject_ID", "subject_label"]


def watermark_variable(server_key: str, project: str) -> str:
    """Name of the Prefect Variable holding a project's watermark.

    Args:
        server_key: The server's ``host:port``.
        project: Project ID.

    Returns:
        ``xnat_watermark_<server>_<project>`` (lower case, unsafe characters replaced).

    Example:
        ```python
        watermark_variable("xnat.example.org", "P1")  # 'xnat_watermark_xnat_example_org_p1'
        ```
    """
    return variable_name("xnat_watermark", server_key, project)


@task(
    name="List archived sessions",
    task_run_name="list-archived-{project}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def list_archived_sessions(credentials: XNATCredentials, project: str) -> list[ArchivedSession]:
    """The project's archived sessions, oldest first (by ``insert_date``).

    Args:
        credentials: The XNAT credentials block.
        project: Project ID.

    Returns:
        The sessions (shared-in ones are listed under their owning project).

    Example:
        ```python
        sessions = list_archived_sessions(XNATCredentials.load("BLOCK_NAME"), "P1")
        ```
    """
    with xnat_client(credentials) as client:
        rows = SessionService(client).list(project=project, columns=COLUMNS)
    found = [
        ArchivedSession(
            experiment_id=row.id,
            project=row.project or project,
            subject_id=row.subject_id,
            subject_label=row.subject_label,
            session_label=row.label,
            insert_date=row.insert_date.isoformat() if row.insert_date else None,
        )
        for row in rows
        if (row.project or project) == project
    ]
    return sorted(found, key=lambda s: (s.insert_date or "", s.experiment_id))


def new_sessions_since(
    sessions: list[ArchivedSession], watermark: dict[str, Any] | None
) -> tuple[list[ArchivedSession], dict[str, Any]]:
    """Sessions after the watermark, and the advanced watermark.

    Args:
        sessions: Archived sessions, oldest first.
        watermark: ``{"insert_date": iso, "ids": [...]}`` or None (first run).

    Returns:
        ``(new sessions, new watermark)``. Sessions without an ``insert_date`` are new once
        (their IDs are kept in the watermark).

    Example:
        ```python
        new, mark = new_sessions_since(sessions, {"insert_date": "2024-01-31T14:05", "ids": []})
        ```
    """
    mark = str((watermark or {}).get("insert_date") or "")
    seen = set((watermark or {}).get("ids") or [])
    undated = set((watermark or {}).get("undated") or [])
    fresh = []
    for item in sessions:
        when = item.insert_date or ""
        if not when:
            if item.experiment_id not in undated:
                fresh.append(item)
            continue
        if when > mark or (when == mark and item.experiment_id not in seen):
            fresh.append(item)
    dated = [s for s in sessions if s.insert_date]
    newest = max((s.insert_date or "" for s in dated), default=mark)
    newest = max(newest, mark)
    at_newest = {s.experiment_id for s in dated if s.insert_date == newest}
    ids = sorted(at_newest | (seen if newest == mark else set()))
    all_undated = sorted(undated | {s.experiment_id for s in sessions if not s.insert_date})
    return fresh, {"insert_date": newest or None, "ids": ids, "undated": all_undated}


def _stored(name: str) -> dict[str, Any] | None:
    value = Variable.get(name, default=None)
    return value if isinstance(value, dict) else None


@flow(name="xnat-watch-archive", task_runner=flow_task_runner(2), validate_parameters=True)
def watch_archive(
    credentials: XNATCredentials | str,
    project: str,
    *,
    backfill: bool = False,
    max_events: int = 1000,
) -> WatchResult:
    """Emit ``xnat.session.archived`` for each session archived since the last run.

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        project: Project ID to watch.
        backfill: On the first run, emit events for every session already archived (default:
            only record the watermark).
        max_events: Emit at most this many events per run (the oldest first); the watermark
            then stops at the last one emitted and the next run continues.

    Returns:
        :class:`~xnat_prefect.flows.results.WatchResult`.

    Raises:
        InvalidInputError: Bad parameters.

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import watch_archive

        watch_archive(XNATCredentials.load("BLOCK_NAME"), "P1")
        ```
    """
    logger = run_logger()
    creds = resolve_credentials(credentials)
    if isinstance(max_events, bool) or max_events < 1:
        raise InvalidInputError(f"max_events must be an integer >= 1, got {max_events!r}")
    name = watermark_variable(creds.server_key, project)
    previous = _stored(name)
    sessions = list_archived_sessions(creds, project)
    fresh, advanced = new_sessions_since(sessions, previous)
    baseline = previous is None and not backfill
    if baseline:
        fresh = []
    else:
        fresh = fresh[:max_events]
        _, advanced = new_sessions_since(fresh, previous)
    for item in fresh:
        emit_session_archived(
            server=creds.server_key,
            experiment_id=item.experiment_id,
            project=item.project,
            subject_id=item.subject_id,
            subject_label=item.subject_label,
            session_label=item.session_label,
            details={"insert_date": item.insert_date, "source": "watcher"},
        )
    Variable.set(name, advanced, overwrite=True)
    result = WatchResult(
        server=creds.server_key,
        project=project,
        variable=name,
        previous_watermark=(previous or {}).get("insert_date"),
        watermark=advanced.get("insert_date"),
        new_sessions=fresh,
        events_emitted=len(fresh),
        baseline_only=baseline,
    )
    create_table_artifact(
        [
            {
                "experiment": s.experiment_id,
                "subject": s.subject_label,
                "session": s.session_label,
                "archived": s.insert_date,
            }
            for s in fresh
        ]
        or [{"experiment": "-", "archived": "no new session"}],
        key=artifact_key("xnat-watch", project),
        description=(
            f"**Archive watch of {project}**: {len(fresh)} new session(s); watermark "
            f"{result.previous_watermark or '-'} -> {result.watermark or '-'}"
            + (" (first run: watermark recorded)" if baseline else "")
        ),
    )
    logger.info("%d new session(s) in %s; watermark %s", len(fresh), project, result.watermark)
    return result
