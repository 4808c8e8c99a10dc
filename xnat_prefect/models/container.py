"""Container Service models: ``Container`` and the launch reply ``LaunchReport``."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from xnat_prefect.models._base import OptDateTime, OptInt, OptStr, XNATModel, column
from xnat_prefect.models.workflow import is_terminal_status

__all__ = ["UNASSIGNED_WORKFLOW", "Container", "LaunchReport"]

UNASSIGNED_WORKFLOW = "To be assigned"


class Container(XNATModel):
    """A Container Service container (``GET /xapi/containers/{id}``; hyphenated keys).

    Attributes:
        id: Container Service database id.
        command_id: Command id.
        wrapper_id: Wrapper id.
        container_id: Docker container / service id.
        workflow_id: Workflow tracking it.
        status: ``Created``, ``Running``, ``Complete``, ``Failed``, ``Killed``...
        status_time: When the status was recorded.
        project: Project.
        user_id: Launching user.
        history: History entries (``status``, ``time-recorded``, ``message``...).
        docker_image: Image.
        inputs: Input records.
        outputs: Output records.
    """

    id: OptStr = column("id")
    command_id: OptInt = column("command-id", "command_id")
    wrapper_id: OptInt = column("wrapper-id", "wrapper_id")
    container_id: OptStr = column("container-id", "container_id")
    workflow_id: OptStr = column("workflow-id", "workflow_id")
    status: OptStr = column("status")
    status_time: OptDateTime = column("status-time", "status_time")
    project: OptStr = column("project")
    user_id: OptStr = column("user-id", "user_id")
    history: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias=AliasChoices("history")
    )
    docker_image: OptStr = column("docker-image", "docker_image")
    inputs: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias=AliasChoices("inputs")
    )
    outputs: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias=AliasChoices("outputs")
    )

    @property
    def is_terminal(self) -> bool:
        """Complete, Failed or Killed."""
        return is_terminal_status(self.status)


class LaunchReport(XNATModel):
    """Reply of a Container Service launch.

    ``{"status": "success", "params": {...}, "id": null, "command-id": 3, "wrapper-id": 7,
    "workflow-id": "123"}``; ``workflow-id`` may be ``"To be assigned"`` while queued; failures
    carry ``"status": "failure"`` and a ``message``.

    Attributes:
        status: ``success`` or ``failure``.
        params: The resolved inputs.
        command_id: Command id.
        wrapper_id: Wrapper id.
        workflow_id: Workflow id (or ``"To be assigned"``).
        container_id: Container id when the server returned one.
        message: Failure text.
    """

    status: OptStr = column("status")
    params: dict[str, Any] = Field(default_factory=dict, validation_alias=AliasChoices("params"))
    command_id: OptInt = column("command-id", "command_id")
    wrapper_id: OptInt = column("wrapper-id", "wrapper_id")
    workflow_id: OptStr = column("workflow-id", "workflow_id")
    container_id: OptStr = column("container-id", "container_id", "id")
    message: OptStr = column("message")

    @property
    def succeeded(self) -> bool:
        """The launch was accepted (``status == "success"``)."""
        return (self.status or "").lower() == "success"

    @property
    def workflow_assigned(self) -> bool:
        """A real workflow id came back (not ``"To be assigned"``)."""
        return bool(self.workflow_id) and self.workflow_id != UNASSIGNED_WORKFLOW
