"""``Pipeline`` (something that can be launched) and ``PipelineJob`` (one run of it)."""

from __future__ import annotations

from typing import Literal

from xnat_prefect.models._base import OptDateTime, OptInt, OptStr, XNATModel, column
from xnat_prefect.models.container import Container
from xnat_prefect.models.workflow import Workflow, is_terminal_status

__all__ = ["Pipeline", "PipelineJob"]


class Pipeline(XNATModel):
    """A launchable pipeline: a legacy pipeline or a Container Service wrapper.

    Attributes:
        name: Pipeline / wrapper name.
        description: Description.
        path: Legacy pipeline descriptor path (legacy only).
        datatype: Data type it runs on (``xnat:mrSessionData``).
        kind: ``legacy`` or ``container``.
        command_id: Container Service command id (container only).
        wrapper_id: Container Service wrapper id (container only).
    """

    name: str = column("name", "Name", "pipeline_name", default=...)
    description: OptStr = column("description", "Description")
    path: OptStr = column("path", "Path")
    datatype: OptStr = column("datatype", "Datatype", "data_type", "context")
    kind: Literal["legacy", "container"] = column("kind", default="legacy")
    command_id: OptInt = column("command_id", "command-id")
    wrapper_id: OptInt = column("wrapper_id", "wrapper-id")


class PipelineJob(XNATModel):
    """One pipeline run, whether tracked by a workflow or a container.

    Attributes:
        job_id: Id to poll (workflow id or container id).
        kind: ``workflow`` or ``container``.
        pipeline: Pipeline name.
        experiment_id: Experiment it runs on.
        project: Project.
        status: Current status text.
        launch_time: When it started.
        container_id: Container id, when known.
        workflow_id: Workflow id, when known.
        details: Free text (step, message).
    """

    job_id: str = column("job_id", default=...)
    kind: Literal["workflow", "container"] = column("kind", default="workflow")
    pipeline: OptStr = column("pipeline")
    experiment_id: OptStr = column("experiment_id")
    project: OptStr = column("project")
    status: OptStr = column("status")
    launch_time: OptDateTime = column("launch_time")
    container_id: OptStr = column("container_id")
    workflow_id: OptStr = column("workflow_id")
    details: OptStr = column("details")

    @property
    def is_terminal(self) -> bool:
        """Complete, Failed or Killed."""
        return is_terminal_status(self.status)

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> PipelineJob:
        """A job view of a workflow (the container id is in ``comments`` for launches).

        Args:
            workflow: The workflow.

        Returns:
            The job.
        """
        return cls(
            job_id=workflow.workflow_id or "",
            kind="workflow",
            pipeline=workflow.pipeline_name,
            experiment_id=workflow.data_id,
            project=workflow.external_id,
            status=workflow.status,
            launch_time=workflow.launch_time,
            container_id=workflow.comments,
            workflow_id=workflow.workflow_id,
            details=workflow.details or workflow.step_description,
        )

    @classmethod
    def from_container(cls, container: Container, *, pipeline: str | None = None) -> PipelineJob:
        """A job view of a container.

        Args:
            container: The container.
            pipeline: Pipeline name, when the caller knows it.

        Returns:
            The job.
        """
        last = container.history[-1] if container.history else {}
        return cls(
            job_id=container.id or container.container_id or "",
            kind="container",
            pipeline=pipeline,
            project=container.project,
            status=container.status,
            launch_time=container.status_time,
            container_id=container.container_id,
            workflow_id=container.workflow_id,
            details=str(last.get("message")) if last.get("message") else None,
        )
