"""Container Service helpers for :class:`PipelineService` (``xnat-rest.md`` §12.2).

* Commands and their wrappers: ``GET /xapi/commands`` (bare array; wrappers under ``xnat``);
  404 means the plugin is not installed.
* Enablement: ``GET /xapi/projects/{P}/wrappers/{wid}/enabled`` →
  ``{"enabled-for-site": .., "enabled-for-project": ..}``; for the site
  ``GET /xapi/wrappers/{wid}/enabled``.
* Launch: ``POST /xapi/projects/{P}/wrappers/{wid}/root/{input}/launch`` with a JSON body of
  input values; the ``root/{input}`` segment names the wrapper input that carries the root
  object (the session), whose value is sent as ``/archive/experiments/{ID}``.
* Containers: ``GET /xapi/[projects/{P}/]containers``, ``GET /xapi/containers/{id}``,
  ``POST /xapi/containers/{id}/kill``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import PermissionDeniedError, ResourceNotFoundError
from xnat_prefect.models.container import Container
from xnat_prefect.models.pipeline import Pipeline
from xnat_prefect.services._pipeline_jobs import job_state
from xnat_prefect.services._validation import segment

__all__ = [
    "Wrapper",
    "container_experiment",
    "container_job_fields",
    "list_containers",
    "list_wrappers",
    "param_text",
    "root_input",
    "wrapper_enabled",
    "wrapper_pipeline",
]

Wrapper = tuple[dict[str, Any], dict[str, Any]]
"""``(command, wrapper)`` as ``GET /xapi/commands`` shows them."""

XNAT_INPUT_TYPES = ("session", "scan", "assessor", "subject", "project", "resource")


def list_wrappers(client: XNATClient) -> list[Wrapper] | None:
    """Every command wrapper of the site.

    Args:
        client: The client.

    Returns:
        ``(command, wrapper)`` pairs, or None when the Container Service is not installed.
    """
    try:
        payload = client.get_json("/xapi/commands")
    except ResourceNotFoundError:
        return None
    found: list[Wrapper] = []
    for command in payload if isinstance(payload, list) else []:
        if not isinstance(command, dict):
            continue
        for wrapper in command.get("xnat") or []:
            if isinstance(wrapper, dict) and wrapper.get("name"):
                found.append((command, wrapper))
    return found


def wrapper_enabled(client: XNATClient, wrapper_id: int, project: str | None) -> bool | None:
    """Whether a wrapper may be launched (site and project enablement).

    Args:
        client: The client.
        wrapper_id: Wrapper id.
        project: Project ID (None: site enablement only).

    Returns:
        The flag, or None when this user may not read it.
    """
    wid = segment(str(wrapper_id), "wrapper_id")
    path = f"/xapi/wrappers/{wid}/enabled"
    if project is not None:
        path = f"/xapi/projects/{segment(project, 'project')}/wrappers/{wid}/enabled"
    try:
        payload = client.get_json(path)
    except PermissionDeniedError:
        return None
    if isinstance(payload, Mapping):
        site = payload.get("enabled-for-site", True)
        here = payload.get("enabled-for-project", payload.get("enabled", True))
        return bool(site) and bool(here)
    return bool(payload)


def wrapper_pipeline(wrapper: Wrapper, *, enabled: bool | None) -> Pipeline:
    """A :class:`Pipeline` (``kind="container"``) for a wrapper.

    Args:
        wrapper: ``(command, wrapper)``.
        enabled: Enablement, when known.

    Returns:
        The pipeline (extra keys: ``command_name``, ``image``, ``contexts``, ``root_input``,
        ``enabled``).
    """
    command, item = wrapper
    contexts = [str(c) for c in item.get("contexts") or []]
    return Pipeline.model_validate(
        {
            "name": str(item["name"]),
            "description": item.get("description") or command.get("description") or None,
            "datatype": ",".join(contexts) or None,
            "kind": "container",
            "command_id": command.get("id"),
            "wrapper_id": item.get("id"),
            "command_name": command.get("name"),
            "image": command.get("image"),
            "contexts": contexts,
            "root_input": root_input(item),
            "enabled": enabled,
        }
    )


def root_input(wrapper: Mapping[str, Any]) -> str:
    """The wrapper input that receives the session (the ``root/{input}`` of the launch URL).

    The first external input of type ``Session``, else the first XNAT-typed external input,
    else the first external input, else ``session``.

    Args:
        wrapper: The wrapper JSON.

    Returns:
        The input name.
    """
    inputs = [i for i in wrapper.get("external-inputs") or [] if isinstance(i, dict)]
    for wanted in (("session",), XNAT_INPUT_TYPES):
        for item in inputs:
            if str(item.get("type", "")).lower() in wanted and item.get("name"):
                return str(item["name"])
    if inputs and inputs[0].get("name"):
        return str(inputs[0]["name"])
    return "session"


def param_text(value: Any) -> str:
    """A launch parameter as the Container Service reads it (strings; JSON for structures).

    Args:
        value: The value.

    Returns:
        The text.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return "" if value is None else str(value)


def list_containers(client: XNATClient, project: str | None) -> list[Container] | None:
    """Containers visible to the user (a project's, or the site's).

    Args:
        client: The client.
        project: Project ID, or None.

    Returns:
        The containers, or None when the Container Service is not installed.
    """
    path = "/xapi/containers"
    if project is not None:
        path = f"/xapi/projects/{segment(project, 'project')}/containers"
    try:
        payload = client.get_json(path)
    except ResourceNotFoundError:
        return None
    return [Container.model_validate(c) for c in payload if isinstance(c, dict)]


def container_experiment(container: Container) -> str | None:
    """The experiment a container ran on (from its external input values).

    Values look like ``XNAT_E00001`` or ``/archive/experiments/XNAT_E00001`` (or a project
    path ending in ``/experiments/{label}``).

    Args:
        container: The container.

    Returns:
        The ID or label found, or None.
    """
    for item in container.inputs:
        value = str(item.get("value") or "")
        if "/experiments/" in value:
            return value.rstrip("/").split("/experiments/", 1)[1].split("/", 1)[0] or None
    for item in container.inputs:
        if item.get("type") == "wrapper_external" and item.get("value"):
            return str(item["value"])
    return None


def container_job_fields(
    container: Container, *, pipeline: str | None, experiment_id: str | None = None
) -> dict[str, Any]:
    """Job fields of a container (``PipelineJob`` keys).

    Args:
        container: The container.
        pipeline: Wrapper name, when known.
        experiment_id: Experiment, when known (else read from the inputs).

    Returns:
        Keys ready for ``PipelineJob.model_validate``.
    """
    last = container.history[-1] if container.history else {}
    details = last.get("message") or None
    return {
        "job_id": f"container:{container.id or container.container_id}",
        "kind": "container",
        "pipeline": pipeline,
        "experiment_id": experiment_id or container_experiment(container),
        "project": container.project,
        "status": container.status,
        "launch_time": container.status_time if not container.history else _first_time(container),
        "container_id": container.container_id,
        "workflow_id": container.workflow_id,
        "details": str(details) if details else None,
        "state": job_state(container.status),
    }


def _first_time(container: Container) -> Any:
    first = container.history[0]
    return first.get("time-recorded") or container.status_time
