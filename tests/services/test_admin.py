"""AdminService against the emulator: catalog refresh, users/groups, audit, server and config."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, PermissionDeniedError, ResourceNotFoundError
from xnat_prefect.models import AuditEntry, BatchSummary, ServerInfo, User
from xnat_prefect.services._admin_audit import parse_since
from xnat_prefect.services.admin import AdminService
from xnat_prefect.testing.server import XNATEmulator

if TYPE_CHECKING:
    from tests.services.conftest import Seeder


def _session_with_file(seed: Seeder, label: str, name: str = "0001.dcm") -> str:
    session_id = seed.session("P1", "SUB1", label)
    seed.scan(session_id, "1")
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", name, data=label.encode())
    return session_id


@pytest.fixture
def two_sessions(seed: Seeder) -> list[str]:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    return [_session_with_file(seed, "MR1"), _session_with_file(seed, "MR2")]


def _files(client: XNATClient, session_id: str) -> dict[str, dict[str, str]]:
    rows = client.get_result_set(f"/data/experiments/{session_id}/scans/1/resources/DICOM/files")
    return {r["Name"]: r for r in rows}


def _file_count(client: XNATClient, session_id: str) -> str:
    rows = client.get_result_set(f"/data/experiments/{session_id}/scans/1/resources")
    return rows[0]["file_count"]


def _on_disk(emulator: XNATEmulator, content: bytes) -> Path:
    """The archived file holding ``content`` (found by walking the data dir, like an admin)."""
    for path in emulator.data_dir.rglob("*.dcm"):
        if path.is_file() and path.read_bytes() == content:
            return path
    raise AssertionError(f"no archived file holds {content!r}")


def test_refresh_all_experiments(
    xnat_emulator: XNATEmulator, client: XNATClient, two_sessions: list[str]
) -> None:
    calls: list[tuple[int, int, str]] = []
    threads: set[str] = set()

    def progress(current: int, total: int, experiment_id: str) -> None:
        calls.append((current, total, experiment_id))
        threads.add(threading.current_thread().name)

    summary = AdminService(client).refresh_catalogs("P1", progress_callback=progress)
    assert isinstance(summary, BatchSummary) and summary.success
    assert summary.total == 2 and sorted(summary["refreshed"]) == sorted(two_sessions)
    assert sorted(c[0] for c in calls) == [1, 2] and {c[1] for c in calls} == {2}
    assert threads == {threading.current_thread().name}
    sequential = AdminService(client).refresh_catalogs("P1", parallel=False, limit=1)
    assert sequential.total == 1 and len(sequential.succeeded) == 1


def test_refresh_options(
    xnat_emulator: XNATEmulator, client: XNATClient, two_sessions: list[str]
) -> None:
    service = AdminService(client)
    first = two_sessions[0]
    folder = _on_disk(xnat_emulator, b"MR1").parent
    (folder / "0002.dcm").write_bytes(b"extra")
    assert service.refresh_catalogs("P1", experiments=[first], options=["append"]).success
    assert set(_files(client, first)) == {"0001.dcm", "0002.dcm"}
    assert _file_count(client, first) == "1"  # append alone leaves the stats alone
    assert service.refresh_catalogs("P1", experiments=["MR1"], options=["populateStats"]).success
    assert _file_count(client, first) == "2"
    (folder / "0001.dcm").unlink()
    summary = service.refresh_catalogs("P1", experiments=[first], options=["delete", "append"])
    assert summary["refreshed"] == [first]
    assert set(_files(client, first)) == {"0002.dcm"}
    assert service.set_site_config("checksums", False)
    second = two_sessions[1]
    client.put(
        f"/data/experiments/{second}/scans/1/resources/DICOM/files/0003.dcm",
        params={"inbody": "true"},
        content=b"late",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert _files(client, second)["0003.dcm"]["digest"] == ""
    assert service.set_site_config("checksums", True)
    assert service.refresh_catalogs("P1", experiments=[second], options=["checksum"]).success
    assert len(_files(client, second)["0003.dcm"]["digest"]) == 32


def test_refresh_failures_and_checks(
    xnat_emulator: XNATEmulator,
    client: XNATClient,
    bob: XNATClient,
    two_sessions: list[str],
) -> None:
    service = AdminService(client)
    summary = service.refresh_catalogs("P1", experiments=[two_sessions[0], "XNAT_E99999"])
    assert summary["refreshed"] == [two_sessions[0]] and not summary.success
    assert "XNAT_E99999" in summary.failed and "404" in summary.failed["XNAT_E99999"]
    assert summary.errors[0].startswith("XNAT_E99999: ")
    with pytest.raises(InvalidInputError, match="options"):
        service.refresh_catalogs("P1", options=["sparkle"])
    with pytest.raises(InvalidInputError, match="options"):
        service.refresh_catalogs("P1", options=[])
    with pytest.raises(InvalidInputError, match="workers"):
        service.refresh_catalogs("P1", workers=0)
    with pytest.raises(ResourceNotFoundError, match="'NOPE'"):
        service.refresh_catalogs("NOPE")
    client.put("/data/projects/P1/users/collaborator/bob")
    denied = AdminService(bob).refresh_catalogs("P1")
    assert denied["refreshed"] == [] and len(denied.failed) == 2
    assert all("403" in reason for reason in denied.failed.values())


def test_groups_add_and_remove(
    xnat_emulator: XNATEmulator, client: XNATClient, bob: XNATClient, seed: Seeder
) -> None:
    seed.project("P1")
    seed.project("P2")
    service = AdminService(client)
    added = service.add_user_to_groups("bob", ["P1_member"])
    assert added["added"] == ["P1_member"] and added.success
    assert service.get_user("bob").groups == ["P1_member"]
    owners = service.add_user_to_groups("bob", ["owner"], projects=["P1", "P2"])
    assert owners["added"] == ["P1_owner", "P2_owner"]
    assert sorted(service.get_user("bob").groups) == ["P1_owner", "P2_owner"]
    collab = service.add_user_to_groups("bob", [], projects=["P2"], role="collaborator")
    assert collab["added"] == ["P2_collaborator"]
    bad = service.add_user_to_groups("bob", ["NOPE_member", "P1_member"])
    assert bad["added"] == ["P1_member"] and "NOPE_member" in bad.failed
    removed = service.remove_user_from_groups("bob", ["P1_member"])
    assert removed["removed"] == ["P1_member"]
    left = service.remove_user_from_groups("bob", [], projects=["P2"])
    assert left["removed"] == ["P2_collaborator"] and service.get_user("bob").groups == []
    denied = AdminService(bob).add_user_to_groups("bob", ["P1_owner"])
    assert denied["added"] == [] and "403" in denied.failed["P1_owner"]
    with pytest.raises(InvalidInputError, match="projects="):
        service.add_user_to_groups("bob", ["member"])
    with pytest.raises(InvalidInputError, match="role"):
        service.add_user_to_groups("bob", [], projects=["P1"], role="boss")
    with pytest.raises(InvalidInputError):
        service.add_user_to_groups("bob", "P1_member")  # type: ignore[arg-type]


def test_users(xnat_emulator: XNATEmulator, client: XNATClient, bob: XNATClient) -> None:
    xnat_emulator.add_user("carol", "pw", firstname="Carol", lastname="Ng", email="c@x.org")
    client.put("/data/projects/P1")
    client.put("/data/projects/P1/users/member/carol")
    service = AdminService(client)
    everyone = service.list_users()
    assert all(isinstance(u, User) for u in everyone)
    assert {"admin", "bob", "carol"} <= {u.login for u in everyone}
    carol = next(u for u in everyone if u.login == "carol")
    assert (carol.firstname, carol.lastname, carol.email) == ("Carol", "Ng", "c@x.org")
    assert isinstance(carol.id, int)
    members = {u.login: u for u in service.list_users(project="P1")}
    assert members["carol"].groups == ["P1_member"] and members["carol"]["role"] == "member"
    assert members["admin"]["role"] == "owner"
    detail = service.get_user("carol")
    assert detail.login == "carol" and detail.enabled is True and detail.groups == ["P1_member"]
    assert service.get_user("admin").roles == ["Administrator"]
    with pytest.raises(ResourceNotFoundError, match="'nobody'"):
        service.get_user("nobody")
    with pytest.raises(ResourceNotFoundError):
        service.list_users(project="NOPE")
    with pytest.raises(PermissionDeniedError):
        AdminService(bob).list_users()
    with pytest.raises(PermissionDeniedError):
        AdminService(bob).get_user("carol")
    assert AdminService(bob).get_user("bob").login == "bob"


def test_audit_log(
    xnat_emulator: XNATEmulator, client: XNATClient, bob: XNATClient, seed: Seeder
) -> None:
    seed.project("P1")
    seed.subject("P1", "SUB1")
    session_id = seed.session("P1", "SUB1", "MR1")
    client.put(f"/data/projects/P1/subjects/SUB1/experiments/{session_id}", params={"note": "x"})
    service = AdminService(client)
    entries = service.audit_log(project="P1")
    assert entries and all(isinstance(e, AuditEntry) for e in entries)
    assert {(e.item_id, e.action) for e in entries} >= {
        ("P1", "created"),
        (session_id, "created"),
    }
    stamps = [e.timestamp for e in entries]
    assert all(s is not None and s.tzinfo is not None for s in stamps)
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
    assert all(e.project == "P1" and e.username == "admin" for e in entries)
    assert service.audit_log(project="P1", since="1h") == entries
    assert service.audit_log(project="P1", since="2999-01-01") == []
    assert service.audit_log(project="P1", username="bob") == []
    created = service.audit_log(project="P1", action="CREAT")
    assert created and all(e.action == "created" for e in created)
    assert len(service.audit_log(project="P1", limit=2)) == 2
    site = service.audit_log()
    assert {e.item_id for e in site} == {"P1"}
    assert AdminService(bob).audit_log() == []
    with pytest.raises(ResourceNotFoundError):
        service.audit_log(project="NOPE")
    with pytest.raises(InvalidInputError, match="since"):
        service.audit_log(project="P1", since="last tuesday")


def test_parse_since() -> None:
    now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("12h", now=now) == now - timedelta(hours=12)
    assert parse_since(" 30M ", now=now) == now - timedelta(minutes=30)
    assert parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert parse_since(None) is None
    day = parse_since("2024-01-01")
    assert day is not None and day.tzinfo is UTC
    assert day == datetime(2024, 1, 1).astimezone().astimezone(UTC)
    assert parse_since("2024-01-01T08:00:00+00:00") == datetime(2024, 1, 1, 8, tzinfo=UTC)
    with pytest.raises(InvalidInputError):
        parse_since("")


def test_server_info_and_site_config(
    xnat_emulator: XNATEmulator, client: XNATClient, bob: XNATClient
) -> None:
    service = AdminService(client)
    info = service.get_server_info()
    assert isinstance(info, ServerInfo)
    assert info.version and info.version.startswith("1.9") and info.site_id == "XNAT"
    assert info["base_url"] == xnat_emulator.url
    everything = service.get_site_config()
    assert everything["siteId"] == "XNAT" and "sessionTimeout" in everything
    assert service.get_site_config("siteId") == {"siteId": "XNAT"}
    assert service.set_site_config("uiAllowNonAdminProjectCreation", True) is True
    assert service.get_site_config("uiAllowNonAdminProjectCreation") == {
        "uiAllowNonAdminProjectCreation": True
    }
    assert service.set_site_config("sessionXmlRebuilderInterval", 7)
    assert service.get_site_config("sessionXmlRebuilderInterval") == {
        "sessionXmlRebuilderInterval": 7
    }
    assert service.set_site_config("siteDescription", "Test site")
    assert service.get_site_config()["siteDescription"] == "Test site"
    with pytest.raises(ResourceNotFoundError, match="noSuchKey"):
        service.get_site_config("noSuchKey")
    with pytest.raises(PermissionDeniedError):
        AdminService(bob).set_site_config("siteId", "HACKED")
    assert service.get_site_config("siteId") == {"siteId": "XNAT"}
    with pytest.raises(InvalidInputError):
        service.set_site_config("x", object())
    assert AdminService(bob).get_server_info().site_id == "XNAT"
