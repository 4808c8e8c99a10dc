"""``Session``: an image session (experiment) row or item document, and modality helpers."""

from __future__ import annotations

import re
from typing import Any

from pydantic import model_validator

from xnat_prefect.models._base import OptDate, OptDateTime, OptInt, OptStr, XNATModel, column

__all__ = ["MODALITY_XSI_TYPES", "Session", "modality_from_xsi_type", "xsi_type_for_modality"]

MODALITY_XSI_TYPES: dict[str, str] = {
    "MR": "xnat:mrSessionData",
    "PET": "xnat:petSessionData",
    "CT": "xnat:ctSessionData",
    "PETMR": "xnat:petmrSessionData",
    "CR": "xnat:crSessionData",
    "DX": "xnat:dxSessionData",
    "MG": "xnat:mgSessionData",
    "NM": "xnat:nmSessionData",
    "US": "xnat:usSessionData",
    "XA": "xnat:xaSessionData",
    "RT": "xnat:rtSessionData",
    "SR": "xnat:srSessionData",
    "EEG": "xnat:eegSessionData",
    "MEG": "xnat:megSessionData",
    "ECG": "xnat:ecgSessionData",
    "OPT": "xnat:optSessionData",
    "OT": "xnat:otherDicomSessionData",
}
_TYPE_TO_MODALITY = {v.lower(): k for k, v in MODALITY_XSI_TYPES.items()}
_SESSION_TYPE_RE = re.compile(r"^[A-Za-z]+:([A-Za-z0-9]+?)SessionData$")


def modality_from_xsi_type(xsi_type: str | None) -> str | None:
    """The modality of a session type (``xnat:mrSessionData`` -> ``MR``).

    Args:
        xsi_type: Session xsi type.

    Returns:
        The modality code, or None for non-session types.
    """
    if not xsi_type:
        return None
    known = _TYPE_TO_MODALITY.get(xsi_type.lower())
    if known:
        return known
    match = _SESSION_TYPE_RE.match(xsi_type)
    return match.group(1).upper() if match else None


def xsi_type_for_modality(modality: str) -> str:
    """The session type for a modality (``MR`` -> ``xnat:mrSessionData``).

    Args:
        modality: Modality code, any case.

    Returns:
        The xsi type (``xnat:{modality lower}SessionData`` for codes not in the table).
    """
    code = modality.strip().upper()
    return MODALITY_XSI_TYPES.get(code, f"xnat:{code.lower()}SessionData")


class Session(XNATModel):
    """An XNAT imaging session (experiment).

    Listing columns: ``ID, project, date, xsiType, label, insert_date, URI`` (+
    ``subject_ID, subject_label`` and anything asked with ``columns=``). From an item document,
    ``scan_count`` is the number of ``scans/scan`` children.

    Attributes:
        id: Accession ID (``XNAT_E00001``).
        label: Label within the project.
        project: Owning project.
        subject_id: Subject accession ID.
        subject_label: Subject label.
        xsi_type: Session type (``xnat:mrSessionData``).
        modality: ``MR``, ``PET``, ``CT``... (derived from ``xsi_type`` when not given).
        session_date: Acquisition date (XNAT column ``date``).
        time: Acquisition time (``HH:MM:SS``).
        visit_id: Visit identifier.
        scanner: Scanner name.
        scan_count: Number of scans (when known).
        insert_date: When it was archived.
        uri: ``/data/experiments/{ID}``.
    """

    id: str = column("ID", "id", "session_ID", default=...)
    label: OptStr = column("label", "session_label")
    project: OptStr = column("project")
    subject_id: OptStr = column("subject_ID", "subject_id")
    subject_label: OptStr = column("subject_label")
    xsi_type: OptStr = column("xsiType", "xsi_type", "xsi:type")
    modality: OptStr = column("modality")
    session_date: OptDate = column("date", "session_date")
    time: OptStr = column("time")
    visit_id: OptStr = column("visit_id", "visit")
    scanner: OptStr = column("scanner")
    scan_count: OptInt = column("scan_count")
    insert_date: OptDateTime = column("insert_date")
    uri: OptStr = column("URI", "uri")

    @model_validator(mode="before")
    @classmethod
    def _from_item(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        scans = data.get("scans/scan")
        if isinstance(scans, list) and not data.get("scan_count"):
            data = {**data, "scan_count": len(scans)}
        if not data.get("URI") and not data.get("uri"):
            ident = data.get("ID") or data.get("id")
            if ident:
                data = {**data, "URI": f"/data/experiments/{ident}"}
        return data

    @model_validator(mode="after")
    def _derive_modality(self) -> Session:
        if self.modality is None:
            self.modality = modality_from_xsi_type(self.xsi_type)
        return self
