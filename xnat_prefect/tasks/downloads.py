"""Prefect tasks for downloads from XNAT (DownloadService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.downloads import download_session

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        download_session(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import DownloadService
from xnat_prefect.tasks._common import service_task

download_session = service_task(
    DownloadService,
    "download_session",
    name="Download a session",
    run_name="download-session-{session_id}",
)
download_resource = service_task(
    DownloadService,
    "download_resource",
    name="Download a resource",
    run_name="download-resource-{session_id}-{resource_label}",
)
download_scan = service_task(
    DownloadService,
    "download_scan",
    name="Download a scan",
    run_name="download-scan-{session_id}-{scan_id}",
)
download_scans = service_task(
    DownloadService,
    "download_scans",
    name="Download several scans in one request",
    run_name="download-scans-{session_id}",
)

__all__ = ["download_resource", "download_scan", "download_scans", "download_session"]
