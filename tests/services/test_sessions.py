"""SessionService against the emulator (real sockets)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import Resource, Scan, Session
from xnat_prefect.services import SessionService

if TYPE_CHECKING:
    from tests.services.conftest import Seeder


@pytest.fixture
def study(seed: Seeder) -> dict[str, str]:
    """P1 with SUB1 (MR + PET sessions) and SUB2 (CT session); P2 with one MR session."""
    seed.project("P1")
    seed.project("P2")
    seed.subject("P1", "SUB1")
    seed.subject("P1", "SUB2")
    seed.subject("P2", "OTHER")
    return {
        "mr": seed.session("P1", "SUB1", "SUB1_MR1", date="2024-01-31"),
        "pet": seed.session("P1", "SUB1", "SUB1_PET1", "xnat:petSessionData"),
        "ct": seed.session("P1", "SUB2", "SUB2_CT1", "xnat:ctSessionData"),
        "p2": seed.session("P2", "OTHER", "OTHER_MR1"),
    }


def _custom_fields(client: XNATClient, session_id: str) -> dict[str, str]:
    document = client.get_item(f"/data/experiments/{session_id}")
    for child in document["items"][0].get("children", []):
        if child.get("field") == "fields/field":
            return {
                i["data_fields"]["name"]: i["data_fields"].get("field", "") for i in child["items"]
            }
    return {}


# --- list / get ---------------------------------------------------------------------------------


def test_list_scopes(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    in_project = service.list(project="P1")
    assert all(isinstance(s, Session) for s in in_project)
    assert sorted(s.label or "" for s in in_project) == ["SUB1_MR1", "SUB1_PET1", "SUB2_CT1"]
    by_subject = service.list(project="P1", subject="SUB1")
    assert sorted(s.id for s in by_subject) == sorted([study["mr"], study["pet"]])
    subject_id = client.get_result_set("/data/projects/P1/subjects", {"label": "SUB2"})[0]["ID"]
    assert [s.id for s in service.list(subject=subject_id)] == [study["ct"]]
    assert len(service.list()) == 4
    assert len(service.list(project="P1", limit=2)) == 2


def test_list_modality_filter(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    mr = service.list(project="P1", modality="MR")
    assert [s.id for s in mr] == [study["mr"]]
    assert mr[0].modality == "MR"
    assert mr[0].xsi_type == "xnat:mrSessionData"
    assert [s.id for s in service.list(project="P1", modality="pet")] == [study["pet"]]
    assert [s.id for s in service.list(modality="CT")] == [study["ct"]]
    assert [s.id for s in service.list(modality="xnat:ctSessionData")] == [study["ct"]]
    assert sorted(s.id for s in service.list(modality="MR")) == sorted([study["mr"], study["p2"]])
    with pytest.raises(InvalidInputError, match="modality"):
        service.list(modality="M R")


def test_list_columns_and_errors(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    rows = service.list(project="P1", modality="MR", columns=["label", "subject_label", "date"])
    assert rows[0].id == study["mr"]
    assert rows[0].subject_label == "SUB1"
    assert rows[0].session_date == date(2024, 1, 31)
    with pytest.raises(ResourceNotFoundError):
        service.list(project="NOPE")
    with pytest.raises(ResourceNotFoundError):
        service.list(project="P1", subject="NOPE")
    with pytest.raises(ResourceNotFoundError, match="accession ID"):
        service.list(subject="SUB1")
    with pytest.raises(InvalidInputError, match="limit"):
        service.list(limit=0)


def test_get_by_id_and_label(client: XNATClient, study: dict[str, str], seed: Seeder) -> None:
    seed.scan(study["mr"], "1")
    seed.scan(study["mr"], "2")
    service = SessionService(client)
    session = service.get(study["mr"])
    assert (session.label, session.project) == ("SUB1_MR1", "P1")
    assert session.session_date == date(2024, 1, 31)
    assert session.scan_count == 2
    assert session.modality == "MR"
    assert service.get("SUB1_MR1", project="P1").id == study["mr"]


def test_get_not_found(client: XNATClient, study: dict[str, str], bob: XNATClient) -> None:
    service = SessionService(client)
    with pytest.raises(ResourceNotFoundError, match="pass project="):
        service.get("SUB1_MR1")
    with pytest.raises(ResourceNotFoundError):
        service.get("NOPE", project="P1")
    with pytest.raises(ResourceNotFoundError):
        SessionService(bob).get(study["mr"])
    with pytest.raises(InvalidInputError, match="session_id"):
        service.get("../x", project="P1")


# --- create / delete ----------------------------------------------------------------------------


def test_create(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    session = service.create(
        "P1", "SUB1", "SUB1_MR2", date="2024-02-01", time="10:30:00", visit_id="V2"
    )
    assert session.id.startswith("XNAT_E")
    assert (session.label, session.project, session.xsi_type) == (
        "SUB1_MR2",
        "P1",
        "xnat:mrSessionData",
    )
    assert session.session_date == date(2024, 2, 1)
    assert session.time == "10:30:00"
    assert session.visit_id == "V2"
    pet = service.create("P1", "SUB2", "SUB2_PET9", xsi_type="xnat:mrSessionData", modality="PET")
    assert pet.xsi_type == "xnat:petSessionData"
    ct = service.create("P1", "SUB2", "SUB2_CT9", xsi_type="xnat:ctSessionData")
    assert ct.modality == "CT"


def test_create_refuses_existing_label_and_missing_subject(
    client: XNATClient, study: dict[str, str]
) -> None:
    service = SessionService(client)
    with pytest.raises(ConflictError, match="'SUB1_MR1' already exists"):
        service.create("P1", "SUB2", "SUB1_MR1", date="2020-01-01")
    assert service.get(study["mr"]).session_date == date(2024, 1, 31)
    with pytest.raises(ResourceNotFoundError, match=r"SubjectService\.create"):
        service.create("P1", "TYPO", "TYPO_MR1")
    labels = [r["label"] for r in client.get_result_set("/data/projects/P1/subjects")]
    assert "TYPO" not in labels


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label": "bad label"}, "label"),
        ({"label": "OK", "date": "31/01/2024"}, "date"),
        ({"label": "OK", "time": "25:00"}, "time"),
        ({"label": "OK", "xsi_type": "mrSession"}, "xsi_type"),
        ({"label": "OK", "modality": "M-R"}, "modality"),
    ],
)
def test_create_bad_input(
    client: XNATClient, study: dict[str, str], kwargs: dict, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        SessionService(client).create("P1", "SUB1", **kwargs)


def test_create_forbidden_for_non_member(
    client: XNATClient, bob: XNATClient, study: dict[str, str]
) -> None:
    client.put("/data/projects/P1/accessibility/protected")
    with pytest.raises((PermissionDeniedError, ResourceNotFoundError)):
        SessionService(bob).create("P1", "SUB1", "BOB_MR")
    client.put("/data/projects/P1/users/collaborator/bob")
    with pytest.raises(PermissionDeniedError):
        SessionService(bob).create("P1", "SUB1", "BOB_MR")


def test_delete(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    assert service.delete("SUB1_MR1", project="P1") is True
    assert service.delete(study["pet"], remove_files=True) is True
    remaining = [s.label for s in service.list(project="P1")]
    assert remaining == ["SUB2_CT1"]
    with pytest.raises(ResourceNotFoundError, match="pass project="):
        service.delete("SUB2_CT1")
    with pytest.raises(ResourceNotFoundError):
        service.delete(study["pet"])


def test_delete_by_member_is_forbidden(
    client: XNATClient, bob: XNATClient, study: dict[str, str]
) -> None:
    client.put("/data/projects/P1/users/member/bob")
    with pytest.raises(PermissionDeniedError):
        SessionService(bob).delete(study["mr"])
    assert SessionService(client).get(study["mr"]).id == study["mr"]


# --- children -----------------------------------------------------------------------------------


def test_get_scans_and_resources(client: XNATClient, study: dict[str, str], seed: Seeder) -> None:
    seed.scan(study["mr"], "1", "T1w")
    seed.scan(study["mr"], "2", "T2w")
    seed.file(f"/data/experiments/{study['mr']}", "QC", "report.txt")
    service = SessionService(client)
    scans = service.get_scans("SUB1_MR1", project="P1")
    assert [type(s) for s in scans] == [Scan, Scan]
    assert [(s.scan_id, s["type"]) for s in scans] == [("1", "T1w"), ("2", "T2w")]
    resources = service.get_resources(study["mr"])
    assert [type(r) for r in resources] == [Resource]
    assert resources[0].label == "QC"
    with pytest.raises(ResourceNotFoundError):
        service.get_scans("NOPE", project="P1")


# --- set_field ----------------------------------------------------------------------------------


def test_set_field_shortcuts_and_data_fields(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    assert service.set_field("SUB1_MR1", "note", "motion in run 2", project="P1") is True
    assert service.set_field(study["mr"], "visit_id", "V7") is True
    assert service.set_field(study["mr"], "acquisition_site", "Site A") is True
    document = client.get_item(f"/data/experiments/{study['mr']}")
    fields = document["items"][0]["data_fields"]
    assert fields["note"] == "motion in run 2"
    assert fields["visit_id"] == "V7"
    assert fields["acquisition_site"] == "Site A"
    assert service.get(study["mr"]).visit_id == "V7"


def test_set_field_custom_variable(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    assert service.set_field(study["pet"], "tracer_batch", "B-42") is True
    assert _custom_fields(client, study["pet"]) == {"tracer_batch": "B-42"}
    assert service.set_field("SUB1_MR1", "site_code", "07", project="P1") is True
    assert _custom_fields(client, study["mr"]) == {"site_code": "07"}


def test_set_field_errors(client: XNATClient, bob: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    with pytest.raises(InvalidInputError, match="field"):
        service.set_field(study["mr"], "bad name", "x")
    with pytest.raises(InvalidInputError, match="string"):
        service.set_field(study["mr"], "note", 5)  # type: ignore[arg-type]
    with pytest.raises(ResourceNotFoundError):
        service.set_field("NOPE", "note", "x", project="P1")
    client.put("/data/projects/P1/users/collaborator/bob")
    with pytest.raises(PermissionDeniedError):
        SessionService(bob).set_field(study["mr"], "note", "x")


# --- share --------------------------------------------------------------------------------------


def test_share(client: XNATClient, study: dict[str, str]) -> None:
    service = SessionService(client)
    assert service.share(study["mr"], "P2", label="SHARED_MR") is True
    shared = client.get_result_set("/data/projects/P2/experiments")
    assert "SHARED_MR" in [r["label"] for r in shared]
    with pytest.raises(ConflictError, match="cannot share"):
        service.share(study["mr"], "P2")
    assert service.share("SUB1_PET1", "P2", primary=True, project="P1") is True
    assert service.get(study["pet"]).project == "P2"
    with pytest.raises(ResourceNotFoundError):
        service.share(study["ct"], "NOPE")
    with pytest.raises(InvalidInputError, match="label"):
        service.share(study["ct"], "P2", label="bad label")
