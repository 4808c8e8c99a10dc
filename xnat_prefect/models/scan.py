"""``Scan``: a row of ``GET .../experiments/{E}/scans`` or a ``scans/scan`` child item."""

from __future__ import annotations

from xnat_prefect.models._base import OptInt, OptStr, XNATModel, column

__all__ = ["Scan"]


class Scan(XNATModel):
    """An XNAT scan (series).

    Listing columns: ``xnat_imagescandata_id, ID, type, quality, xsiType, note,
    series_description, URI`` (``frames`` only with ``columns=``).

    Attributes:
        scan_id: Scan ID within the session (``"1"``, ``"1-MR1"``).
        xnat_imagescandata_id: Database id of the scan row.
        type: Scan type (``T1w``).
        quality: ``usable``, ``questionable``, ``unusable``.
        xsi_type: Scan type (``xnat:mrScanData``).
        note: Note.
        series_description: DICOM series description.
        frames: Number of frames.
        file_count: Number of files (when known).
        uri: ``/data/experiments/{E}/scans/{ID}``.
    """

    scan_id: str = column("ID", "scan_id", "id", default=...)
    xnat_imagescandata_id: OptInt = column("xnat_imagescandata_id")
    type: OptStr = column("type")
    quality: OptStr = column("quality")
    xsi_type: OptStr = column("xsiType", "xsi_type", "xsi:type")
    note: OptStr = column("note")
    series_description: OptStr = column("series_description")
    frames: OptInt = column("frames")
    file_count: OptInt = column("file_count")
    uri: OptStr = column("URI", "uri")
