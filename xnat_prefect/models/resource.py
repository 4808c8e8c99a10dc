"""``Resource`` (a catalog) and ``ResourceFile`` (one file in it)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from xnat_prefect.models._base import OptInt, OptStr, StrList, XNATModel, column, to_opt_str

__all__ = ["Resource", "ResourceFile", "data_uri"]

_CONTEXT_FREE_PREFIXES = ("/data/", "/REST/", "/xapi/")


def data_uri(value: object) -> str | None:
    """Prefix ``/data`` on a server path that lacks it.

    XNAT omits it on multi-resource file listings
    (``/experiments/E/scans/1/resources/57/files/a.dcm``).

    Args:
        value: The ``URI`` cell.

    Returns:
        A ``/data/...`` URI (unchanged when already rooted), or None when blank.
    """
    text = to_opt_str(value)
    if text is None:
        return None
    if text.startswith("/") and not text.startswith(_CONTEXT_FREE_PREFIXES):
        return "/data" + text
    return text


class Resource(XNATModel):
    """A resource (file catalog) of a project, subject, session, scan or assessor.

    Listing columns: ``xnat_abstractresource_id, label, element_name, category, cat_id,
    cat_desc, file_count, file_size, tags, content, format`` (no URI).

    Attributes:
        resource_id: Numeric resource id (usable in URLs instead of the label).
        label: Resource label (``DICOM``, ``NIFTI``).
        element_name: ``xnat:resourceCatalog``...
        category: ``resources``, ``scans``, ``reconstructions``, ``assessors``.
        cat_id: Scan/assessor id for non-session resources.
        cat_desc: Scan type etc.
        file_count: Cached number of files (None until computed).
        file_size: Cached total bytes (None until computed).
        format: Resource format.
        content: Resource content.
        tags: Tags.
    """

    resource_id: OptInt = column("xnat_abstractresource_id", "resource_id")
    label: OptStr = column("label")
    element_name: OptStr = column("element_name")
    category: OptStr = column("category")
    cat_id: OptStr = column("cat_id")
    cat_desc: OptStr = column("cat_desc")
    file_count: OptInt = column("file_count")
    file_size: OptInt = column("file_size")
    format: OptStr = column("format")
    content: OptStr = column("content")
    tags: StrList = column("tags", default=[])


class ResourceFile(XNATModel):
    """One file of a resource listing.

    Columns: ``Name, Size, URI, collection, file_tags, file_format, file_content, cat_ID,
    digest``.

    Attributes:
        name: File name (may include sub-folders).
        size: Bytes.
        uri: ``/data/...`` URI of the file (``/data`` added when XNAT left it out).
        collection: Resource label.
        file_tags: Tags / metadata (comma-joined).
        file_format: File format.
        file_content: File content.
        cat_id: Numeric resource id.
        digest: MD5 hex digest, or None when checksums are off.
    """

    name: str = column("Name", "name", default=...)
    size: OptInt = column("Size", "size")
    uri: Annotated[str | None, BeforeValidator(data_uri)] = column("URI", "uri")
    collection: OptStr = column("collection")
    file_tags: OptStr = column("file_tags")
    file_format: OptStr = column("file_format")
    file_content: OptStr = column("file_content")
    cat_id: OptStr = column("cat_ID", "cat_id")
    digest: OptStr = column("digest")

    @property
    def relative_path(self) -> str:
        """Path inside the resource (after ``/files/`` in the URI; else ``name``)."""
        if self.uri and "/files/" in self.uri:
            return self.uri.split("/files/", 1)[1]
        return self.name
