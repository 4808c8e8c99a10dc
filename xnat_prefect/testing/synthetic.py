"""Synthetic DICOM studies for tests, the demo and benchmarks.

Everything here is deterministic: the same arguments (including ``seed``) give the same UIDs
and the same bytes. Files are valid DICOM Part-10 files (preamble, ``DICM``, file meta) with
uint16 pixel data of the requested size.

Example:
    >>> manifest = generate_study(tmp_path / "study", project="PROJ1", series=2,
    ...                           instances_per_series=5)
    >>> len(manifest.files)
    10
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "SUPPORTED_MODALITIES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "SeriesInfo",
    "StudyManifest",
    "generate_study",
    "write_non_dicom",
    "write_truncated_dicom",
]

RoutingMode = Literal["patient_comments", "standard_fields", "none"]

#: Modality → (SOP class, series descriptions to cycle through).
_MODALITIES: dict[str, tuple[UID, tuple[str, ...]]] = {
    "MR": (MRImageStorage, ("T1_MPRAGE", "T2_FLAIR", "DWI", "BOLD_rest", "FieldMap")),
    "CT": (CTImageStorage, ("Head_Axial", "Head_Coronal", "Head_Sagittal", "Scout")),
    "PT": (PositronEmissionTomographyImageStorage, ("PET_AC", "PET_NAC", "PET_Dynamic")),
    "OT": (SecondaryCaptureImageStorage, ("Screen_Save", "Report_Capture")),
}
SUPPORTED_MODALITIES: frozenset[str] = frozenset(_MODALITIES)
SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        RLELossless,
    }
)
_IMAGE_TYPE = {
    "MR": ["ORIGINAL", "PRIMARY", "M", "ND"],
    "CT": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "PT": ["ORIGINAL", "PRIMARY"],
    "OT": ["DERIVED", "SECONDARY"],
}
_MANUFACTURER = "xnat-prefect synthetic"


@dataclass(frozen=True)
class SeriesInfo:
    """One generated series.

    Attributes:
        number: Series Number (0020,0011); XNAT uses it as the scan ID.
        uid: Series Instance UID.
        description: Series Description (0008,103E); XNAT's scan type.
        modality: Modality of the series (``MR``, ``CT``, ``PT`` or ``OT``).
        sop_class_uid: SOP Class UID of every instance in the series.
        count: Number of instances (files).
    """

    number: int
    uid: str
    description: str
    modality: str
    sop_class_uid: str
    count: int


@dataclass
class StudyManifest:
    """What :func:`generate_study` wrote.

    Attributes:
        study_uid: Study Instance UID shared by every file.
        project: Project written into the routing fields (``None`` if none).
        subject: Subject label written into the routing fields.
        session: Session label written into the routing fields.
        transfer_syntax: Transfer syntax UID of every file.
        files: Every file written, in series then instance order.
        sop_uids: Series number → SOP Instance UIDs in instance order.
        series: Series number → :class:`SeriesInfo`.
        total_bytes: Sum of the file sizes.
    """

    study_uid: str
    project: str | None
    subject: str
    session: str
    transfer_syntax: str
    files: list[Path] = field(default_factory=list)
    sop_uids: dict[int, list[str]] = field(default_factory=dict)
    series: dict[int, SeriesInfo] = field(default_factory=dict)
    total_bytes: int = 0

    @property
    def all_sop_uids(self) -> set[str]:
        """Every SOP Instance UID of the study."""
        return {uid for uids in self.sop_uids.values() for uid in uids}


def generate_study(
    out_dir: Path,
    *,
    project: str | None = None,
    subject: str = "SUBJ001",
    session: str = "SESS001",
    modality: str | Sequence[str] = "MR",
    series: int = 3,
    instances_per_series: int = 10,
    rows: int = 64,
    cols: int = 64,
    routing: RoutingMode = "patient_comments",
    seed: int = 0,
    study_uid: str | None = None,
    extensionless: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    target_file_bytes: int | None = None,
    accession_number: str = "",
) -> StudyManifest:
    """Write a synthetic DICOM study as Part-10 files under ``out_dir``.

    Files go to ``out_dir/S{series:03d}/IM{instance:04d}.dcm`` (no ``.dcm`` when
    ``extensionless``). Routing fields follow ``routing``:

    * ``patient_comments``: Patient Comments ``Project:P Subject:S Session:E`` (Project omitted
      when ``project`` is None); the standard fields hold values that route elsewhere
      (Patient Name ``SYNTH^{subject}``, Patient ID ``PID_{session}``), so a test can tell
      which rule won.
    * ``standard_fields``: Study Description = project, Patient Name = subject,
      Patient ID = session; no comments.
    * ``none``: nothing that names a project (Patient Name ``Anonymous``, ID ``ANON``).

    Args:
        out_dir: Directory to write into (created if missing).
        project: Project ID to route to.
        subject: Subject label.
        session: Session label.
        modality: ``MR``, ``CT``, ``PT`` or ``OT``, or a sequence cycled over the series
            (``("MR", "PT")`` makes a PET/MR study).
        series: Number of series (≥ 1).
        instances_per_series: Files per series (≥ 1).
        rows: Image rows (ignored when ``target_file_bytes`` is set).
        cols: Image columns (ignored when ``target_file_bytes`` is set).
        routing: Which header fields carry the routing (see above).
        seed: Seed for UIDs, dates and pixel noise.
        study_uid: Use this Study Instance UID instead of a derived one.
        extensionless: Write files without an extension (like many scanners).
        transfer_syntax: One of :data:`SUPPORTED_TRANSFER_SYNTAXES`.
        target_file_bytes: Pick the image size so each file is about this many bytes
            (within one image row). 256x256 uint16 is ~132 kB per file.
        accession_number: Accession Number (0008,0050), XNAT's last project rule.

    Returns:
        A :class:`StudyManifest` describing every file written.

    Raises:
        ValueError: A count, size, modality, routing or transfer syntax is invalid.

    Example:
        >>> m = generate_study(tmp_path, project="P1", routing="standard_fields", series=1)
        >>> sorted(m.series)
        [1]
    """
    modalities = [modality] if isinstance(modality, str) else list(modality)
    _check_arguments(modalities, series, instances_per_series, rows, cols, routing, transfer_syntax)
    ts = UID(transfer_syntax)
    study = UID(study_uid) if study_uid else _uid("study", seed, project or "", subject, session)
    manifest = StudyManifest(
        study_uid=str(study),
        project=project,
        subject=subject,
        session=session,
        transfer_syntax=str(ts),
    )
    study_day = dt.date(2024, 1, 1) + dt.timedelta(days=seed % 365)
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(series):
        number = index + 1
        mod = modalities[index % len(modalities)]
        sop_class, descriptions = _MODALITIES[mod]
        description = descriptions[index % len(descriptions)]
        if index >= len(descriptions):
            description = f"{description}_{index // len(descriptions) + 1}"
        series_uid = _uid(study, "series", number)
        template = _series_template(
            study=study,
            series_uid=series_uid,
            number=number,
            modality=mod,
            sop_class=sop_class,
            description=description,
            study_day=study_day,
            seed=seed,
        )
        _apply_routing(template, routing, project, subject, session, mod)
        template.AccessionNumber = accession_number
        if target_file_bytes is not None:
            rows, cols = _size_for_target(template, ts, target_file_bytes)
        template.Rows, template.Columns = rows, cols
        noise = rng.randbytes(rows * cols * 2)
        series_dir = out_dir / f"S{number:03d}"
        series_dir.mkdir(exist_ok=True)
        uids: list[str] = []
        for instance in range(1, instances_per_series + 1):
            sop_uid = _uid(series_uid, "instance", instance)
            name = f"IM{instance:04d}" + ("" if extensionless else ".dcm")
            path = series_dir / name
            shift = (instance * 2 * 97) % len(noise)
            pixels = noise[shift:] + noise[:shift]
            _write_instance(template, path, sop_uid, instance, pixels, ts)
            manifest.files.append(path)
            manifest.total_bytes += path.stat().st_size
            uids.append(str(sop_uid))
        manifest.sop_uids[number] = uids
        manifest.series[number] = SeriesInfo(
            number=number,
            uid=str(series_uid),
            description=description,
            modality=mod,
            sop_class_uid=str(sop_class),
            count=instances_per_series,
        )
    return manifest


def write_non_dicom(path: Path) -> Path:
    """Write a file that is not DICOM (for bad-input tests).

    Args:
        path: Where to write.

    Returns:
        ``path``.

    Example:
        >>> write_non_dicom(tmp_path / "notes.txt").read_text()[:3]
        'thi'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a DICOM file\n" * 8, encoding="ascii")
    return path


def write_truncated_dicom(
    path: Path, *, cut: Literal["header", "pixels"] = "header", seed: int = 0
) -> Path:
    """Write a DICOM file cut short (for bad-input tests).

    Args:
        path: Where to write.
        cut: ``header`` stops inside the dataset's header elements; ``pixels`` stops
            halfway through the pixel data.
        seed: Seed for the UIDs.

    Returns:
        ``path``.

    Example:
        >>> write_truncated_dicom(tmp_path / "bad.dcm").stat().st_size < 1000
        True
    """
    template = _series_template(
        study=_uid("truncated", seed),
        series_uid=_uid("truncated-series", seed),
        number=1,
        modality="MR",
        sop_class=MRImageStorage,
        description="Truncated",
        study_day=dt.date(2024, 1, 1),
        seed=seed,
    )
    _apply_routing(template, "none", None, "SUBJ", "SESS", "MR")
    template.Rows = template.Columns = 32
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = random.Random(seed).randbytes(32 * 32 * 2)
    _write_instance(template, path, _uid("truncated-sop", seed), 1, pixels, ExplicitVRLittleEndian)
    data = path.read_bytes()
    if cut == "pixels":
        keep = len(data) - len(pixels) // 2
    else:
        study_uid_at = data.find(str(template.StudyInstanceUID).encode("ascii"), 132 + 100)
        keep = (study_uid_at + 10) if study_uid_at > 0 else 400
    path.write_bytes(data[:keep])
    return path


# ----------------------------------------------------------------------------- internals


def _check_arguments(
    modalities: list[str],
    series: int,
    instances: int,
    rows: int,
    cols: int,
    routing: str,
    transfer_syntax: str,
) -> None:
    unknown = [m for m in modalities if m not in _MODALITIES]
    if not modalities or unknown:
        raise ValueError(
            f"unsupported modality {unknown or modalities!r}: use one or more of "
            f"{sorted(_MODALITIES)}"
        )
    if series < 1 or instances < 1 or rows < 1 or cols < 1:
        raise ValueError(
            "series, instances_per_series, rows and cols must all be >= 1 "
            f"(got {series}, {instances}, {rows}, {cols})"
        )
    if routing not in ("patient_comments", "standard_fields", "none"):
        raise ValueError(
            f"unknown routing {routing!r}: use 'patient_comments', 'standard_fields' or 'none'"
        )
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        names = sorted(UID(u).name for u in SUPPORTED_TRANSFER_SYNTAXES)
        raise ValueError(f"cannot generate transfer syntax {transfer_syntax!r}: use one of {names}")


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=["xnat-prefect-synthetic", *map(str, parts)])


def _series_template(
    *,
    study: UID,
    series_uid: UID,
    number: int,
    modality: str,
    sop_class: UID,
    description: str,
    study_day: dt.date,
    seed: int,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = _IMAGE_TYPE[modality]
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = study_day.strftime("%Y%m%d")
    ds.StudyTime = f"{9 + seed % 8:02d}3000"
    ds.SeriesTime = f"{9 + seed % 8:02d}{30 + number % 30:02d}00"
    ds.Modality = modality
    ds.Manufacturer = _MANUFACTURER
    ds.StudyDescription = ""
    ds.SeriesDescription = description
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{seed % 100000}"
    ds.SeriesNumber = number
    ds.FrameOfReferenceUID = _uid(study, "frame")
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [1.0, 1.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if modality in ("CT", "PT"):
        ds.RescaleIntercept = -1024 if modality == "CT" else 0
        ds.RescaleSlope = 1
    if modality == "OT":
        ds.ConversionType = "WSD"
    return ds


def _apply_routing(
    ds: Dataset, routing: str, project: str | None, subject: str, session: str, modality: str
) -> None:
    if routing == "patient_comments":
        parts = [f"Project:{project}"] if project else []
        parts += [f"Subject:{subject}", f"Session:{session}"]
        ds.PatientComments = " ".join(parts)
        ds.StudyDescription = f"Synthetic {modality} study"
        ds.PatientName = f"SYNTH^{subject}"
        ds.PatientID = f"PID_{session}"
    elif routing == "standard_fields":
        ds.StudyDescription = project or ""
        ds.PatientName = subject
        ds.PatientID = session
    else:
        ds.StudyDescription = f"Synthetic {modality} study"
        ds.PatientName = "Anonymous"
        ds.PatientID = "ANON"


def _size_for_target(template: Dataset, ts: UID, target: int) -> tuple[int, int]:
    template.Rows = template.Columns = 1
    header = len(_encode(template, b"", "1.2.3", 1, ts))
    budget = max(2, target - header)
    cols = max(1, math.isqrt(budget // 2))
    rows = max(1, round(budget / (2 * cols)))
    return rows, cols


def _encode(template: Dataset, pixels: bytes, sop_uid: str, instance: int, ts: UID) -> bytes:
    ds = template
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance
    ds.SliceLocation = float(instance)
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "XNATPREFECT_SYN"
    ds.file_meta = meta
    if ts == RLELossless:
        ds.PixelData = _rle_encapsulate(pixels, int(ds.Rows), int(ds.Columns))
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"
        ds["PixelData"].is_undefined_length = False
    buffer = BytesIO()
    ds.save_as(
        buffer,
        implicit_vr=ts.is_implicit_VR,
        little_endian=ts.is_little_endian,
        enforce_file_format=True,
    )
    return buffer.getvalue()


def _write_instance(
    template: Dataset, path: Path, sop_uid: str, instance: int, pixels: bytes, ts: UID
) -> None:
    data = _encode(template, pixels, sop_uid, instance, ts)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)


def _rle_encapsulate(pixels: bytes, rows: int, cols: int) -> bytes:
    """DICOM RLE (PS3.5 Annex G) of one 16-bit frame, encapsulated with an empty offset table."""
    high, low = pixels[1::2], pixels[0::2]  # little-endian samples: MSB segment first
    segments = [_packbits_rows(plane, rows, cols) for plane in (high, low)]
    header = struct.pack("<16I", 2, 64, 64 + len(segments[0]), *([0] * 13))
    fragment = header + segments[0] + segments[1]
    if len(fragment) % 2:
        fragment += b"\x00"
    return encapsulate([fragment])


def _packbits_rows(plane: bytes, rows: int, cols: int) -> bytes:
    out = bytearray()
    for r in range(rows):
        row = plane[r * cols : (r + 1) * cols]
        i, n = 0, len(row)
        while i < n:
            run = 1
            while i + run < n and run < 128 and row[i + run] == row[i]:
                run += 1
            if run >= 3:
                out += bytes((257 - run, row[i]))
                i += run
                continue
            start = i
            while i < n and i - start < 128:
                if i + 2 < n and row[i] == row[i + 1] == row[i + 2]:
                    break
                i += 1
            out.append(i - start - 1)
            out += row[start:i]
    if len(out) % 2:
        out.append(0x80)  # no-op byte keeps the segment even
    return bytes(out)
