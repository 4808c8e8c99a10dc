"""``ResourceService``: resources (file catalogs) of sessions and scans, and their files.

XNAT facts this module follows (``xnat-rest.md`` §7):

* ``GET <parent>/resources/{RES}`` returns catalog XML whatever ``format`` says, so
  :meth:`ResourceService.get` reads the resource listing instead.
* ``PUT <parent>/resources/{RES}?format=`` — here ``format`` is the resource's format, not the
  response format. An existing label → 409.
* ``DELETE`` of a missing resource answers 200: existence is checked first.
* Upload ``PUT .../resources/{RES}/files/{name}`` with a raw body (``inbody=true``) auto-creates
  the resource. When files exist and ``overwrite`` is not set, XNAT keeps them and answers 200
  with ``{"duplicates": [...]}``: this module raises :class:`ConflictError` naming them.
"""

from __future__ import annotations

import builtins
import json
import mimetypes
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from xnat_prefect._redact import get_logger
from xnat_prefect.client import check_body_for_error
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
)
from xnat_prefect.models.resource import Resource, ResourceFile
from xnat_prefect.models.resource_upload import ResourceUploadResult
from xnat_prefect.services.base import BaseService, check_ref, not_found, segment

__all__ = ["ARCHIVE_SUFFIXES", "ResourceService"]

logger = get_logger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
"""What XNAT can unpack server-side with ``extract=true``."""

_CONTENT_TYPES = {
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/x-gzip",
    ".tgz": "application/x-gzip",
    ".dcm": "application/dicom",
}


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    known = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
    return known or "application/octet-stream"


def _duplicates(response: httpx.Response) -> builtins.list[str]:
    text = response.text.strip()
    if not text.startswith("{"):
        return []
    try:
        payload = json.loads(text)
    except ValueError:
        return []
    found = payload.get("duplicates") if isinstance(payload, dict) else None
    return [str(item) for item in found] if isinstance(found, builtins.list) else []


class ResourceService(BaseService):
    """Service for XNAT resource operations.

    Example:
        ```python
        service = ResourceService(client)
        service.create("XNAT_E00001", "QC", format="PDF", content="report")
        service.upload_file("XNAT_E00001", "QC", Path("report.pdf"))
        print([f.name for f in service.list_files("XNAT_E00001", "QC")])
        ```
    """

    def list(
        self, session_id: str, scan_id: str | None = None, project: str | None = None
    ) -> builtins.list[Resource]:
        """List resources for a session or scan (``GET <parent>/resources``).

        Args:
            session_id: Session ID (or label with ``project``).
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.

        Returns:
            List of Resource objects.

        Raises:
            ResourceNotFoundError: No such session or scan.

        Example:
            ```python
            ResourceService(client).list("XNAT_E00001", scan_id="1")
            ```
        """
        return self._list_at(self.resource_parent_path(session_id, scan_id, project))

    def _list_at(self, parent: str) -> builtins.list[Resource]:
        try:
            return Resource.from_rows(self.client.get_result_set(f"{parent}/resources"))
        except ResourceNotFoundError as exc:
            raise not_found(f"{parent} was not found (no such session or scan)", exc) from exc

    def _get_at(self, parent: str, resource_label: str) -> Resource:
        resources = self._list_at(parent)
        for resource in resources:
            if resource.label == resource_label:
                return resource
        for resource in resources:
            if resource.resource_id is not None and str(resource.resource_id) == resource_label:
                return resource
        labels = ", ".join(sorted(r.label or "?" for r in resources)) or "none"
        raise ResourceNotFoundError(
            404,
            f"resource {resource_label!r} was not found on {parent} (it has: {labels})",
            method="GET",
            path=f"{parent}/resources",
        )

    def get(
        self,
        session_id: str,
        resource_label: str,
        scan_id: str | None = None,
        project: str | None = None,
    ) -> Resource:
        """Get resource details (from the resource listing; label or numeric id).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.

        Returns:
            Resource object.

        Raises:
            ResourceNotFoundError: If resource not found.

        Example:
            ```python
            ResourceService(client).get("XNAT_E00001", "DICOM", scan_id="1").file_count
            ```
        """
        check_ref(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        return self._get_at(parent, resource_label)

    def list_files(
        self,
        session_id: str,
        resource_label: str,
        scan_id: str | None = None,
        project: str | None = None,
    ) -> builtins.list[ResourceFile]:
        """List files in a resource (``GET <parent>/resources/{RES}/files``).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.

        Returns:
            List of ResourceFile objects (``uri`` always ``/data/...``).

        Raises:
            ResourceNotFoundError: No such resource, session or scan.

        Example:
            ```python
            [f.relative_path for f in ResourceService(client).list_files("XNAT_E00001", "QC")]
            ```
        """
        label = segment(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        try:
            rows = self.client.get_result_set(f"{parent}/resources/{label}/files")
        except ResourceNotFoundError as exc:
            message = f"resource {resource_label!r} was not found on {parent}"
            raise not_found(message, exc) from exc
        return ResourceFile.from_rows(rows)

    def create(
        self,
        session_id: str,
        resource_label: str,
        scan_id: str | None = None,
        project: str | None = None,
        format: str | None = None,
        content: str | None = None,
    ) -> Resource:
        """Create a new (empty) resource (``PUT <parent>/resources/{RES}``).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            format: Resource format (``NIFTI``, ``DICOM``...; sets the resource attribute).
            content: Content type.

        Returns:
            Created Resource object.

        Raises:
            ConflictError: The resource already exists.
            ResourceNotFoundError: No such session or scan.
            PermissionDeniedError: The user may not edit the session.

        Example:
            ```python
            ResourceService(client).create("XNAT_E00001", "NIFTI", scan_id="1", format="NIFTI")
            ```
        """
        label = segment(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        try:
            self.client.put(
                f"{parent}/resources/{label}", params={"format": format, "content": content}
            )
        except ConflictError as exc:
            raise ConflictError(
                409,
                f"resource {resource_label!r} already exists on {parent}; upload into it, or "
                "delete it first",
                method=exc.method,
                path=exc.path,
            ) from exc
        return self._get_at(parent, resource_label)

    def delete(
        self,
        session_id: str,
        resource_label: str,
        scan_id: str | None = None,
        project: str | None = None,
        remove_files: bool = True,
    ) -> bool:
        """Delete a resource (XNAT answers 200 for a missing one, so existence is checked).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            remove_files: Also remove files from filesystem.

        Returns:
            True if successful.

        Raises:
            ResourceNotFoundError: No such resource.
            PermissionDeniedError: The user may not delete (members cannot).

        Example:
            ```python
            ResourceService(client).delete("XNAT_E00001", "QC")
            ```
        """
        label = segment(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        self._get_at(parent, resource_label)
        params = {"removeFiles": "true" if remove_files else None}
        self.client.delete(f"{parent}/resources/{label}", params=params)
        logger.info("Deleted resource %s of %s", resource_label, parent)
        return True

    def upload_file(
        self,
        session_id: str,
        resource_label: str,
        file_path: Path,
        scan_id: str | None = None,
        project: str | None = None,
        extract: bool = False,
        overwrite: bool = False,
    ) -> ResourceUploadResult:
        """Upload a file to a resource (streamed from disk; the resource is auto-created).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            file_path: Local file path.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            extract: Extract ZIP/TAR files after upload.
            overwrite: Overwrite existing files.

        Returns:
            :class:`ResourceUploadResult` (reads like the seed's upload result dict).

        Raises:
            InvalidInputError: Not a readable, non-empty file; ``extract`` on a non-archive.
            ConflictError: Files already exist and ``overwrite`` is False (XNAT kept them; the
                message names them).
            ResourceNotFoundError: No such session or scan.
            PermissionDeniedError: The user may not edit the session.

        Example:
            ```python
            ResourceService(client).upload_file("XNAT_E00001", "NIFTI", Path("t1.nii.gz"), "1")
            ```
        """
        path = Path(file_path)
        if not path.is_file():
            raise InvalidInputError(f"file_path {str(path)!r} is not a file; pass a file path")
        if extract and not path.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise InvalidInputError(
                f"extract=True needs an archive ({', '.join(ARCHIVE_SUFFIXES)}), got "
                f"{path.name!r}; pass extract=False"
            )
        check_ref(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        return self._upload(parent, resource_label, path, path.name, extract, overwrite, 1)

    def _upload(
        self,
        parent: str,
        resource_label: str,
        path: Path,
        name: str,
        extract: bool,
        overwrite: bool,
        file_count: int,
    ) -> ResourceUploadResult:
        size = path.stat().st_size
        if size == 0:
            raise InvalidInputError(f"{str(path)!r} is empty; XNAT rejects empty uploads")
        files_url = f"{parent}/resources/{quote(resource_label, safe='')}/files"
        url = f"{files_url}/{quote(name, safe='')}"
        params: dict[str, Any] = {
            "inbody": "true",
            "extract": "true" if extract else None,
            "overwrite": "true" if overwrite else None,
        }
        with path.open("rb") as handle:
            response = self.client.put(
                url, params=params, content=handle, headers={"Content-Type": _content_type(name)}
            )
        duplicates = _duplicates(response)
        if duplicates:
            shown = ", ".join(duplicates[:10]) + (" ..." if len(duplicates) > 10 else "")
            raise ConflictError(
                409,
                f"{len(duplicates)} file(s) already exist in resource {resource_label!r} "
                f"({shown}); XNAT kept the existing files. Pass overwrite=True to replace them",
                method="PUT",
                path=url,
            )
        problem = check_body_for_error(response.text)
        if problem:
            raise UnexpectedResponseError(
                f"upload to {url} answered {response.status_code} with an error: {problem}",
                status_code=response.status_code,
                method="PUT",
                path=url,
            )
        logger.info("Uploaded %d bytes to %s", size, files_url)
        logger.debug("Uploaded file name: %s", name)
        return ResourceUploadResult(
            resource=resource_label,
            name=name,
            local_path=path,
            uri=files_url if extract else url,
            size=size,
            file_count=file_count,
            extracted=extract,
            overwrite=overwrite,
        )

    def upload_directory(
        self,
        session_id: str,
        resource_label: str,
        directory_path: Path,
        scan_id: str | None = None,
        project: str | None = None,
        overwrite: bool = False,
    ) -> ResourceUploadResult:
        """Upload a directory to a resource (creates ZIP first).

        The directory is zipped (sub-folders kept) into a temporary file on disk, uploaded
        with ``extract=true`` so XNAT unpacks it into the resource, and the temporary file is
        deleted (also on failure).

        Args:
            session_id: Session ID (or label with ``project``).
            resource_label: Resource label.
            directory_path: Local directory path.
            scan_id: Scan ID (for scan-level resources).
            project: Project ID.
            overwrite: Overwrite existing files.

        Returns:
            :class:`ResourceUploadResult` (``file_count`` = files in the directory).

        Raises:
            InvalidInputError: Not a directory, or no files in it.
            ConflictError: Files already exist and ``overwrite`` is False.
            ResourceNotFoundError: No such session or scan.

        Example:
            ```python
            ResourceService(client).upload_directory("XNAT_E00001", "QC", Path("qc_out"))
            ```
        """
        directory = Path(directory_path)
        if not directory.is_dir():
            raise InvalidInputError(
                f"directory_path {str(directory)!r} is not a directory; pass a folder"
            )
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        if not files:
            raise InvalidInputError(f"directory {str(directory)!r} holds no files to upload")
        check_ref(resource_label, "resource_label")
        parent = self.resource_parent_path(session_id, scan_id, project)
        stem = re.sub(r"[^A-Za-z0-9_\-]", "_", directory.resolve().name) or "upload"
        handle, temp_name = tempfile.mkstemp(prefix="xnat-upload-", suffix=".zip")
        os.close(handle)
        archive = Path(temp_name)
        try:
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
                for file in files:
                    zipped.write(file, file.relative_to(directory).as_posix())
            result = self._upload(
                parent, resource_label, archive, f"{stem}.zip", True, overwrite, len(files)
            )
        finally:
            archive.unlink(missing_ok=True)
        return result.model_copy(update={"local_path": directory})
