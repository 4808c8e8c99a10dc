"""The emulator's header reader and XNAT's routing rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from xnat_prefect.testing.dicom_headers import (
    DicomHeader,
    clean_label,
    read_header,
    route,
    scan_id_for,
    session_xsi_type,
    xsi_types_for_modality,
)
from xnat_prefect.testing.synthetic import generate_study, write_non_dicom, write_truncated_dicom

PROJECTS = {"PROJ1": "PROJ1", "alias1": "PROJ1", "PROJ2": "PROJ2"}


def known(value: str) -> str | None:
    return PROJECTS.get(value)


def header(**fields: str) -> DicomHeader:
    base = dict.fromkeys(
        (f.name for f in dataclasses.fields(DicomHeader) if f.name not in ("path", "image_type")),
        "",
    )
    base.update(study_instance_uid="1.2.3", sop_instance_uid="1.2.3.4")
    base.update(fields)
    return DicomHeader(path=Path("x.dcm"), image_type=(), **base)


def test_read_header_of_synthetic_file(tmp_path: Path) -> None:
    m = generate_study(tmp_path, project="PROJ1", series=1, instances_per_series=1)
    h = read_header(m.files[0])
    assert h is not None
    assert h.study_instance_uid == m.study_uid
    assert h.sop_instance_uid == m.sop_uids[1][0]
    assert h.series_number == "1" and h.modality == "MR"
    assert h.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert h.image_type == ("ORIGINAL", "PRIMARY", "M", "ND")
    assert h.patient_comments == "Project:PROJ1 Subject:SUBJ001 Session:SESS001"


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless]
)
def test_read_header_other_syntaxes(tmp_path: Path, syntax: str) -> None:
    m = generate_study(tmp_path, series=1, instances_per_series=1, transfer_syntax=syntax)
    h = read_header(m.files[0])
    assert h is not None and h.transfer_syntax_uid == syntax


def test_read_header_returns_none_for_bad_files(tmp_path: Path) -> None:
    assert read_header(write_non_dicom(tmp_path / "a.txt")) is None
    assert read_header(write_truncated_dicom(tmp_path / "b.dcm")) is None
    assert read_header(write_truncated_dicom(tmp_path / "c.dcm", cut="pixels")) is None
    (tmp_path / "empty").write_bytes(b"")
    assert read_header(tmp_path / "empty") is None
    assert read_header(tmp_path / "missing.dcm") is None


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the cut values
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless])
def test_every_truncation_point_is_refused(tmp_path: Path, syntax: str) -> None:
    m = generate_study(
        tmp_path, series=1, instances_per_series=1, rows=8, cols=8, transfer_syntax=syntax
    )
    data = m.files[0].read_bytes()
    cut = tmp_path / "cut.dcm"
    accepted = []
    for size in range(0, len(data), 7):
        cut.write_bytes(data[:size])
        if read_header(cut) is not None:
            accepted.append(size)
    assert accepted == []


def test_file_without_preamble_is_read_with_force(tmp_path: Path) -> None:
    m = generate_study(tmp_path, series=1, instances_per_series=1)
    data = m.files[0].read_bytes()
    meta_length = int.from_bytes(data[140:144], "little")
    raw = tmp_path / "raw"
    raw.write_bytes(data[144 + meta_length :])
    h = read_header(raw)
    assert h is not None and h.sop_instance_uid == m.sop_uids[1][0]
    assert h.transfer_syntax_uid == ""


def test_rule_patient_comments_wins() -> None:
    h = header(
        patient_comments="Project:PROJ1 Subject:S1 Session:E1",
        study_comments="Project:PROJ2 Subject:S2 Session:E2",
        study_description="PROJ2",
        patient_name="Doe^John",
        patient_id="PID",
    )
    r = route(h, known_projects=known)
    assert (r.project, r.subject, r.session, r.auto_archive) == ("PROJ1", "S1", "E1", None)


def test_patient_comments_syntax_variants() -> None:
    h = header(patient_comments="project : alias1,subject:S-1;SESSION:E_1 aa:true")
    r = route(h, known_projects=known)
    assert (r.project, r.subject, r.session, r.auto_archive) == ("PROJ1", "S-1", "E_1", True)
    r = route(header(patient_comments="AA:f Project:PROJ2"), known_projects=known)
    assert r.auto_archive is False and r.project == "PROJ2"
    # keys must stand alone: "MyProject:X" is not "Project:X"
    r = route(header(patient_comments="MyProject:PROJ1"), known_projects=known)
    assert r.project is None
    # like XNAT's pattern: a key at the very start wins, otherwise the last one
    r = route(header(patient_comments="Project:PROJ1 Project:PROJ2"), known_projects=known)
    assert r.project == "PROJ1"
    r = route(header(patient_comments="x Project:PROJ1 Project:PROJ2"), known_projects=known)
    assert r.project == "PROJ2"
    # the value must end at a separator: "Project:PROJ1.x" is no assignment
    r = route(header(patient_comments="Project:PROJ1.x"), known_projects=known)
    assert r.project is None


def test_rule_study_comments_then_additional_patient_history() -> None:
    r = route(header(study_comments="Project:PROJ2 Subject:S2 Session:E2"), known_projects=known)
    assert (r.project, r.subject, r.session) == ("PROJ2", "S2", "E2")
    r = route(
        header(additional_patient_history="Project:PROJ1", patient_name="P^N", patient_id="ID1"),
        known_projects=known,
    )
    assert (r.project, r.subject, r.session) == ("PROJ1", "P_N", "ID1")


def test_rule_standard_fields() -> None:
    h = header(study_description="PROJ2", patient_name="Doe^Jane", patient_id="SESS.01")
    r = route(h, known_projects=known)
    assert (r.project, r.subject, r.session) == ("PROJ2", "Doe_Jane", "SESS_01")


def test_rule_accession_number_last() -> None:
    h = header(study_description="Brain MRI", accession_number="alias1")
    assert route(h, known_projects=known).project == "PROJ1"


def test_unknown_project_falls_through_to_next_rule() -> None:
    h = header(
        patient_comments="Project:NOPE Subject:S1",
        study_comments="Project:ALSO_NOPE",
        study_description="PROJ2",
    )
    r = route(h, known_projects=known)
    assert r.project == "PROJ2" and r.subject == "S1"
    r = route(
        header(patient_comments="Project:NOPE", study_description="Nope"), known_projects=known
    )
    assert r.project is None  # -> prearchive Unassigned


def test_session_label_fallback_and_subject_none() -> None:
    r = route(header(), known_projects=known)
    assert (r.project, r.subject, r.session, r.auto_archive) == (None, None, "dicom_upload", None)


def test_clean_label_and_scan_id() -> None:
    assert clean_label(",f:o^o)") == "_f_o_o_"
    assert scan_id_for(header(series_number="4", series_instance_uid="1.2")) == "4"
    assert scan_id_for(header(series_instance_uid="1.2.3")) == "1_2_3"
    assert scan_id_for(header()) == "NA"


def test_xsi_types() -> None:
    assert xsi_types_for_modality("MR") == ("xnat:mrSessionData", "xnat:mrScanData")
    assert xsi_types_for_modality("ct") == ("xnat:ctSessionData", "xnat:ctScanData")
    assert xsi_types_for_modality("PT") == ("xnat:petSessionData", "xnat:petScanData")
    assert xsi_types_for_modality("SR") == ("xnat:otherDicomSessionData", "xnat:srScanData")
    assert xsi_types_for_modality("SC")[1] == "xnat:scScanData"
    assert xsi_types_for_modality("XYZ") == (
        "xnat:otherDicomSessionData",
        "xnat:otherDicomScanData",
    )
    assert session_xsi_type(["MR", "PT", "SR"]) == "xnat:petmrSessionData"
    assert session_xsi_type(["CT", "PT"]) == "xnat:petSessionData"
    assert session_xsi_type(["SC", "MR"]) == "xnat:mrSessionData"
    assert session_xsi_type(["US"]) == "xnat:usSessionData"
    assert session_xsi_type(["SR"]) == "xnat:otherDicomSessionData"
    assert session_xsi_type([]) == "xnat:otherDicomSessionData"
