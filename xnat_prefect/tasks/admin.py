"""Prefect tasks for XNAT administration (AdminService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.admin import refresh_catalogs

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        refresh_catalogs(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import AdminService
from xnat_prefect.tasks._common import service_task

refresh_catalogs = service_task(
    AdminService,
    "refresh_catalogs",
    name="Refresh catalogs of a project",
    run_name="refresh-catalogs-{project}",
)
add_user_to_groups = service_task(
    AdminService,
    "add_user_to_groups",
    name="Add a user to groups",
    run_name="add-user-to-groups-{username}",
)
remove_user_from_groups = service_task(
    AdminService,
    "remove_user_from_groups",
    name="Remove a user from groups",
    run_name="remove-user-from-groups-{username}",
)
list_users = service_task(AdminService, "list_users", name="List users", run_name="list-users")
get_user = service_task(AdminService, "get_user", name="Get a user", run_name="get-user-{username}")
get_audit_log = service_task(
    AdminService, "audit_log", name="Read the audit log", run_name="audit-log"
)
get_server_info = service_task(
    AdminService, "get_server_info", name="Get server information", run_name="server-info"
)
get_site_config = service_task(
    AdminService, "get_site_config", name="Read site configuration", run_name="get-site-config"
)
set_site_config = service_task(
    AdminService,
    "set_site_config",
    name="Change a site configuration value",
    run_name="set-site-config-{key}",
)

__all__ = [
    "add_user_to_groups",
    "get_audit_log",
    "get_server_info",
    "get_site_config",
    "get_user",
    "list_users",
    "refresh_catalogs",
    "remove_user_from_groups",
    "set_site_config",
]
