"""Prefect tasks for XNAT projects (ProjectService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.projects import list_projects

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_projects(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import ProjectService
from xnat_prefect.tasks._common import service_task

list_projects = service_task(
    ProjectService, "list", name="List XNAT projects", run_name="list-projects"
)
get_project = service_task(
    ProjectService, "get", name="Get an XNAT project", run_name="get-project-{project_id}"
)
create_project = service_task(
    ProjectService,
    "create",
    name="Create an XNAT project",
    run_name="create-project-{project_id}",
    idempotent=False,
)
delete_project = service_task(
    ProjectService,
    "delete",
    name="Delete an XNAT project",
    run_name="delete-project-{project_id}",
    idempotent=False,
)
get_project_subjects = service_task(
    ProjectService,
    "get_subjects",
    name="List the subjects of a project",
    run_name="project-subjects-{project_id}",
)
get_project_sessions = service_task(
    ProjectService,
    "get_sessions",
    name="List the sessions of a project",
    run_name="project-sessions-{project_id}",
)
set_project_accessibility = service_task(
    ProjectService,
    "set_accessibility",
    name="Set a project's accessibility",
    run_name="set-accessibility-{project_id}-{accessibility}",
)

__all__ = [
    "create_project",
    "delete_project",
    "get_project",
    "get_project_sessions",
    "get_project_subjects",
    "list_projects",
    "set_project_accessibility",
]
