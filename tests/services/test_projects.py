"""ProjectService against the emulator (real sockets)."""

from __future__ import annotations

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import Project, Session, Subject
from xnat_prefect.services import ProjectService
from xnat_prefect.testing.server import XNATEmulator


def test_create_returns_the_project_with_settings_and_counts(client: XNATClient) -> None:
    service = ProjectService(client)
    project = service.create(
        "STUDY1",
        name="Study one",
        description="A study",
        keywords="mri brain",
        pi_firstname="Jane",
        pi_lastname="Smith",
        accessibility="protected",
    )
    assert isinstance(project, Project)
    assert project.id == "STUDY1"
    assert project.name == "Study one"
    assert project.description == "A study"
    assert project.keywords == "mri brain"
    assert project.pi == "Jane Smith"
    assert project.accessibility == "protected"
    assert project.prearchive_code == 4
    assert project.subject_count == 0
    assert project.session_count == 0
    assert project["ID"] == "STUDY1"


def test_create_defaults_name_to_id_and_private(client: XNATClient) -> None:
    project = ProjectService(client).create("STUDY2")
    assert project.name == "STUDY2"
    assert project.accessibility == "private"


def test_create_refuses_an_existing_project_instead_of_updating_it(client: XNATClient) -> None:
    service = ProjectService(client)
    service.create("STUDY1", name="Original")
    with pytest.raises(ConflictError, match="already exists"):
        service.create("STUDY1", name="Changed")
    assert service.get("STUDY1").name == "Original"


@pytest.mark.parametrize("bad", ["", "A/B", "has space", "../x", "a..b"])
def test_create_rejects_bad_ids(client: XNATClient, bad: str) -> None:
    with pytest.raises(InvalidInputError, match="project_id"):
        ProjectService(client).create(bad)


def test_create_rejects_bad_accessibility(client: XNATClient) -> None:
    with pytest.raises(InvalidInputError, match="private, protected, public"):
        ProjectService(client).create("STUDY1", accessibility="secret")


def test_create_by_a_non_admin_is_forbidden_when_the_site_says_so(
    xnat_emulator: XNATEmulator, bob: XNATClient
) -> None:
    assert xnat_emulator.state is not None
    xnat_emulator.state.set_site_config("uiAllowNonAdminProjectCreation", False)
    with pytest.raises(PermissionDeniedError):
        ProjectService(bob).create("BOBS")


def test_get_counts_subjects_and_sessions(client: XNATClient) -> None:
    service = ProjectService(client)
    service.create("STUDY1")
    client.put("/data/projects/STUDY1/subjects/S1")
    client.put("/data/projects/STUDY1/subjects/S2")
    client.put(
        "/data/projects/STUDY1/subjects/S1/experiments/S1_MR1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    project = service.get("STUDY1")
    assert (project.subject_count, project.session_count) == (2, 1)
    lean = service.get("STUDY1", include_counts=False)
    assert lean.subject_count is None


def test_get_missing_project_raises_not_found(client: XNATClient) -> None:
    with pytest.raises(ResourceNotFoundError, match="NOPE"):
        ProjectService(client).get("NOPE")


def test_get_private_project_is_not_found_for_a_non_member(
    client: XNATClient, bob: XNATClient
) -> None:
    ProjectService(client).create("SECRET")
    with pytest.raises(ResourceNotFoundError):
        ProjectService(bob).get("SECRET")


def test_list_accessible_and_default_shapes(client: XNATClient, bob: XNATClient) -> None:
    service = ProjectService(client)
    service.create("A1", name="Alpha", pi_firstname="Ann", pi_lastname="Lee")
    service.create("B1", name="Beta", accessibility="protected")
    service.create("C1", name="Gamma", accessibility="public")

    accessible = service.list()
    assert [p.id for p in accessible] == ["A1", "B1", "C1"]
    alpha = accessible[0]
    assert alpha.name == "Alpha"
    assert (alpha.pi_firstname, alpha.pi_lastname) == ("Ann", "Lee")
    assert alpha.accessibility == "private"
    assert alpha.uri == "/data/projects/A1"

    everything = service.list(accessible=False)
    assert [p.id for p in everything] == ["A1", "B1", "C1"]
    assert everything[0].pi_lastname == "Lee"

    assert [p.id for p in ProjectService(bob).list()] == ["C1"]
    assert [p.id for p in ProjectService(bob).list(accessible=False)] == ["B1", "C1"]


def test_list_limit(client: XNATClient) -> None:
    service = ProjectService(client)
    for name in ("A1", "B1", "C1"):
        service.create(name)
    assert len(service.list(limit=2)) == 2
    assert len(service.list(accessible=False, limit=1)) == 1
    with pytest.raises(InvalidInputError, match="limit"):
        service.list(limit=0)


def test_delete(client: XNATClient) -> None:
    service = ProjectService(client)
    service.create("GONE")
    assert service.delete("GONE", remove_files=True) is True
    with pytest.raises(ResourceNotFoundError):
        service.get("GONE")


def test_delete_missing_project_maps_xnats_400_to_not_found(client: XNATClient) -> None:
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        ProjectService(client).delete("NOPE")


def test_delete_by_a_non_owner_is_forbidden(client: XNATClient, bob: XNATClient) -> None:
    ProjectService(client).create("PUB", accessibility="public")
    with pytest.raises(PermissionDeniedError):
        ProjectService(bob).delete("PUB")


def test_get_subjects_and_sessions_return_models(client: XNATClient) -> None:
    service = ProjectService(client)
    service.create("STUDY1")
    for label in ("S1", "S2", "S3"):
        client.put(f"/data/projects/STUDY1/subjects/{label}")
    client.put(
        "/data/projects/STUDY1/subjects/S1/experiments/S1_MR1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    subjects = service.get_subjects("STUDY1")
    assert all(isinstance(s, Subject) for s in subjects)
    assert sorted(s["label"] for s in subjects) == ["S1", "S2", "S3"]
    assert len(service.get_subjects("STUDY1", limit=2)) == 2
    sessions = service.get_sessions("STUDY1")
    assert [type(s) for s in sessions] == [Session]
    assert sessions[0].label == "S1_MR1"
    with pytest.raises(ResourceNotFoundError):
        service.get_subjects("NOPE")


def test_set_accessibility(client: XNATClient, bob: XNATClient) -> None:
    service = ProjectService(client)
    service.create("STUDY1")
    assert service.set_accessibility("STUDY1", "Public") is True
    assert service.get("STUDY1").accessibility == "public"
    with pytest.raises(InvalidInputError, match="accessibility"):
        service.set_accessibility("STUDY1", "open")
    with pytest.raises(PermissionDeniedError):
        ProjectService(bob).set_accessibility("STUDY1", "private")
    with pytest.raises(ResourceNotFoundError):
        service.set_accessibility("NOPE", "private")
