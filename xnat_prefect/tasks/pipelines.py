"""Prefect tasks for XNAT pipelines and containers (PipelineService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.pipelines import list_pipelines

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_pipelines(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import PipelineService
from xnat_prefect.tasks._common import service_task

list_pipelines = service_task(
    PipelineService, "list", name="List pipelines", run_name="list-pipelines"
)
get_pipeline = service_task(
    PipelineService, "get", name="Get a pipeline", run_name="get-pipeline-{pipeline_name}"
)
run_pipeline = service_task(
    PipelineService,
    "run",
    name="Launch a pipeline on an experiment",
    run_name="run-{pipeline_name}-{experiment_id}",
    idempotent=False,
)
get_pipeline_status = service_task(
    PipelineService,
    "status",
    name="Get a pipeline job's status",
    run_name="pipeline-status-{job_id}",
)
wait_for_pipeline = service_task(
    PipelineService, "wait", name="Wait for a pipeline job", run_name="wait-pipeline-{job_id}"
)
cancel_pipeline = service_task(
    PipelineService,
    "cancel",
    name="Cancel a pipeline job",
    run_name="cancel-pipeline-{job_id}",
    idempotent=False,
)
list_pipeline_jobs = service_task(
    PipelineService, "list_jobs", name="List pipeline jobs", run_name="list-pipeline-jobs"
)

__all__ = [
    "cancel_pipeline",
    "get_pipeline",
    "get_pipeline_status",
    "list_pipeline_jobs",
    "list_pipelines",
    "run_pipeline",
    "wait_for_pipeline",
]
