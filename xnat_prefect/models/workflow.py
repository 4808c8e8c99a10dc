"""``Workflow``: XNAT's ``wrk:workflowData`` rows (pipelines, containers, uploads all log here)."""

from __future__ import annotations

from xnat_prefect.models._base import OptDateTime, OptFloat, OptStr, XNATModel, column

__all__ = ["TERMINAL_PREFIXES", "Workflow", "is_terminal_status"]

TERMINAL_PREFIXES = ("Complete", "Failed", "Killed")


def is_terminal_status(status: str | None) -> bool:
    """Whether a workflow/container status is final (starts with Complete, Failed or Killed).

    Args:
        status: Status text (``Failed (Staging)`` counts as Failed).

    Returns:
        True for a terminal status.
    """
    return bool(status) and str(status).strip().startswith(TERMINAL_PREFIXES)


class Workflow(XNATModel):
    """One workflow (from ``GET /data/workflows/{id}?format=json``, flattened).

    Attributes:
        workflow_id: ``wrk_workflowData_id``.
        data_id: ID of the item it ran on (``ID``; an experiment accession ID).
        data_type: Its xsi type.
        pipeline_name: Pipeline / wrapper / operation name.
        launch_time: When it started.
        status: ``Queued``, ``Running``, ``Complete``, ``Failed (...)``, ``Killed``...
        current_step_id: Current step.
        step_description: Current step description.
        percentage_complete: Progress, 0-100.
        external_id: Usually the project.
        comments: For container launches, the container id.
        details: Free text.
        job_id: Scheduler job id.
    """

    workflow_id: OptStr = column("wrk_workflowData_id", "workflow_id", "id")
    data_id: OptStr = column("ID", "data_id")
    data_type: OptStr = column("data_type")
    pipeline_name: OptStr = column("pipeline_name")
    launch_time: OptDateTime = column("launch_time")
    status: OptStr = column("status")
    current_step_id: OptStr = column("current_step_id")
    step_description: OptStr = column("step_description")
    percentage_complete: OptFloat = column("percentageComplete", "percentage_complete")
    external_id: OptStr = column("externalID", "external_id")
    comments: OptStr = column("comments")
    details: OptStr = column("details")
    job_id: OptStr = column("jobID", "job_id")

    @property
    def is_terminal(self) -> bool:
        """Complete, Failed or Killed."""
        return is_terminal_status(self.status)

    @property
    def is_complete(self) -> bool:
        """Ended Complete."""
        return bool(self.status) and str(self.status).startswith("Complete")

    @property
    def is_failed(self) -> bool:
        """Ended Failed (any phase)."""
        return bool(self.status) and str(self.status).startswith("Failed")

    @property
    def is_killed(self) -> bool:
        """Ended Killed."""
        return bool(self.status) and str(self.status).startswith("Killed")
