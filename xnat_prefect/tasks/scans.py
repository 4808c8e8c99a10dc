"""Prefect tasks for XNAT scans (ScanService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.scans import list_scans

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_scans(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import ScanService
from xnat_prefect.tasks._common import service_task

list_scans = service_task(
    ScanService, "list", name="List the scans of a session", run_name="list-scans-{session_id}"
)
get_scan = service_task(
    ScanService, "get", name="Get a scan", run_name="get-scan-{session_id}-{scan_id}"
)
delete_scan = service_task(
    ScanService,
    "delete",
    name="Delete a scan",
    run_name="delete-scan-{session_id}-{scan_id}",
    idempotent=False,
)
delete_scans = service_task(
    ScanService,
    "delete_multiple",
    name="Delete several scans",
    run_name="delete-scans-{session_id}",
    idempotent=False,
)
get_scan_resources = service_task(
    ScanService,
    "get_resources",
    name="List the resources of a scan",
    run_name="scan-resources-{session_id}-{scan_id}",
)
set_scan_quality = service_task(
    ScanService,
    "set_quality",
    name="Set a scan's quality",
    run_name="set-scan-quality-{session_id}-{scan_id}",
)
set_scan_note = service_task(
    ScanService,
    "set_note",
    name="Set a scan's note",
    run_name="set-scan-note-{session_id}-{scan_id}",
)

__all__ = [
    "delete_scan",
    "delete_scans",
    "get_scan",
    "get_scan_resources",
    "list_scans",
    "set_scan_note",
    "set_scan_quality",
]
