"""Building prearchive sessions: scans from series, the session XML, and the session zip.

XNAT's session builder turns the DICOM files of a RECEIVING session into a session document
(``xnat:MRSession`` …) with one scan per series, then marks the session READY. The emulator
does the same from the ``prearc_files`` rows: scan ID = Series Number, type and
series_description = Series Description, xsi:type from the series' Modality.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from xnat_prefect.testing.dicom_headers import session_xsi_type, xsi_types_for_modality
from xnat_prefect.testing.routes._prearc import (
    LOCKED_STATUSES,
    PrearcLockedError,
    add_log,
    load,
    session_dir,
    xml_path,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

_LEAD = ("PT", "MR", "CT")


@dataclass(frozen=True)
class ScanSummary:
    """One scan (series) of a prearchive session.

    Attributes:
        scan_id: Scan ID (Series Number).
        xsi_type: Scan xsi:type from the Modality.
        series_description: Series Description (also the scan type).
        series_uid: Series Instance UID.
        modality: Modality.
        file_count: Number of files.
        file_size: Total bytes.
    """

    scan_id: str
    xsi_type: str
    series_description: str
    series_uid: str
    modality: str
    file_count: int
    file_size: int


def _scan_sort_key(scan_id: str) -> tuple[int, int, str]:
    match = re.match(r"^(\d+)", scan_id)
    return (0, int(match.group(1)), scan_id) if match else (1, 0, scan_id)


def scan_summaries(state: EmulatorState, session_id: int) -> list[ScanSummary]:
    """The scans of a session, grouped from its files, in scan-ID order.

    Args:
        state: Emulator state.
        session_id: Session key.

    Returns:
        One summary per series.
    """
    rows = state.store.query(
        "SELECT scan_id, MAX(series_description) AS descr, MAX(series_uid) AS uid, "
        "MAX(modality) AS modality, COUNT(*) AS n, SUM(size) AS bytes "
        "FROM prearc_files WHERE session_id=? GROUP BY scan_id",
        (session_id,),
    )
    scans = [
        ScanSummary(
            scan_id=r["scan_id"],
            xsi_type=xsi_types_for_modality(r["modality"] or "")[1],
            series_description=r["descr"] or "",
            series_uid=r["uid"] or "",
            modality=r["modality"] or "",
            file_count=int(r["n"]),
            file_size=int(r["bytes"] or 0),
        )
        for r in rows
    ]
    return sorted(scans, key=lambda s: _scan_sort_key(s.scan_id))


def lead_modality(modalities: list[str]) -> str:
    """The modality that names a session (PT, then MR, then CT, then the first one).

    Args:
        modalities: Modalities of the series.

    Returns:
        The lead modality (``""`` when none).
    """
    for lead in _LEAD:
        if lead in modalities:
            return lead
    return modalities[0] if modalities else ""


def build_session(
    state: EmulatorState, session_id: int, *, quiet_since: float | None = None
) -> Row | None:
    """Build a session: compute its scans, write its XML, make it READY.

    Args:
        state: Emulator state.
        session_id: Session key.
        quiet_since: Only build when no file arrived after this time (the sweeper's check).

    Returns:
        The updated row, or None when skipped because files are still arriving.

    Raises:
        PrearcLockedError: Another operation holds the session.
        SessionGoneError: The session no longer exists.
    """
    store = state.store
    with store.tx():
        row = load(state, session_id)
        if row["status"] in LOCKED_STATUSES:
            raise PrearcLockedError(f"session document locked ({row['status']})")
        if quiet_since is not None and (
            row["status"] != "RECEIVING" or row["last_received"] > quiet_since
        ):
            return None
        scans = scan_summaries(state, session_id)
        if not scans:
            store.execute(
                "UPDATE prearc_sessions SET status='ERROR', lastmod=? WHERE id=?",
                (now_text(), session_id),
            )
            add_log(state, session_id, "Build failed: the session holds no DICOM files")
            return load(state, session_id)
        xsi_type = session_xsi_type(s.modality for s in scans)
        modality = lead_modality([s.modality for s in scans if s.modality])
        store.execute(
            "UPDATE prearc_sessions SET status='READY', built=1, xsi_type=?, modality=?, "
            "lastmod=?, archive_after=NULL WHERE id=?",
            (xsi_type, modality, now_text(), session_id),
        )
        row = load(state, session_id)
        target = xml_path(state, row)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_suffix(".xml.tmp")
        temp.write_text(session_xml(state, row, scans), encoding="utf-8")
        temp.replace(target)
        files = sum(s.file_count for s in scans)
        add_log(state, session_id, f"Session built: {len(scans)} scans, {files} files")
        return row


def root_element(xsi_type: str) -> str:
    """The XML root element of a session type (``xnat:mrSessionData`` → ``xnat:MRSession``).

    Args:
        xsi_type: Session xsi:type.

    Returns:
        The element name.
    """
    prefix = xsi_type.split(":", 1)[-1].removesuffix("SessionData")
    if prefix == "otherDicom":
        return "xnat:OtherDicomSession"
    return f"xnat:{prefix.upper()}Session"


def session_xml(state: EmulatorState, row: Row, scans: list[ScanSummary] | None = None) -> str:
    """Render a prearchive session's XML document.

    Args:
        state: Emulator state.
        row: Session row.
        scans: Its scans (read when None).

    Returns:
        The XML text.
    """
    scans = scans if scans is not None else scan_summaries(state, int(row["id"]))
    element = root_element(row["xsi_type"] or "xnat:otherDicomSessionData")
    fields = [
        ("date", row["scan_date"]),
        ("time", row["scan_time"]),
        ("modality", row["modality"]),
        ("subject_ID", row["subject"]),
        ("dcmAccessionNumber", row["accession"]),
        ("dcmPatientId", row["patient_id"]),
        ("dcmPatientName", row["patient_name"]),
        ("prearchivePath", str(session_dir(state, row).parent)),
    ]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f"<{element} project={quoteattr(row['project'])} label={quoteattr(row['name'])} "
        f"UID={quoteattr(row['tag'])} "
        'xmlns:xnat="http://nrg.wustl.edu/xnat" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f"xsi:type={quoteattr(row['xsi_type'])}>\n",
    ]
    parts.extend(f"  <xnat:{k}>{escape(str(v))}</xnat:{k}>\n" for k, v in fields if v)
    parts.append("  <xnat:scans>\n")
    for scan in scans:
        parts.append(
            f"    <xnat:scan ID={quoteattr(scan.scan_id)} type={quoteattr(scan.series_description)}"
            f" UID={quoteattr(scan.series_uid)} xsi:type={quoteattr(scan.xsi_type)}>\n"
            f'      <xnat:file label="DICOM" format="DICOM" content="RAW" '
            f"URI={quoteattr(f'SCANS/{scan.scan_id}/DICOM')} "
            f'file_count="{scan.file_count}" file_size="{scan.file_size}" '
            'xsi:type="xnat:resourceCatalog"/>\n'
            f"      <xnat:series_description>{escape(scan.series_description)}"
            "</xnat:series_description>\n"
            f"      <xnat:modality>{escape(scan.modality)}</xnat:modality>\n"
            f"      <xnat:frames>{scan.file_count}</xnat:frames>\n"
            "    </xnat:scan>\n"
        )
    parts.append(f"  </xnat:scans>\n</{element}>\n")
    return "".join(parts)


def zip_session(state: EmulatorState, row: Row) -> Path:
    """Zip a session folder (``{folder}/SCANS/...``) into a temp file.

    Args:
        state: Emulator state.
        row: Session row.

    Returns:
        The zip's path (the caller deletes it).
    """
    folder = session_dir(state, row)
    handle, name = tempfile.mkstemp(prefix="prearc-", suffix=".zip", dir=state.store.tmp_dir)
    with open(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{row['folder']}/{path.relative_to(folder).as_posix()}")
    return Path(name)
