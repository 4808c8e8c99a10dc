"""The synthetic DICOM generator writes valid, deterministic Part-10 studies."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from xnat_prefect.testing.synthetic import (
    generate_study,
    write_non_dicom,
    write_truncated_dicom,
)


def test_study_files_are_valid_part10_with_requested_shape(tmp_path: Path) -> None:
    m = generate_study(
        tmp_path, project="PROJ1", series=2, instances_per_series=4, rows=32, cols=48
    )
    assert len(m.files) == 8
    assert sorted(m.series) == [1, 2]
    assert m.total_bytes == sum(f.stat().st_size for f in m.files)
    for path in m.files:
        assert path.read_bytes()[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        assert ds.StudyInstanceUID == m.study_uid
        assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (32, 48, 16)
        assert len(ds.PixelData) == 32 * 48 * 2
        assert ds.PatientComments == "Project:PROJ1 Subject:SUBJ001 Session:SESS001"
        info = m.series[int(ds.SeriesNumber)]
        assert ds.SeriesInstanceUID == info.uid
        assert ds.SeriesDescription == info.description
        assert ds.SOPInstanceUID == m.sop_uids[info.number][int(ds.InstanceNumber) - 1]
    uids = [uid for uids in m.sop_uids.values() for uid in uids]
    assert len(set(uids)) == len(uids) == 8
    assert m.all_sop_uids == set(uids)


def test_same_seed_same_uids_and_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_study(tmp_path / "a", seed=7, series=2, instances_per_series=3)
    b = generate_study(tmp_path / "b", seed=7, series=2, instances_per_series=3)
    c = generate_study(tmp_path / "c", seed=8, series=2, instances_per_series=3)
    assert a.study_uid == b.study_uid and a.sop_uids == b.sop_uids
    assert [f.read_bytes() for f in a.files] == [f.read_bytes() for f in b.files]
    assert c.study_uid != a.study_uid
    assert not (c.all_sop_uids & a.all_sop_uids)


@pytest.mark.parametrize(
    ("modality", "sop_class"),
    [
        ("CT", "1.2.840.10008.5.1.4.1.1.2"),
        ("PT", "1.2.840.10008.5.1.4.1.1.128"),
        ("OT", "1.2.840.10008.5.1.4.1.1.7"),
    ],
)
def test_modalities_use_their_sop_class(tmp_path: Path, modality: str, sop_class: str) -> None:
    m = generate_study(tmp_path, modality=modality, series=1, instances_per_series=1)
    ds = pydicom.dcmread(m.files[0])
    assert (ds.Modality, ds.SOPClassUID) == (modality, sop_class)


def test_mixed_modalities_cycle_over_series(tmp_path: Path) -> None:
    m = generate_study(tmp_path, modality=("MR", "PT"), series=3, instances_per_series=1)
    assert [m.series[n].modality for n in (1, 2, 3)] == ["MR", "PT", "MR"]


@pytest.mark.parametrize(
    "syntax",
    [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        RLELossless,
    ],
)
def test_transfer_syntaxes_round_trip(tmp_path: Path, syntax: str) -> None:
    m = generate_study(tmp_path, series=1, instances_per_series=2, transfer_syntax=syntax)
    ds = pydicom.dcmread(m.files[0])
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPInstanceUID == m.sop_uids[1][0]


def test_rle_pixel_data_decodes_to_the_uncompressed_pixels(tmp_path: Path) -> None:
    from pydicom.encaps import generate_frames
    from pydicom.pixels.decoders.rle import _rle_decode_frame

    rle = generate_study(
        tmp_path / "r", series=1, instances_per_series=1, transfer_syntax=RLELossless
    )
    raw = generate_study(tmp_path / "e", series=1, instances_per_series=1)
    ds_rle, ds_raw = pydicom.dcmread(rle.files[0]), pydicom.dcmread(raw.files[0])
    frame = next(generate_frames(ds_rle.PixelData, number_of_frames=1))
    assert bytes(_rle_decode_frame(frame, 64, 64, 1, 16)) == ds_raw.PixelData


def test_unsupported_transfer_syntax_and_bad_counts_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot generate transfer syntax"):
        generate_study(tmp_path, transfer_syntax=JPEGBaseline8Bit)
    with pytest.raises(ValueError, match=">= 1"):
        generate_study(tmp_path, series=0)
    with pytest.raises(ValueError, match="unsupported modality"):
        generate_study(tmp_path, modality="XX")


def test_routing_modes_fill_the_right_fields(tmp_path: Path) -> None:
    std = generate_study(tmp_path / "s", project="P9", routing="standard_fields", series=1)
    ds = pydicom.dcmread(std.files[0])
    assert (ds.StudyDescription, str(ds.PatientName), ds.PatientID) == ("P9", "SUBJ001", "SESS001")
    assert "PatientComments" not in ds
    none = generate_study(tmp_path / "n", project="P9", routing="none", series=1)
    ds = pydicom.dcmread(none.files[0])
    assert "P9" not in (ds.StudyDescription, ds.AccessionNumber)
    assert "PatientComments" not in ds


def test_extensionless_and_target_size(tmp_path: Path) -> None:
    m = generate_study(
        tmp_path, series=1, instances_per_series=3, extensionless=True, target_file_bytes=130_000
    )
    assert all(f.suffix == "" for f in m.files)
    for f in m.files:
        ds = pydicom.dcmread(f)
        assert abs(f.stat().st_size - 130_000) <= 2 * ds.Columns + 2


def test_bad_input_helpers(tmp_path: Path) -> None:
    text = write_non_dicom(tmp_path / "notes.txt")
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(text)
    header_cut = write_truncated_dicom(tmp_path / "cut.dcm")
    pixel_cut = write_truncated_dicom(tmp_path / "cut2.dcm", cut="pixels")
    assert header_cut.read_bytes()[128:132] == b"DICM"
    assert header_cut.stat().st_size < 1000 < pixel_cut.stat().st_size
