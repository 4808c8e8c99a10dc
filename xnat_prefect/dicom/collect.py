"""Find DICOM files on disk and read the keys that group them.

DICOM-like files are those with a known DICOM extension (``.dcm``, ``.dicom``, ``.dic``,
``.ima``, any case) plus, optionally, files without a real extension (``IM0001``, or names
made of UIDs such as ``1.3.12.2.1107.5.2.43``) that carry the ``DICM`` preamble. Other
extensions are skipped: ``.img`` is usually Analyze/NIfTI in neuroimaging, not DICOM.

Example:
    >>> files = collect_dicom_files(Path("/data/incoming/study1"))
    >>> is_dicom_file(files[0])
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from pydicom import dcmread
from pydicom.errors import BytesLengthException, InvalidDicomError

from xnat_prefect.errors import InvalidInputError

__all__ = [
    "DICOM_EXTENSIONS",
    "SeriesKey",
    "collect_dicom_files",
    "has_dicom_extension",
    "is_dicom_file",
    "read_series_key",
]

#: Extensions taken as DICOM by name alone (compared in lower case).
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic", ".ima"})
_PREAMBLE = 128
_SKIPPED_NAMES = frozenset({"DICOMDIR"})
_KEY_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
]


class SeriesKey(NamedTuple):
    """What identifies a file's place in a study, read from its header.

    Attributes:
        study_instance_uid: (0020,000D).
        series_instance_uid: (0020,000E).
        series_number: (0020,0011) as text (``""`` when absent); XNAT's scan ID.
        sop_instance_uid: (0008,0018).
        sop_class_uid: (0008,0016).
        transfer_syntax_uid: (0002,0010) from the file meta (``""`` without file meta).
    """

    study_instance_uid: str
    series_instance_uid: str
    series_number: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str


def is_dicom_file(path: Path) -> bool:
    """Whether a file starts with the DICOM Part-10 preamble (128 bytes, then ``DICM``).

    Reads 132 bytes; never raises for unreadable files.

    Args:
        path: The file.

    Returns:
        True for a Part-10 file.

    Example:
        >>> is_dicom_file(Path("IM0001"))
        True
    """
    try:
        with path.open("rb") as fp:
            head = fp.read(_PREAMBLE + 4)
    except OSError:
        return False
    return len(head) == _PREAMBLE + 4 and head[_PREAMBLE:] == b"DICM"


def has_dicom_extension(path: Path) -> bool:
    """Whether a file name ends in a known DICOM extension (case-insensitive).

    Args:
        path: The file.

    Returns:
        True for ``.dcm``, ``.dicom``, ``.dic`` and ``.ima``.

    Example:
        >>> has_dicom_extension(Path("a/IM1.DCM"))
        True
    """
    return path.suffix.lower() in DICOM_EXTENSIONS


def collect_dicom_files(root: Path, *, include_extensionless: bool = True) -> list[Path]:
    """Recursively collect DICOM-like files under a directory.

    Hidden files and folders (name starts with ``.``) and ``DICOMDIR`` are skipped;
    symbolic links to folders are not followed.

    Args:
        root: Directory to search.
        include_extensionless: Also take files without a real extension (none, or a numeric
            one as in UID-named files) when they have the ``DICM`` preamble.

    Returns:
        Sorted list of file paths.

    Raises:
        InvalidInputError: ``root`` is not a directory.

    Example:
        >>> collect_dicom_files(Path("/data/study1"))[:1]
        [PosixPath('/data/study1/S001/IM0001.dcm')]
    """
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise InvalidInputError(
            f"DICOM root {root} {what}: pass the folder that holds the DICOM files"
        )
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.upper() in _SKIPPED_NAMES:
                continue
            path = Path(folder, name)
            if has_dicom_extension(path):
                if path.is_file():
                    found.append(path)
            elif include_extensionless and _has_no_real_extension(name) and is_dicom_file(path):
                found.append(path)
    found.sort()
    return found


def read_series_key(path: Path) -> SeriesKey:
    """Read a file's study, series and instance identifiers (header only).

    Args:
        path: A DICOM file (Part-10, or a raw dataset).

    Returns:
        The file's :class:`SeriesKey`.

    Raises:
        InvalidInputError: The file is missing, not DICOM, or has no SOP Instance UID.

    Example:
        >>> read_series_key(files[0]).series_number
        '1'
    """
    try:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_KEY_TAGS)
        except InvalidDicomError:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_KEY_TAGS, force=True)
    except (OSError, EOFError, ValueError, TypeError, AttributeError, BytesLengthException) as exc:
        raise InvalidInputError(
            f"{path} is not a readable DICOM file ({type(exc).__name__}: {exc}); "
            "remove it or fix the file"
        ) from exc
    meta = getattr(ds, "file_meta", None)
    key = SeriesKey(
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or "").strip(),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
        series_number=str(ds.get("SeriesNumber", "") or "").strip(),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "").strip(),
        sop_class_uid=str(ds.get("SOPClassUID", "") or "").strip(),
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
    )
    if not key.sop_instance_uid:
        raise InvalidInputError(
            f"{path} has no SOP Instance UID (0008,0018): it is not a usable DICOM instance; "
            "remove it from the upload"
        )
    return key


def _has_no_real_extension(name: str) -> bool:
    """True for ``IM0001`` and UID-style names (``1.2.840.113619.2.55``), not ``notes.txt``."""
    suffix = Path(name).suffix
    return not suffix or suffix[1:].isdigit()
