"""User administration routes of the emulator (/data/users, /xapi/users), over real sockets."""

from __future__ import annotations

import httpx

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator


def test_data_users_lists_enabled_users_for_admins_only(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw", firstname="Bob", lastname="Builder")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        table = admin.get("/data/users").json()["ResultSet"]
        assert table["totalRecords"] == "2"
        rows = {r["login"]: r for r in table["Result"]}
        assert set(rows["bob"]) == {"xdat_user_id", "login", "firstname", "lastname", "email"}
        assert rows["bob"]["firstname"] == "Bob" and rows["bob"]["xdat_user_id"].isdigit()
        assert bob.get("/data/users").status_code == 403
        assert bob.get("/xapi/users").status_code == 403
        reply = admin.post("/xapi/siteConfig/restrictUserListAccessToAdmins", content="false")
        assert reply.status_code == 200
        assert bob.get("/data/users").status_code == 200
        assert bob.get("/xapi/users").json() == ["admin", "bob"]


def test_user_objects_and_access_levels(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        assert admin.get("/xapi/users").json() == ["admin", "bob"]
        profiles = admin.get("/xapi/users/profiles").json()
        assert [p["username"] for p in profiles] == ["admin", "bob"]
        me = bob.get("/xapi/users/bob").json()
        assert me["username"] == "bob" and me["enabled"] is True and me["secured"] is True
        assert "password" not in me and isinstance(me["id"], int)
        denied = bob.get("/xapi/users/admin")
        assert denied.status_code == 403 and denied.text == ""
        assert admin.get("/xapi/users/nobody").status_code == 404
        assert bob.get("/xapi/users/username").text == "bob"  # still the auth module's route


def test_create_update_and_disable_a_user(xnat_emulator: XNATEmulator) -> None:
    new = {
        "username": "carol",
        "password": "s3cret",
        "firstName": "Carol",
        "lastName": "Danvers",
        "email": "carol@example.org",
    }
    with logged_in(xnat_emulator) as admin:
        created = admin.post("/xapi/users", json=new)
        assert created.status_code == 201 and created.json()["username"] == "carol"
        assert admin.post("/xapi/users", json=new).status_code == 409
        assert admin.post("/xapi/users", json={"username": "x y"}).status_code == 400
        with logged_in(xnat_emulator, "carol", "s3cret") as carol:
            assert carol.get("/data/auth").status_code == 200
            assert carol.post("/xapi/users", json={**new, "username": "dave"}).status_code == 403
        updated = admin.put("/xapi/users/carol", json={"lastName": "Marvel"})
        assert updated.status_code == 200 and updated.json()["lastName"] == "Marvel"
        assert admin.put("/xapi/users/carol", json={"lastName": "Marvel"}).status_code == 304
        assert admin.put("/xapi/users/carol", json={"username": "other"}).status_code == 400
        assert admin.put("/xapi/users/carol/enabled/false").status_code == 200
        assert admin.get("/xapi/users/carol/enabled").json() is False
        with logged_in(xnat_emulator, "carol", "s3cret") as carol:
            assert carol.get("/data/auth").status_code == 401
        admin.put("/xapi/users/carol/enabled/true")
        with logged_in(xnat_emulator, "carol", "s3cret") as carol:
            assert carol.get("/data/auth").status_code == 200


def test_roles_toggle_administrator_rights(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.get("/xapi/users/bob/roles").json() == []
        assert bob.get("/xapi/users/active").status_code == 403
        assert bob.put("/xapi/users/bob/roles/Administrator").status_code == 403
        assert admin.put("/xapi/users/bob/roles/Administrator").status_code == 200
        assert bob.get("/xapi/users/bob/roles").json() == ["Administrator"]
        assert bob.get("/xapi/users/active").status_code == 200
        assert admin.put("/xapi/users/bob/roles/non_expiring").status_code == 200
        assert "bob" in admin.get("/xapi/users/roles/non_expiring").json()
        assert admin.delete("/xapi/users/bob/roles/Administrator").status_code == 200
        assert bob.get("/xapi/users/bob/roles").json() == ["non_expiring"]
        assert bob.get("/xapi/users/active").status_code == 403
        assert admin.delete("/xapi/users/admin/roles/Administrator").status_code == 409
        bulk = admin.put("/xapi/users/bob/roles", json=["DataManager", "Administrator"])
        assert bulk.status_code == 200 and bulk.json() == []
        assert admin.get("/xapi/users/rolemap").json()["Administrator"] == ["admin", "bob"]


def test_groups_map_to_project_membership(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    xnat_emulator.add_user("olive", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        assert admin.put("/data/projects/P1").status_code == 200
        assert bob.get("/data/projects/P1", params={"format": "json"}).status_code == 404
        assert bob.put("/xapi/users/bob/groups/P1_owner").status_code == 403
        assert admin.put("/xapi/users/bob/groups/P1_member").status_code == 200
        assert bob.get("/xapi/users/bob/groups").json() == ["P1_member"]
        assert bob.get("/data/projects/P1", params={"format": "json"}).status_code == 200
        assert bob.get("/xapi/users/projects").json() == ["P1"]
        assert bob.get("/xapi/users/bob/projects").json() == {"P1": "member"}
        assert admin.put("/xapi/users/bob/groups/NOPE_member").status_code == 404
        bulk = admin.put("/xapi/users/olive/groups", json=["P1_collaborator", "NOPE_owner"])
        assert bulk.status_code == 202 and bulk.json() == ["NOPE_owner"]
        assert admin.get("/xapi/users/olive/groups").json() == ["P1_collaborator"]
        assert bob.delete("/xapi/users/bob/groups/P1_member").status_code == 200
        assert bob.get("/xapi/users/bob/groups").json() == []
        assert bob.get("/data/projects/P1", params={"format": "json"}).status_code == 404
        assert admin.get("/xapi/users/nobody/groups").status_code == 404


def test_owners_manage_their_project_groups(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("owen", "pw")
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator, "owen", "pw") as owen, logged_in(xnat_emulator) as admin:
        assert owen.put("/data/projects/OWN").status_code == 200
        admin.put("/data/projects/OTHER")
        assert owen.put("/xapi/users/bob/groups/OWN_member").status_code == 200
        assert owen.put("/xapi/users/bob/groups/OTHER_member").status_code == 403
        assert admin.get("/xapi/users/bob/groups").json() == ["OWN_member"]


def test_active_sessions_can_be_listed_and_killed(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with (
        httpx.Client(base_url=xnat_emulator.url, timeout=10) as bob,
        logged_in(xnat_emulator) as admin,
    ):
        assert admin.get("/xapi/users/active/bob").status_code == 304
        session_id = bob.post("/data/JSESSION", auth=("bob", "pw")).text
        assert bob.get("/data/auth").status_code == 200
        assert session_id in admin.get("/xapi/users/active/bob").json()
        assert admin.get("/xapi/users/active").json()["bob"]["count"] == 1
        killed = admin.delete("/xapi/users/active/bob")
        assert killed.status_code == 200 and killed.json() == [session_id]
        assert bob.get("/data/auth").status_code == 401
        assert admin.get("/xapi/users/active/bob").status_code == 304
        assert admin.delete("/xapi/users/active/nobody").status_code == 404
