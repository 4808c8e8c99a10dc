"""Prefect tasks for uploads to XNAT (UploadService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.uploads import upload_dicom

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        upload_dicom(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import UploadService
from xnat_prefect.tasks._common import service_task

upload_dicom = service_task(
    UploadService,
    "upload_dicom",
    name="Upload DICOM in zipped batches",
    run_name="upload-dicom-{project}-{session}",
)
upload_dicom_parallel = service_task(
    UploadService,
    "upload_dicom_parallel",
    name="Upload DICOM as parallel archives",
    run_name="upload-dicom-parallel-{project}-{session}",
)
upload_dicom_store = service_task(
    UploadService,
    "upload_dicom_store",
    name="Send DICOM by C-STORE",
    run_name="cstore-{called_aet}",
)
upload_dicom_gradual = service_task(
    UploadService,
    "upload_dicom_gradual",
    name="Upload DICOM file by file (gradual-DICOM)",
    run_name="upload-dicom-gradual-{project}-{session}",
)
upload_dicom_gradual_files = service_task(
    UploadService,
    "upload_dicom_gradual_files",
    name="Upload given DICOM files (gradual-DICOM)",
    run_name="upload-dicom-gradual-files-{project}-{session}",
)
upload_resource = service_task(
    UploadService,
    "upload_resource",
    name="Upload files to a resource",
    run_name="upload-resource-{session_id}-{resource_label}",
)

__all__ = [
    "upload_dicom",
    "upload_dicom_gradual",
    "upload_dicom_gradual_files",
    "upload_dicom_parallel",
    "upload_dicom_store",
    "upload_resource",
]
