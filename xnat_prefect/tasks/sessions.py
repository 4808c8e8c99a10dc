"""Prefect tasks for XNAT imaging sessions (SessionService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.sessions import list_sessions

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_sessions(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import SessionService
from xnat_prefect.tasks._common import service_task

list_sessions = service_task(
    SessionService, "list", name="List XNAT sessions", run_name="list-sessions"
)
get_session = service_task(
    SessionService, "get", name="Get an XNAT session", run_name="get-session-{session_id}"
)
create_session = service_task(
    SessionService,
    "create",
    name="Create an XNAT session",
    run_name="create-session-{project}-{label}",
    idempotent=False,
)
delete_session = service_task(
    SessionService,
    "delete",
    name="Delete an XNAT session",
    run_name="delete-session-{session_id}",
    idempotent=False,
)
get_session_scans = service_task(
    SessionService,
    "get_scans",
    name="List the scans of a session",
    run_name="session-scans-{session_id}",
)
get_session_resources = service_task(
    SessionService,
    "get_resources",
    name="List the resources of a session",
    run_name="session-resources-{session_id}",
)
set_session_field = service_task(
    SessionService,
    "set_field",
    name="Set a field of a session",
    run_name="set-session-field-{session_id}-{field}",
)
share_session = service_task(
    SessionService,
    "share",
    name="Share a session into another project",
    run_name="share-session-{session_id}-{target_project}",
    idempotent=False,
)

__all__ = [
    "create_session",
    "delete_session",
    "get_session",
    "get_session_resources",
    "get_session_scans",
    "list_sessions",
    "set_session_field",
    "share_session",
]
