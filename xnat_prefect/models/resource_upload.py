"""``ResourceUploadResult``: what ``ResourceService.upload_file``/``upload_directory`` did."""

from __future__ import annotations

from pathlib import Path

from xnat_prefect.models.summaries import SummaryModel

__all__ = ["ResourceUploadResult"]


class ResourceUploadResult(SummaryModel):
    """Outcome of uploading one file (or one zipped directory) into a resource.

    Reads like the seed's "upload result dict" (``result["uri"]``).

    Attributes:
        resource: Resource label.
        name: File name sent to XNAT (``{directory}.zip`` for a directory upload).
        local_path: The file or directory uploaded.
        uri: URL path of the uploaded file (or of the resource's ``files`` when extracted).
        size: Bytes sent.
        file_count: Files uploaded (1, or the files inside the zipped directory).
        extracted: XNAT was asked to unpack the archive into the resource.
        overwrite: Existing files were allowed to be replaced.
        success: Always True (failures raise).
    """

    resource: str
    name: str
    local_path: Path
    uri: str
    size: int = 0
    file_count: int = 1
    extracted: bool = False
    overwrite: bool = False
    success: bool = True
