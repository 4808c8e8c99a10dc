"""DICOM header reading and XNAT's routing rules, for the emulator.

This is the emulator's own reading of DICOM (it must not share code with the client side in
``xnat_prefect.dicom``). It reads headers only and applies the rules XNAT uses to map a
received file to a project, subject and session (``Xnat15DicomProjectIdentifier`` and
``ClassicDicomObjectIdentifier``):

* project: ``Project:`` in Patient Comments (0010,4000), then Study Comments (0032,4000),
  then Additional Patient History (0010,21B0); then the whole Study Description
  (0008,1030); then the whole Accession Number (0008,0050). A value that is not a known
  project ID or alias does not count: the next rule is tried.
* subject: ``Subject:`` in Patient Comments, then Study Comments, then Patient Name.
* session: ``Session:`` in Patient Comments, then Study Comments, then Patient ID; a missing
  session label becomes ``dicom_upload``.
* auto-archive: ``AA:true|false`` in Patient Comments, then Study Comments.

Subject and session labels are cleaned like XNAT's ``Labels.toLabelChars``: every character
other than ``A-Z a-z 0-9 _ -`` becomes ``_``.

Example:
    >>> header = read_header(path)
    >>> route(header, known_projects=lambda v: v if v == "PROJ1" else None).project
    'PROJ1'
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID

__all__ = [
    "DEFAULT_SESSION_LABEL",
    "DicomHeader",
    "Routing",
    "clean_label",
    "read_header",
    "route",
    "scan_id_for",
    "session_xsi_type",
    "xsi_types_for_modality",
]

LOG = logging.getLogger(__name__)

#: XNAT's session label when no rule yields one (``GradualDicomImporter``).
DEFAULT_SESSION_LABEL = "dicom_upload"

_HEADER_TAGS = (
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "Modality",
    "Manufacturer",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "AdditionalPatientHistory",
    "PatientComments",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyID",
    "SeriesNumber",
    "InstanceNumber",
    "StudyComments",
)
_PIXEL_TAG = 0x7FE00010
_DEFLATED = "1.2.840.10008.1.2.1.99"
#: What pydicom raises on files that are not (complete) DICOM.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    struct.error,
    BytesLengthException,
    InvalidDicomError,
    zlib.error,
)
_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_\-]")
_TRUE = re.compile(r"t(?:rue)?", re.IGNORECASE)
_FALSE = re.compile(r"f(?:alse)?", re.IGNORECASE)


@dataclass(frozen=True)
class DicomHeader:
    """The header fields the emulator needs from one DICOM file.

    Every text field is the stripped string value, ``""`` when absent.

    Attributes:
        path: The file the header was read from.
        study_instance_uid: (0020,000D).
        series_instance_uid: (0020,000E).
        sop_instance_uid: (0008,0018).
        sop_class_uid: (0008,0016).
        transfer_syntax_uid: (0002,0010) from the file meta (``""`` without file meta).
        modality: (0008,0060).
        series_number: (0020,0011) as text (XNAT's scan ID).
        instance_number: (0020,0013) as text.
        series_description: (0008,103E), XNAT's scan type.
        study_description: (0008,1030).
        study_date: (0008,0020), ``YYYYMMDD``.
        study_time: (0008,0030).
        study_id: (0020,0010).
        patient_name: (0010,0010) as text (``^`` separators kept).
        patient_id: (0010,0020).
        accession_number: (0008,0050).
        patient_comments: (0010,4000).
        study_comments: (0032,4000).
        additional_patient_history: (0010,21B0).
        manufacturer: (0008,0070).
        image_type: (0008,0008) values.
    """

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    series_number: str
    instance_number: str
    series_description: str
    study_description: str
    study_date: str
    study_time: str
    study_id: str
    patient_name: str
    patient_id: str
    accession_number: str
    patient_comments: str
    study_comments: str
    additional_patient_history: str
    manufacturer: str
    image_type: tuple[str, ...]


@dataclass(frozen=True)
class Routing:
    """Where XNAT's rules send a file.

    Attributes:
        project: Project ID (resolved through ``known_projects``), or ``None`` (Unassigned).
        subject: Subject label (cleaned), or ``None``.
        session: Session label (cleaned); ``dicom_upload`` when nothing names one.
        auto_archive: The ``AA:`` value, or ``None`` when absent.
    """

    project: str | None
    subject: str | None
    session: str | None
    auto_archive: bool | None


def _plausible_raw_start(first: bytes) -> bool:
    """Whether bytes can open a raw (preamble-less) dataset: a group 0002..0008 tag first.

    Without this check pydicom's forced read walks any file (say 100 MB of zeros) element by
    element, taking seconds per file before giving up.
    """
    if len(first) < 4:
        return False
    little = int.from_bytes(first[:2], "little")
    big = int.from_bytes(first[:2], "big")
    return 0x0002 <= little <= 0x0008 or 0x0002 <= big <= 0x0008


def read_header(path: Path) -> DicomHeader | None:
    """Read the header of one DICOM file, or return ``None`` if it is not usable DICOM.

    Reads up to the pixel data only. Part-10 files are read strictly first; a file without
    the ``DICM`` preamble is retried as a raw dataset. ``None`` is returned for non-DICOM
    files, files cut short (in the header or in the pixel data; an image whose pixel data is
    missing counts as cut short) and files without a Study
    Instance UID or SOP Instance UID.

    Args:
        path: The file to read.

    Returns:
        The header, or ``None``.

    Example:
        >>> read_header(Path("notes.txt")) is None
        True
    """
    try:
        with path.open("rb") as raw:
            size = path.stat().st_size
            fp = _TruncationGuard(raw, size)
            try:
                ds = dcmread(fp, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
            except InvalidDicomError:
                fp.seek(0)
                if not _plausible_raw_start(raw.read(4)):
                    return None
                fp.seek(0)
                fp.truncated = False
                ds = dcmread(
                    fp, stop_before_pixels=True, force=True, specific_tags=list(_HEADER_TAGS)
                )
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            implicit, little = ds.original_encoding
            pixels = _pixel_data_state(
                raw, size, deflated=ts == _DEFLATED, implicit=implicit, little=little
            )
            if fp.truncated or pixels == "short":
                return None
            header = _to_header(path, ds, ts)
    except _READ_ERRORS:
        LOG.debug("not readable as DICOM: %s", path)
        return None
    if not header.sop_instance_uid or not header.study_instance_uid:
        return None
    if pixels == "absent" and "Image Storage" in UID(header.sop_class_uid).name:
        return None  # an image object whose pixel data is missing: cut at an element boundary
    return header


def route(header: DicomHeader, *, known_projects: Callable[[str], str | None]) -> Routing:
    """Apply XNAT's routing rules to a header.

    Args:
        header: The file's header.
        known_projects: Maps a project ID or alias to the project ID, ``None`` if unknown.

    Returns:
        The routing (project ``None`` means the prearchive's ``Unassigned``).

    Example:
        >>> route(header, known_projects={"P1": "P1"}.get)
        Routing(project='P1', subject='S1', session='E1', auto_archive=None)
    """
    comments = (header.patient_comments, header.study_comments)
    project_candidates = [
        *(_assignment(text, "Project") for text in (*comments, header.additional_patient_history)),
        header.study_description or None,
        header.accession_number or None,
    ]
    project = None
    for candidate in project_candidates:
        if candidate:
            project = known_projects(candidate)
            if project:
                break
    subject = _first([*(_assignment(t, "Subject") for t in comments), header.patient_name])
    session = _first([*(_assignment(t, "Session") for t in comments), header.patient_id])
    aa_text = _first([_assignment(t, "AA") for t in comments])
    auto_archive: bool | None = None
    if aa_text is not None and _TRUE.fullmatch(aa_text):
        auto_archive = True
    elif aa_text is not None and _FALSE.fullmatch(aa_text):
        auto_archive = False
    return Routing(
        project=project,
        subject=clean_label(subject) if subject else None,
        session=clean_label(session) if session else DEFAULT_SESSION_LABEL,
        auto_archive=auto_archive,
    )


def clean_label(value: str) -> str:
    """Make a value a legal XNAT label, like XNAT's ``Labels.toLabelChars``.

    Args:
        value: Any text.

    Returns:
        ``value`` with every character outside ``A-Z a-z 0-9 _ -`` replaced by ``_``.

    Example:
        >>> clean_label("Doe^John.1")
        'Doe_John_1'
    """
    return _LABEL_CHARS.sub("_", value)


def scan_id_for(header: DicomHeader) -> str:
    """The scan ID XNAT gives a file's series: the Series Number, else the cleaned series UID.

    Args:
        header: The file's header.

    Returns:
        The scan ID (``NA`` when neither is present).

    Example:
        >>> scan_id_for(header)
        '3'
    """
    number = header.series_number
    if number and "/" not in number and "\\" not in number and number not in (".", ".."):
        return number
    if header.series_instance_uid:
        return clean_label(header.series_instance_uid)
    return "NA"


_SESSION_TYPES: dict[str, str] = {
    "MR": "mr",
    "CT": "ct",
    "PT": "pet",
    "US": "us",
    "CR": "cr",
    "DX": "dx",
    "MG": "mg",
    "NM": "nm",
    "XA": "xa",
    "RF": "rf",
    "OPT": "opt",
    "OP": "op",
    "ECG": "ecg",
    "EEG": "eeg",
    "ES": "es",
    "GM": "gm",
    "IO": "io",
    "SM": "sm",
    "XC": "xc",
}
#: Modalities that ride along in another modality's session (secondary capture, reports…).
_ANCILLARY_SCANS: dict[str, str] = {
    "SC": "xnat:scScanData",
    "SR": "xnat:srScanData",
    "SEG": "xnat:segScanData",
    "OT": "xnat:otherDicomScanData",
    "PR": "xnat:otherDicomScanData",
    "KO": "xnat:otherDicomScanData",
    "DOC": "xnat:otherDicomScanData",
    "REG": "xnat:otherDicomScanData",
}
_LEAD_ORDER = ("PT", "MR", "CT")


def xsi_types_for_modality(modality: str) -> tuple[str, str]:
    """Map a DICOM modality to XNAT's (session xsi:type, scan xsi:type).

    ``MR`` → ``xnat:mrSessionData``/``xnat:mrScanData``, ``CT`` → ``ct…``, ``PT`` →
    ``xnat:petSessionData``/``xnat:petScanData`` and so on for XNAT's built-in types.
    Secondary capture (``SC``), structured reports (``SR``) and segmentations (``SEG``) get
    their own scan types inside an ``xnat:otherDicomSessionData`` when alone; anything else is
    ``xnat:otherDicomSessionData``/``xnat:otherDicomScanData``.

    Args:
        modality: DICOM Modality (0008,0060), any case.

    Returns:
        ``(session_xsi_type, scan_xsi_type)``.

    Example:
        >>> xsi_types_for_modality("PT")
        ('xnat:petSessionData', 'xnat:petScanData')
    """
    key = modality.strip().upper()
    if key in _SESSION_TYPES:
        prefix = _SESSION_TYPES[key]
        return f"xnat:{prefix}SessionData", f"xnat:{prefix}ScanData"
    return "xnat:otherDicomSessionData", _ANCILLARY_SCANS.get(key, "xnat:otherDicomScanData")


def session_xsi_type(modalities: Iterable[str]) -> str:
    """Pick a session's xsi:type from the modalities of its series.

    PET and MR together make ``xnat:petmrSessionData``; otherwise the lead modality wins
    (PT, then MR, then CT, then the first other imaging modality); secondary capture,
    reports and similar ancillary series never decide the type.

    Args:
        modalities: The Modality of each series (repeats are fine).

    Returns:
        The session xsi:type (``xnat:otherDicomSessionData`` when nothing is known).

    Example:
        >>> session_xsi_type(["MR", "PT", "SR"])
        'xnat:petmrSessionData'
    """
    seen = [m.strip().upper() for m in modalities if m and m.strip()]
    primary = [m for m in seen if m in _SESSION_TYPES]
    if "PT" in primary and "MR" in primary:
        return "xnat:petmrSessionData"
    for lead in _LEAD_ORDER:
        if lead in primary:
            return xsi_types_for_modality(lead)[0]
    if primary:
        return xsi_types_for_modality(primary[0])[0]
    return "xnat:otherDicomSessionData"


# ----------------------------------------------------------------------------- internals


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _to_header(path: Path, ds: Dataset, ts: str) -> DicomHeader:
    image_type = ds.get("ImageType")
    if image_type is None:
        types: tuple[str, ...] = ()
    elif isinstance(image_type, str):
        types = (image_type,)
    else:
        types = tuple(str(v) for v in image_type)
    return DicomHeader(
        path=path,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        transfer_syntax_uid=ts,
        modality=_text(ds, "Modality"),
        series_number=_text(ds, "SeriesNumber"),
        instance_number=_text(ds, "InstanceNumber"),
        series_description=_text(ds, "SeriesDescription"),
        study_description=_text(ds, "StudyDescription"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_id=_text(ds, "StudyID"),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        accession_number=_text(ds, "AccessionNumber"),
        patient_comments=_text(ds, "PatientComments"),
        study_comments=_text(ds, "StudyComments"),
        additional_patient_history=_text(ds, "AdditionalPatientHistory"),
        manufacturer=_text(ds, "Manufacturer"),
        image_type=types,
    )


def _assignment(text: str, key: str) -> str | None:
    """XNAT's ``ContainedAssignmentExtractor`` for ``key:value`` in free text.

    Same matching as XNAT's pattern: a key at the very start of the text wins; otherwise
    the last key preceded by a space, comma or semicolon. The value is ``[A-Za-z0-9_-]*``
    and must be followed by a separator or the end of the text.
    """
    if not text:
        return None
    pattern = rf"(?:|.*[\s,;]){re.escape(key)}\s*:\s*([\w\-]*)(?:[\s,;].*)?"
    match = re.fullmatch(pattern, text, re.IGNORECASE | re.ASCII | re.DOTALL)
    return match.group(1) or None if match else None


def _first(values: Iterable[str | None]) -> str | None:
    for value in values:
        if value:
            return value
    return None


class _TruncationGuard:
    """A read-only file wrapper that notices reads and seeks past the end of the file.

    pydicom stops quietly at the end of a file, even inside an element; this records it.
    A read of a tag header (8 bytes) that finds nothing at all is a clean end of file.
    """

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self._fp = fp
        self._size = size
        self.truncated = False

    def read(self, n: int = -1) -> bytes:
        data = self._fp.read(n)
        if 0 < n != len(data) and not (n == 8 and not data):
            self.truncated = True
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._fp.seek(offset, whence)
        if position > self._size:
            self.truncated = True
        return position

    def tell(self) -> int:
        return self._fp.tell()

    def __getattr__(self, name: str) -> object:
        return getattr(self._fp, name)


def _pixel_data_state(
    fp: BinaryIO, size: int, *, deflated: bool, implicit: bool | None, little: bool | None
) -> str:
    """After a ``stop_before_pixels`` read: ``absent``, ``complete`` or ``short``.

    Checks that the file holds every byte the Pixel Data element declares (for encapsulated
    data: every fragment up to the sequence delimiter). Deflated files are checked by zlib.
    """
    if deflated:
        return "complete"
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return "absent"
    order = ">" if little is False else "<"
    group, elem = struct.unpack(order + "HH", head[:4])
    if (group << 16 | elem) != _PIXEL_TAG:
        return "absent"
    if implicit is not False:  # implicit VR (always little endian): 4-byte length
        (length,) = struct.unpack("<I", head[4:8])
        value_at = start + 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        if len(head) < 12:
            return "short"
        (length,) = struct.unpack(order + "I", head[8:12])
        value_at = start + 12
    else:
        (length,) = struct.unpack(order + "H", head[6:8])
        value_at = start + 8
    if length != 0xFFFFFFFF:
        return "complete" if size - value_at >= length else "short"
    position = value_at
    while position + 8 <= size:  # encapsulated: walk the items to the delimiter
        fp.seek(position)
        group, elem, item_length = struct.unpack("<HHI", fp.read(8))
        if (group, elem) == (0xFFFE, 0xE0DD):
            return "complete"
        if (group, elem) != (0xFFFE, 0xE000):
            return "short"
        position += 8 + item_length
    return "short"
