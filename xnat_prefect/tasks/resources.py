"""Prefect tasks for XNAT resources (ResourceService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.resources import list_resources

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_resources(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import ResourceService
from xnat_prefect.tasks._common import service_task

list_resources = service_task(
    ResourceService, "list", name="List resources", run_name="list-resources-{session_id}"
)
get_resource = service_task(
    ResourceService,
    "get",
    name="Get a resource",
    run_name="get-resource-{session_id}-{resource_label}",
)
list_resource_files = service_task(
    ResourceService,
    "list_files",
    name="List the files of a resource",
    run_name="list-files-{session_id}-{resource_label}",
)
create_resource = service_task(
    ResourceService,
    "create",
    name="Create a resource",
    run_name="create-resource-{session_id}-{resource_label}",
    idempotent=False,
)
delete_resource = service_task(
    ResourceService,
    "delete",
    name="Delete a resource",
    run_name="delete-resource-{session_id}-{resource_label}",
    idempotent=False,
)
upload_resource_file = service_task(
    ResourceService,
    "upload_file",
    name="Upload a file to a resource",
    run_name="upload-file-{session_id}-{resource_label}",
)
upload_resource_directory = service_task(
    ResourceService,
    "upload_directory",
    name="Upload a directory to a resource",
    run_name="upload-directory-{session_id}-{resource_label}",
)

__all__ = [
    "create_resource",
    "delete_resource",
    "get_resource",
    "list_resource_files",
    "list_resources",
    "upload_resource_directory",
    "upload_resource_file",
]
