"""SubjectService against the emulator (real sockets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import MergeSummary, RenameSummary, Session, Subject
from xnat_prefect.services import SubjectHasExperimentsError, SubjectService

if TYPE_CHECKING:
    from tests.services.conftest import Seeder


def _labels(client: XNATClient, project: str = "P1") -> list[str]:
    rows = client.get_result_set(f"/data/projects/{project}/subjects")
    return sorted(r["label"] for r in rows)


def _experiment_subjects(client: XNATClient, project: str = "P1") -> dict[str, str]:
    rows = client.get_result_set(
        f"/data/projects/{project}/experiments", {"columns": "ID,label,subject_label"}
    )
    return {r["label"]: r["subject_label"] for r in rows}


# --- list / get ---------------------------------------------------------------------------------


def test_list_project_and_site_wide(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.project("P2")
    for label in ("A", "B", "C"):
        seed.subject("P1", label)
    seed.subject("P2", "Z")
    service = SubjectService(client)
    subjects = service.list(project="P1")
    assert all(isinstance(s, Subject) for s in subjects)
    assert sorted(s.label or "" for s in subjects) == ["A", "B", "C"]
    assert {s.project for s in subjects} == {"P1"}
    assert all(s.id.startswith("XNAT_S") for s in subjects)
    assert len(service.list()) == 4
    assert len(service.list(project="P1", limit=2)) == 2
    assert len(service.list(limit=3)) == 3


def test_list_columns_always_include_id(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "A", gender="female", yob="1980")
    (subject,) = SubjectService(client).list(project="P1", columns=["label", "gender", "yob"])
    assert subject.id.startswith("XNAT_S")
    assert (subject.label, subject.gender, subject.yob) == ("A", "female", 1980)


def test_list_bad_input(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    service = SubjectService(client)
    with pytest.raises(InvalidInputError, match="limit"):
        service.list(project="P1", limit=-1)
    with pytest.raises(InvalidInputError, match="columns"):
        service.list(project="P1", columns="label")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="project"):
        service.list(project="P1/../P2")
    with pytest.raises(ResourceNotFoundError):
        service.list(project="NOPE")


def test_get_by_label_and_id(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    subject_id = seed.subject("P1", "SUB1", group="control", gender="male", yob="1975")
    service = SubjectService(client)
    by_label = service.get("SUB1", project="P1")
    assert by_label.id == subject_id
    assert (by_label.group, by_label.gender, by_label.yob) == ("control", "male", 1975)
    assert service.get(subject_id).label == "SUB1"
    assert service.get(subject_id, project="P1").label == "SUB1"


def test_get_not_found_explains_the_label_rule(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    service = SubjectService(client)
    with pytest.raises(ResourceNotFoundError, match="pass project="):
        service.get("SUB1")
    with pytest.raises(ResourceNotFoundError, match="'NOPE'"):
        service.get("NOPE", project="P1")
    with pytest.raises(InvalidInputError, match="subject_id"):
        service.get("", project="P1")


def test_get_private_subject_is_not_found_for_a_non_member(
    client: XNATClient, bob: XNATClient, seed: Seeder
) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    with pytest.raises(ResourceNotFoundError):
        SubjectService(bob).get("SUB1", project="P1")


# --- create -------------------------------------------------------------------------------------


def test_create(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    subject = SubjectService(client).create(
        "P1", "SUB1", group="patient", gender="Female", yob=1990
    )
    assert subject.id.startswith("XNAT_S")
    assert (subject.label, subject.project) == ("SUB1", "P1")
    assert (subject.group, subject.gender, subject.yob) == ("patient", "female", 1990)


def test_create_refuses_an_existing_label_instead_of_updating(
    client: XNATClient, seed: Seeder
) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1", group="control")
    service = SubjectService(client)
    with pytest.raises(ConflictError, match="'SUB1' already exists"):
        service.create("P1", "SUB1", group="patient")
    assert service.get("SUB1", project="P1").group == "control"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label": "has space"}, "label"),
        ({"label": "a/b"}, "label"),
        ({"label": ""}, "label"),
        ({"label": "OK", "gender": "x"}, "gender"),
        ({"label": "OK", "yob": "1990"}, "yob"),
        ({"label": "OK", "yob": 12}, "yob"),
    ],
)
def test_create_bad_input(client: XNATClient, seed: Seeder, kwargs: dict, match: str) -> None:
    seed.project("P1")
    with pytest.raises(InvalidInputError, match=match):
        SubjectService(client).create("P1", **kwargs)
    assert _labels(client) == []


def test_create_in_missing_project_and_forbidden(
    client: XNATClient, bob: XNATClient, seed: Seeder
) -> None:
    with pytest.raises(ResourceNotFoundError):
        SubjectService(client).create("NOPE", "SUB1")
    seed.project("PUB", accessibility="public")
    with pytest.raises(PermissionDeniedError):
        SubjectService(bob).create("PUB", "SUB1")


# --- delete -------------------------------------------------------------------------------------


def test_delete_empty_subject(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    subject_id = seed.subject("P1", "SUB1")
    seed.subject("P1", "SUB2")
    service = SubjectService(client)
    assert service.delete("SUB1", project="P1") is True
    assert service.delete(service.get("SUB2", project="P1").id, remove_files=True) is True
    assert _labels(client) == []
    with pytest.raises(ResourceNotFoundError):
        service.get(subject_id)


def test_delete_refuses_a_subject_with_experiments_unless_forced(
    client: XNATClient, seed: Seeder
) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    session_id = seed.session("P1", "SUB1", "SUB1_MR1")
    service = SubjectService(client)
    with pytest.raises(SubjectHasExperimentsError, match="1 experiment") as info:
        service.delete("SUB1", project="P1")
    assert isinstance(info.value, ConflictError)
    assert isinstance(info.value, RuntimeError)
    assert info.value.experiments == [session_id]
    assert "force=True" in str(info.value)
    assert _labels(client) == ["SUB1"]
    assert service.delete("SUB1", project="P1", force=True) is True
    assert _labels(client) == []
    assert client.get_result_set("/data/projects/P1/experiments") == []


def test_delete_errors(client: XNATClient, bob: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    with pytest.raises(ResourceNotFoundError):
        SubjectService(client).delete("NOPE", project="P1")
    client.put("/data/projects/P1/users/member/bob")
    with pytest.raises(PermissionDeniedError):
        SubjectService(bob).delete("SUB1", project="P1")
    assert _labels(client) == ["SUB1"]


# --- rename -------------------------------------------------------------------------------------


def test_rename(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    subject_id = seed.subject("P1", "SUB1")
    service = SubjectService(client)
    renamed = service.rename("SUB1", "PART1", project="P1")
    assert (renamed.id, renamed.label) == (subject_id, "PART1")
    assert service.rename(subject_id, "PART2").label == "PART2"
    assert service.rename("PART2", "PART2", project="P1").label == "PART2"
    assert _labels(client) == ["PART2"]


def test_rename_conflict_missing_and_bad_label(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    seed.subject("P1", "SUB2")
    service = SubjectService(client)
    with pytest.raises(ConflictError, match="merge_subjects"):
        service.rename("SUB1", "SUB2", project="P1")
    with pytest.raises(ResourceNotFoundError):
        service.rename("NOPE", "NEW", project="P1")
    assert _labels(client) == ["SUB1", "SUB2"]  # nothing silently created
    with pytest.raises(InvalidInputError, match="new_label"):
        service.rename("SUB1", "bad label", project="P1")


def test_rename_batch(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    for label in ("A", "B", "C", "TAKEN"):
        seed.subject("P1", label)
    service = SubjectService(client)
    mapping = {"A": "A2", "B": "B", "C": "TAKEN", "MISSING": "M2"}
    preview = service.rename_batch("P1", mapping, dry_run=True)
    assert isinstance(preview, RenameSummary)
    assert preview.dry_run is True
    assert preview.renamed == {"A": "A2"}
    assert set(preview.skipped) == {"B", "C", "MISSING"}
    assert _labels(client) == ["A", "B", "C", "TAKEN"]

    summary = service.rename_batch("P1", mapping)
    assert summary["renamed"] == {"A": "A2"}
    assert "TAKEN" in summary.skipped["C"]
    assert "no subject" in summary.skipped["MISSING"]
    assert summary.errors == {}
    assert _labels(client) == ["A2", "B", "C", "TAKEN"]
    again = service.rename_batch("P1", {"A": "A2"})
    assert "already renamed" in again.skipped["A"]


def test_rename_batch_validates_everything_first(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "A")
    with pytest.raises(InvalidInputError, match="mapping"):
        SubjectService(client).rename_batch("P1", {"A": "OK", "B": "no good"})
    assert _labels(client) == ["A"]


def test_rename_pattern(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    for label in ("SUB001", "SUB002", "OTHER", "SUB003x"):
        seed.subject("P1", label)
    service = SubjectService(client)
    preview = service.rename_pattern("P1", r"SUB(\d+)", "PART_{1}", dry_run=True)
    assert preview.renamed == {"SUB001": "PART_001", "SUB002": "PART_002"}
    assert _labels(client) == ["OTHER", "SUB001", "SUB002", "SUB003x"]
    summary = service.rename_pattern("P1", r"SUB(\d+)", "PART_{1}")
    assert summary.renamed == {"SUB001": "PART_001", "SUB002": "PART_002"}
    assert _labels(client) == ["OTHER", "PART_001", "PART_002", "SUB003x"]


def test_rename_pattern_conflicts_skip_or_merge(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "S01")
    seed.subject("P1", "S01_dup")
    seed.session("P1", "S01", "MR_A")
    dup_session = seed.session("P1", "S01_dup", "MR_B")
    service = SubjectService(client)
    skipped = service.rename_pattern("P1", r"(S\d+)_dup", "{1}")
    assert "merge=True" in skipped.skipped["S01_dup"]
    preview = service.rename_pattern("P1", r"(S\d+)_dup", "{1}", merge=True, dry_run=True)
    assert preview.merged == {"S01_dup": "S01"}
    assert _labels(client) == ["S01", "S01_dup"]
    merged = service.rename_pattern("P1", r"(S\d+)_dup", "{1}", merge=True)
    assert merged.merged == {"S01_dup": "S01"}
    assert merged.errors == {}
    assert _labels(client) == ["S01"]
    assert _experiment_subjects(client) == {"MR_A": "S01", "MR_B": "S01"}
    assert dup_session in [s.id for s in service.get_sessions("S01", project="P1")]


def test_rename_pattern_bad_input(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    service = SubjectService(client)
    with pytest.raises(InvalidInputError, match="match_pattern"):
        service.rename_pattern("P1", "SUB(", "{1}")
    with pytest.raises(InvalidInputError, match="capture group"):
        service.rename_pattern("P1", "SUB(1)", "{2}")
    summary = service.rename_pattern("P1", r"SUB(\d)", "bad {1}")
    assert "XNAT labels allow" in summary.errors["SUB1"]
    assert _labels(client) == ["SUB1"]


# --- sessions / merge ---------------------------------------------------------------------------


def test_get_sessions(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    subject_id = seed.subject("P1", "SUB1")
    seed.subject("P1", "SUB2")
    first = seed.session("P1", "SUB1", "MR1")
    seed.session("P1", "SUB2", "MR2")
    service = SubjectService(client)
    sessions = service.get_sessions("SUB1", project="P1")
    assert [type(s) for s in sessions] == [Session]
    assert sessions[0].id == first
    assert [s["label"] for s in service.get_sessions(subject_id)] == ["MR1"]
    with pytest.raises(ResourceNotFoundError):
        service.get_sessions("NOPE", project="P1")


def test_merge_subjects(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "TARGET")
    source_id = seed.subject("P1", "SOURCE")
    seed.session("P1", "TARGET", "T_MR1")
    moved = [seed.session("P1", "SOURCE", "S_MR1"), seed.session("P1", "SOURCE", "S_PET1")]
    service = SubjectService(client)

    preview = service.merge_subjects("P1", "SOURCE", "TARGET", dry_run=True)
    assert isinstance(preview, MergeSummary)
    assert preview.dry_run and not preview.source_deleted
    assert sorted(preview.experiments) == sorted(moved)
    assert _labels(client) == ["SOURCE", "TARGET"]

    summary = service.merge_subjects("P1", "SOURCE", "TARGET")
    assert summary["experiments_moved"] == 2
    assert sorted(summary.experiments) == sorted(moved)
    assert summary.source_deleted is True
    assert _labels(client) == ["TARGET"]
    assert set(_experiment_subjects(client).values()) == {"TARGET"}
    with pytest.raises(ResourceNotFoundError):
        service.get(source_id)


def test_merge_subjects_errors(client: XNATClient, seed: Seeder) -> None:
    seed.project("P1")
    seed.subject("P1", "A")
    service = SubjectService(client)
    with pytest.raises(ResourceNotFoundError, match="'MISSING'"):
        service.merge_subjects("P1", "MISSING", "A")
    with pytest.raises(ResourceNotFoundError, match="'MISSING'"):
        service.merge_subjects("P1", "A", "MISSING")
    with pytest.raises(InvalidInputError, match="same"):
        service.merge_subjects("P1", "A", "A")
