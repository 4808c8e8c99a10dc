"""Prefect tasks for the XNAT prearchive (PrearchiveService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.prearchive import list_prearchive_sessions

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_prearchive_sessions(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import PrearchiveService
from xnat_prefect.tasks._common import service_task

list_prearchive_sessions = service_task(
    PrearchiveService, "list", name="List prearchive sessions", run_name="list-prearchive"
)
get_prearchive_session = service_task(
    PrearchiveService,
    "get",
    name="Get a prearchive session",
    run_name="get-prearchive-{project}-{session_name}",
)
archive_prearchive_session = service_task(
    PrearchiveService,
    "archive",
    name="Archive a prearchive session",
    run_name="archive-{project}-{session_name}",
    idempotent=False,
)
delete_prearchive_session = service_task(
    PrearchiveService,
    "delete",
    name="Delete a prearchive session",
    run_name="delete-prearchive-{project}-{session_name}",
    idempotent=False,
)
rebuild_prearchive_session = service_task(
    PrearchiveService,
    "rebuild",
    name="Rebuild a prearchive session",
    run_name="rebuild-prearchive-{project}-{session_name}",
)
move_prearchive_session = service_task(
    PrearchiveService,
    "move",
    name="Move a prearchive session to another project",
    run_name="move-prearchive-{project}-{session_name}",
    idempotent=False,
)
get_prearchive_scans = service_task(
    PrearchiveService,
    "get_scans",
    name="List the scans of a prearchive session",
    run_name="prearchive-scans-{project}-{session_name}",
)

__all__ = [
    "archive_prearchive_session",
    "delete_prearchive_session",
    "get_prearchive_scans",
    "get_prearchive_session",
    "list_prearchive_sessions",
    "move_prearchive_session",
    "rebuild_prearchive_session",
]
