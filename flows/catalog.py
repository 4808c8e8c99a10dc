"""``refresh_catalogs_flow``: refresh the resource catalogs of a project's experiments.

XNAT's ``POST /data/services/refresh/catalog`` (``xnat-rest.md`` §11) re-reads the files on disk
(``append``), drops entries whose files are gone (``delete``), fills missing MD5s
(``checksum``) and recomputes counts and sizes (``populateStats``); with no option, all of them.
Experiments are refreshed in batches, one Prefect task per batch; each batch refreshes its
experiments one after the other while holding one slot of the server's ``catalog`` limit, so
at most that many refreshes run against the server at once.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import InvalidInputError, OperationError
from xnat_prefect.flows._common import (
    ProgressReporter,
    artifact_key,
    flow_task_runner,
    resolve_credentials,
    run_logger,
)
from xnat_prefect.flows.results import CatalogRefreshResult
from xnat_prefect.models.summaries import BatchSummary
from xnat_prefect.services import SessionService
from xnat_prefect.services.admin import AdminService
from xnat_prefect.tasks._common import retry_on_transient, xnat_client
from xnat_prefect.tasks.limits import xnat_slot

__all__ = ["refresh_catalogs_flow"]

RefreshOption = Literal["append", "checksum", "delete", "populateStats"]


@task(
    name="List a project's experiments",
    task_run_name="list-experiments-{project}",
    retries=2,
    retry_delay_seconds=[2.0, 10.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def list_experiment_ids(credentials: XNATCredentials, project: str) -> list[str]:
    """Accession IDs of the project's experiments.

    Args:
        credentials: The XNAT credentials block.
        project: Project ID.

    Returns:
        The IDs.

    Example:
        ```python
        ids = list_experiment_ids(XNATCredentials.load("BLOCK_NAME"), "P1")
        ```
    """
    with xnat_client(credentials) as client:
        return [s.id for s in SessionService(client).list(project=project)]


@task(
    name="Refresh a batch of catalogs",
    task_run_name="refresh-catalogs-{project}-batch-{number}",
    retries=2,
    retry_delay_seconds=[5.0, 30.0],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)
def refresh_catalog_batch(
    credentials: XNATCredentials,
    project: str,
    number: int,
    experiments: list[str],
    options: list[str] | None,
    progress: ProgressReporter | None = None,
) -> BatchSummary:
    """Refresh the catalogs of some experiments, one at a time, holding one ``catalog`` slot.

    The refresh is a reconciliation: safe to repeat, so transient failures are retried.

    Args:
        credentials: The XNAT credentials block.
        project: Project ID.
        number: Batch number (for the run name).
        experiments: Experiment IDs.
        options: Refresh operations (None: all).
        progress: Progress artifact to advance per experiment.

    Returns:
        ``succeeded`` IDs and ``failed`` ID -> reason.

    Example:
        ```python
        refresh_catalog_batch(XNATCredentials.load("BLOCK_NAME"), "P1", 1,
                              ["XNAT_E00001"], ["append"])
        ```
    """

    def advance(current: int, total: int, experiment_id: str) -> None:
        if progress is not None:
            progress.advance(1)

    with xnat_slot(credentials.server_key, "catalog"), xnat_client(credentials) as client:
        summary = AdminService(client).refresh_catalogs(
            project,
            experiments=experiments,
            options=options,
            parallel=False,
            progress_callback=advance,
        )
    run_logger().info(
        "batch %d: %d refreshed, %d failed", number, len(summary.succeeded), len(summary.failed)
    )
    return summary


@flow(name="xnat-refresh-catalogs", task_runner=flow_task_runner(4), validate_parameters=True)
def refresh_catalogs_flow(
    credentials: XNATCredentials | str,
    project: str,
    *,
    experiments: list[str] | None = None,
    options: list[RefreshOption] | None = None,
    batch_size: int = 20,
    max_workers: int = 4,
    raise_on_failure: bool = False,
) -> CatalogRefreshResult:
    """Refresh the catalogs of a project's experiments (all, or the ones given).

    Args:
        credentials: ``XNATCredentials`` block or the name of a saved one.
        project: Project ID.
        experiments: Experiment IDs (or labels); default: every experiment of the project.
        options: ``append``, ``checksum``, ``delete``, ``populateStats`` (default: all).
        batch_size: Experiments per task.
        max_workers: Batches run at once by this run (the ``catalog`` limit applies on top).
        raise_on_failure: Raise when an experiment failed (default: report it).

    Returns:
        :class:`~xnat_prefect.flows.results.CatalogRefreshResult`.

    Raises:
        InvalidInputError: Bad parameters.
        OperationError: Experiments failed (``raise_on_failure`` only).

    Example:
        ```python
        from xnat_prefect.blocks import XNATCredentials
        from xnat_prefect.flows import refresh_catalogs_flow

        result = refresh_catalogs_flow(XNATCredentials.load("BLOCK_NAME"), "P1",
                                       options=["append", "delete"])
        ```
    """
    started = time.monotonic()
    logger = run_logger()
    creds = resolve_credentials(credentials)
    for name, value in (("batch_size", batch_size), ("max_workers", max_workers)):
        if isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    targets = list(experiments) if experiments else list_experiment_ids(creds, project)
    batches = [targets[i : i + batch_size] for i in range(0, len(targets), batch_size)]
    result = CatalogRefreshResult(
        project=project, options=list(options or []), experiments=len(targets)
    )
    if batches:
        progress = ProgressReporter(
            artifact_key("xnat-catalog-refresh", project),
            total=len(targets),
            description=f"Refreshing the catalogs of {len(targets)} experiment(s) of {project}",
        )
        runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(
            max_workers=min(max_workers, len(batches))
        )
        with runner:
            futures = runner.map(
                refresh_catalog_batch,
                {
                    "credentials": unmapped(creds),
                    "project": unmapped(project),
                    "number": list(range(1, len(batches) + 1)),
                    "experiments": batches,
                    "options": unmapped(list(options) if options else None),
                    "progress": unmapped(progress),
                },
            )
            for batch, future in zip(batches, futures, strict=True):
                try:
                    summary = BatchSummary.model_validate(future.result())
                except Exception as exc:
                    result.failed.update({e: str(exc) for e in batch})
                    continue
                result.refreshed.extend(summary.succeeded)
                result.failed.update(summary.failed)
        progress.finish()
    result.batches = len(batches)
    result.duration_seconds = round(time.monotonic() - started, 3)
    create_table_artifact(
        [{"experiment": e, "outcome": "refreshed", "reason": ""} for e in result.refreshed]
        + [{"experiment": e, "outcome": "failed", "reason": r} for e, r in result.failed.items()]
        or [{"experiment": "-", "outcome": "nothing to refresh", "reason": ""}],
        key=artifact_key("xnat-catalog-refresh-report", project),
        description=(
            f"**Catalog refresh of {project}** ({', '.join(result.options) or 'all options'}): "
            f"{len(result.refreshed)} refreshed, {len(result.failed)} failed"
        ),
    )
    logger.info("%d refreshed, %d failed", len(result.refreshed), len(result.failed))
    if result.failed and raise_on_failure:
        raise OperationError(
            f"{len(result.failed)} experiment(s) of {project} could not be refreshed: "
            + "; ".join(f"{e}: {r}" for e, r in list(result.failed.items())[:5]),
            target=project,
        )
    return result
