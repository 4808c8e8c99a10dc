"""Site configuration, plugins, anonymization and audit routes of the emulator."""

from __future__ import annotations

import re
import time

import httpx

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes import workflows


def test_site_config_map_and_single_values(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        config = admin.get("/xapi/siteConfig").json()
        assert config["siteId"] == "XNAT" and config["siteUrl"] == xnat_emulator.url
        assert config["sessionXmlRebuilderInterval"] == 5 and config["checksums"] is True
        site_id = admin.get("/xapi/siteConfig/siteId")
        assert site_id.status_code == 200 and site_id.text == "XNAT"  # raw, not JSON-quoted
        assert admin.get("/xapi/siteConfig/requireLogin").json() is True
        missing = admin.get("/xapi/siteConfig/noSuchPreference")
        assert missing.status_code == 404 and "noSuchPreference" in missing.text
        picked = admin.get("/xapi/siteConfig/values/siteId,checksums,nope").json()
        assert picked == {"siteId": "XNAT", "checksums": True}


def test_site_config_writes_are_admin_only_and_typed(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.post("/xapi/siteConfig", json={"checksums": False}).status_code == 403
        assert bob.post("/xapi/siteConfig/checksums", content="false").status_code == 403
        reply = admin.post("/xapi/siteConfig", json={"checksums": False, "adminEmail": "a@b.c"})
        assert reply.status_code == 200
        assert admin.get("/xapi/siteConfig/checksums").json() is False
        assert admin.post("/xapi/siteConfig/checksums", content="true").status_code == 200
        assert admin.get("/xapi/siteConfig/checksums").json() is True
        admin.post("/xapi/siteConfig/sessionXmlRebuilderInterval", content="1")
        assert admin.get("/xapi/siteConfig/sessionXmlRebuilderInterval").json() == 1
        admin.post("/xapi/siteConfig/myCustomKey", content="hello")
        assert admin.get("/xapi/siteConfig/myCustomKey").text == "hello"


def test_open_site_config_urls(xnat_emulator: XNATEmulator) -> None:
    assert httpx.get(f"{xnat_emulator.url}/xapi/siteConfig/siteId").text == "XNAT"
    assert httpx.get(f"{xnat_emulator.url}/xapi/siteConfig/siteUrl").text == xnat_emulator.url
    assert httpx.get(f"{xnat_emulator.url}/xapi/siteConfig/checksums").status_code == 401
    assert httpx.get(f"{xnat_emulator.url}/xapi/siteConfig").status_code == 401


def test_plugins_follow_the_container_service_switch(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        plugins = admin.get("/xapi/plugins").json()
        assert plugins["containers"]["id"] == "containers"
        assert admin.get("/xapi/plugins/containers").json()["version"]
        assert admin.get("/xapi/plugins/nope").status_code == 404
        off = httpx.put(f"{xnat_emulator.url}/emulator/containers/enabled", json={"enabled": False})
        assert off.json() == {"enabled": False}
        assert "containers" not in admin.get("/xapi/plugins").json()
        assert admin.get("/xapi/plugins/containers").status_code == 404
        assert admin.get("/xapi/commands").status_code == 404
        httpx.put(f"{xnat_emulator.url}/emulator/containers/enabled", json={"enabled": True})
        assert admin.get("/xapi/commands").json() == []


def test_site_anonymization_script(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        default = admin.get("/xapi/anonymize/default").text
        assert "(0010,0010)" in default
        assert admin.get("/xapi/anonymize/site/enabled").json() is False  # emulator default
        assert admin.get("/xapi/anonymize/site").text == default
        assert bob.put("/xapi/anonymize/site", content='version "6.1"\n').status_code == 403
        script = 'version "6.1"\n(0010,0010) := "ANON"\n'
        put = admin.put(
            "/xapi/anonymize/site", content=script, headers={"content-type": "text/plain"}
        )
        assert put.status_code == 200
        assert bob.get("/xapi/anonymize/site").text == script
        assert admin.get("/xapi/siteConfig").json()["sitewideAnonymizationScript"] == script
        assert (
            admin.put("/xapi/anonymize/site/enabled", params={"enable": "false"}).status_code == 200
        )
        assert admin.get("/xapi/anonymize/site/enabled").json() is False


def test_project_anonymization_script(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        admin.put("/data/projects/P1")
        admin.put("/data/projects/P1/users/member/bob")
        assert admin.get("/xapi/anonymize/projects/P1").status_code == 204
        assert admin.get("/xapi/anonymize/projects/P1/enabled").json() is False
        assert bob.put("/xapi/anonymize/projects/P1", content="x").status_code == 403
        assert admin.put("/xapi/anonymize/projects/P1", content="// project\n").status_code == 200
        assert bob.get("/xapi/anonymize/projects/P1").text == "// project\n"
        admin.put("/xapi/anonymize/projects/P1/enabled", params={"enable": "false"})
        assert admin.get("/xapi/anonymize/projects/P1").status_code == 204
        assert admin.get("/xapi/anonymize/projects/NOPE").status_code == 500


def test_audit_service_lists_item_history(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        admin.put("/data/projects/P1")
        admin.put("/data/projects/P1", params={"name": "Renamed"})
        events = admin.get("/data/services/audit/xnat:projectData/P1").json()["events"]
        assert [e["event_action"] for e in events] == ["created", "modified"]
        first = events[0]
        assert first["event_user"] == "admin" and isinstance(first["event_date"], int)
        assert first["event_status"] == "Complete" and first["changesets"] == []
        assert abs(first["event_date"] / 1000 - time.time()) < 60
        assert len({e["event_id"] for e in events}) == 2
        assert bob.get("/data/services/audit/xnat:projectData/P1").status_code == 404
        assert admin.get("/data/services/audit/xnat:projectData/NOPE").status_code == 404
        no_route = admin.get("/data/audit")
        assert no_route.status_code == 404 and "no route" in no_route.text


def test_audit_events_come_from_workflows_and_history(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    state = xnat_emulator.state
    assert state is not None
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        admin.put("/data/projects/P1")
        reply = admin.put(
            "/data/projects/P1/subjects/S1/experiments/E1", params={"xsiType": "xnat:mrSessionData"}
        )
        experiment = reply.text.strip()
        subject = admin.get(f"/data/experiments/{experiment}", params={"format": "json"}).json()[
            "items"
        ][0]["data_fields"]["subject_ID"]
        run = workflows.create_workflow(
            state,
            data_id=experiment,
            data_type="xnat:mrSessionData",
            pipeline_name="/pipelines/catalog/mr/DicomToNifti.xml",
            project="P1",
            login="admin",
            status="Complete",
            planned_outcome=None,
            justification="Pipeline launch",
        )
        admin_run = workflows.create_workflow(
            state,
            data_id="P1_settings",
            data_type="xnat:projectData",
            pipeline_name="Configured project",
            project="P1",
            login="admin",
            status="Complete",
            planned_outcome=None,
            category="PROJECT_ADMIN",
        )
        on_session = admin.get(f"/data/services/audit/xnat:mrSessionData/{experiment}").json()
        by_id = {e["event_id"]: e for e in on_session["events"]}
        assert by_id[run] == {
            "event_id": run,
            "event_action": "DicomToNifti",  # getOnlyPipelineName
            "event_date": by_id[run]["event_date"],
            "event_user": "admin",
            "event_type": "PROCESS",
            "event_reason": "Pipeline launch",
            "event_category": "DATA",
            "event_status": "Complete",
            "changesets": [],
        }
        assert "created" in [e["event_action"] for e in on_session["events"]]
        generic = admin.get(f"/data/services/audit/xnat:experimentData/{experiment}")
        assert run in {e["event_id"] for e in generic.json()["events"]}
        wrong_type = admin.get(f"/data/services/audit/xnat:petSessionData/{experiment}")
        assert wrong_type.status_code == 404
        on_subject = admin.get(f"/data/services/audit/xnat:subjectData/{subject}").json()
        assert run in {e["event_id"] for e in on_subject["events"]}  # its experiments' runs
        on_project = admin.get("/data/services/audit/xnat:projectData/P1").json()["events"]
        ids = {e["event_id"] for e in on_project}
        assert admin_run in ids and run not in ids  # DATA runs of the project's items are not
        dated = admin.get(
            f"/data/services/audit/xnat:mrSessionData/{experiment}",
            params={"dateFormat": "yyyy-MM-dd HH:mm"},
        ).json()["events"]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", e["event_date"]) for e in dated)
        page = admin.get("/data/services/audit/xnat:projectData/P1", params={"format": "html"})
        assert page.headers["content-type"].startswith("text/html") and "created" in page.text
        assert bob.get(f"/data/services/audit/xnat:mrSessionData/{experiment}").status_code == 404
        admin.delete(f"/data/experiments/{experiment}")
        gone = admin.get(f"/data/services/audit/xnat:mrSessionData/{experiment}")
        assert gone.status_code == 200 and "deleted" in [
            e["event_action"] for e in gone.json()["events"]
        ]


def test_audit_of_users_uses_the_numeric_id(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator) as admin, logged_in(xnat_emulator, "bob", "pw") as bob:
        admin.put("/xapi/users/bob", json={"username": "bob", "firstName": "Robert"})
        bob_id = admin.get("/xapi/users/bob").json()["id"]
        admin_id = admin.get("/xapi/users/admin").json()["id"]
        trail = admin.get(f"/data/services/audit/xdat:user/{bob_id}")
        assert trail.status_code == 200
        assert [e["event_action"] for e in trail.json()["events"]] == ["modified"]
        assert bob.get(f"/data/services/audit/xdat:user/{bob_id}").status_code == 200
        assert bob.get(f"/data/services/audit/xdat:user/{admin_id}").status_code == 404
        assert admin.get("/data/services/audit/xdat:user/bob").status_code == 404  # pk, not login
