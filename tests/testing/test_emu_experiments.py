"""Emulator experiment routes over real sockets: listings, documents, writes, deletes, sharing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.testing._support import (
    add_member,
    create_projects,
    first_item,
    h3,
    logged_in,
    result_rows,
)
from xnat_prefect.testing import XNATEmulator

MR = "xnat:mrSessionData"
SUBJ_URL = "/data/projects/P1/subjects/S1/experiments"


def _kids(item: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {k["field"]: k["items"] for k in item["children"]}


def _setup(client: httpx.Client, *projects: str) -> str:
    create_projects(client, "P1", *projects)
    made = client.put(f"{SUBJ_URL}/E1", params={"xsiType": MR, "date": "2024-01-02"})
    assert made.status_code == 201, made.text
    return made.text


def test_create_201_with_auto_subject_then_update_200(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c)
        assert exp_id == "XNAT_E00001"
        subjects = result_rows(c.get("/data/projects/P1/subjects"))
        assert [s["label"] for s in subjects] == ["S1"]
        again = c.put(f"{SUBJ_URL}/E1", params={"xsiType": MR, "note": "hello"})
        assert (again.status_code, again.text) == (200, exp_id)
        assert c.put(f"{SUBJ_URL}/E2").status_code == 400
        bad = c.put(f"{SUBJ_URL}/E2", params={"xsiType": "xnat:fooData"})
        assert bad.status_code == 400
        assert c.put(f"{SUBJ_URL}/bad%20label", params={"xsiType": MR}).status_code == 417


def test_modality_derived_from_type_unless_given(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put(f"{SUBJ_URL}/CT1", params={"xsiType": "xnat:ctSessionData"})
        c.put(f"{SUBJ_URL}/PT1", params={"xsiType": "xnat:petSessionData", "modality": "PET"})
        rows = result_rows(
            c.get("/data/projects/P1/experiments", params={"columns": "label,modality"})
        )
        assert {r["label"]: r["modality"] for r in rows} == {"E1": "MR", "CT1": "CT", "PT1": "PET"}


def test_project_listing_columns_types_and_filters(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put(f"{SUBJ_URL}/CT1", params={"xsiType": "xnat:ctSessionData", "date": "2024-03-01"})
        body = c.get("/data/projects/P1/experiments").json()["ResultSet"]
        assert body["totalRecords"] == "2"
        first = body["Result"][0]
        assert list(first) == ["ID", "project", "date", "xsiType", "label", "insert_date", "URI"]
        assert first["URI"] == "/data/experiments/XNAT_E00001"
        cts = result_rows(
            c.get("/data/projects/P1/experiments", params={"xsiType": "xnat:ctSessionData"})
        )
        assert [r["label"] for r in cts] == ["CT1"]
        ranged = c.get("/data/projects/P1/experiments", params={"date": "2024-01-01-2024-01-31"})
        assert [r["label"] for r in result_rows(ranged)] == ["E1"]
        cols = "subject_ID,subject_label,modality,UID,session_type,scanner,note,time,visit_id"
        extra = result_rows(c.get("/data/projects/P1/experiments", params={"columns": cols}))
        assert list(extra[0]) == [*cols.split(","), "URI"]
        assert (extra[0]["subject_ID"], extra[0]["subject_label"]) == ("XNAT_S00001", "S1")
        paged = c.get("/data/projects/P1/experiments", params={"limit": "1"}).json()
        assert len(paged["ResultSet"]["Result"]) == 1 and "totalRecords" not in paged["ResultSet"]


def test_subject_listing_and_unknown_subject(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put("/data/projects/P1/subjects/S2/experiments/E2", params={"xsiType": MR})
        assert [r["label"] for r in result_rows(c.get(SUBJ_URL))] == ["E1"]
        missing = c.get("/data/projects/P1/subjects/NOPE/experiments")
        assert missing.status_code == 404 and "Unable to identify subject NOPE" in h3(missing)
        assert c.get("/data/projects/NOPE/experiments").status_code == 404


def test_site_wide_listing(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c, "P2")
        c.put(
            "/data/projects/P2/subjects/T1/experiments/X1", params={"xsiType": "xnat:ctSessionData"}
        )
        body = c.get("/data/experiments").json()["ResultSet"]
        assert body["title"] == "Matching experiments" and body["totalRecords"] == "2"
        assert "subject_ID" not in body["Result"][0]
        typed = result_rows(c.get("/data/experiments", params={"xsiType": MR}))
        assert len(typed) == 1
        assert (typed[0]["subject_ID"], typed[0]["subject_label"]) == ("XNAT_S00001", "S1")
        assert list(typed[0])[-1] == "URI"
        assert [r["label"] for r in result_rows(c.get("/data/experiments?project=P2"))] == ["X1"]
        assert [r["ID"] for r in result_rows(c.get("/data/experiments?label=E1"))] == [
            "XNAT_E00001"
        ]
        add_member(xnat_emulator, c, "P2")
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert [r["label"] for r in result_rows(bob.get("/data/experiments"))] == ["X1"]


def test_item_documents_on_every_url_form(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2")
        c.put(f"{SUBJ_URL}/E1/scans/1", params={"xsiType": "xnat:mrScanData", "type": "T1"})
        c.put(f"{SUBJ_URL}/E1", params={"xsiType": MR, f"{MR}/fields/field[name=qc]/field": "ok"})
        c.put(f"/data/experiments/{exp_id}/projects/P2", params={"label": "E1_P2"})
        xnat_emulator.state.store.execute(
            "INSERT INTO resources(parent_type, parent_id, label, format) VALUES(?,?,?,?)",
            ("experiment", exp_id, "NOTES", "TXT"),
        )
        for url in (
            f"/data/experiments/{exp_id}",
            "/data/projects/P1/experiments/E1",
            f"{SUBJ_URL}/E1",
        ):
            assert first_item(c, url)["data_fields"]["ID"] == exp_id
        item = first_item(c, f"/data/experiments/{exp_id}")
        assert item["meta"]["xsi:type"] == MR
        fields = item["data_fields"]
        assert (fields["label"], fields["project"], fields["subject_ID"]) == (
            "E1",
            "P1",
            "XNAT_S00001",
        )
        assert (fields["date"], fields["modality"]) == ("2024-01-02", "MR")
        kids = _kids(item)
        scan = kids["scans/scan"][0]
        assert scan["meta"]["xsi:type"] == "xnat:mrScanData"
        assert scan["data_fields"]["ID"] == "1" and scan["data_fields"]["type"] == "T1"
        assert kids["fields/field"][0]["data_fields"] == {"name": "qc", "field": "ok"}
        assert kids["sharing/share"][0]["data_fields"] == {"label": "E1_P2", "project": "P2"}
        resource = kids["resources/resource"][0]["data_fields"]
        assert resource["label"] == "NOTES" and resource["format"] == "TXT"
        assert first_item(c, "/data/projects/P2/experiments/E1_P2")["data_fields"]["ID"] == exp_id
        xml = c.get(f"/data/experiments/{exp_id}", params={"format": "xml"})
        assert xml.text.count("<xnat:MRSession ") == 1 and '<xnat:scan ID="1"' in xml.text
        html = c.get(f"/data/experiments/{exp_id}")
        assert html.headers["content-type"].startswith("text/html")


def test_lookup_rules_and_prefix_routing_quirk(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c)
        c.put("/data/projects/P1/subjects/S2")
        missing = c.get("/data/experiments/E1", params={"format": "json"})
        assert (
            missing.status_code == 404 and h3(missing) == "Unable to find the specified experiment."
        )
        assert c.get("/data/projects/P1/subjects/S2/experiments/E1?format=json").status_code == 404
        quirk = c.get("/data/projects/P1/experiments/E1/scans", params={"format": "json"})
        assert quirk.status_code == 200
        assert quirk.json()["items"][0]["data_fields"]["ID"] == exp_id
        deeper = c.get("/data/projects/P1/experiments/E1/scans/1/files", params={"format": "json"})
        assert deeper.status_code == 200 and "items" in deeper.json()


def test_shortcut_fields_and_xpaths_on_subject_scoped_put(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        params = {
            "date": "2024-05-06",
            "time": "10:11:12",
            "note": "n1",
            "visit_id": "V1",
            "scanner": "Prisma",
            "session_type": "baseline",
            "UID": "1.2.3",
            f"{MR}/fieldStrength": "3.0",
        }
        assert c.put(f"{SUBJ_URL}/E1", params=params).status_code == 200
        cols = "date,time,note,visit_id,scanner,session_type,UID,fieldStrength"
        row = result_rows(c.get("/data/projects/P1/experiments", params={"columns": cols}))[0]
        assert {k: row[k] for k in cols.split(",")} == {
            "date": "2024-05-06",
            "time": "10:11:12",
            "note": "n1",
            "visit_id": "V1",
            "scanner": "Prisma",
            "session_type": "baseline",
            "UID": "1.2.3",
            "fieldStrength": "3.0",
        }
        foreign = c.put(f"{SUBJ_URL}/E1", params={"xnat:ctSessionData/note": "nope"})
        assert foreign.status_code == 200
        assert first_item(c, f"{SUBJ_URL}/E1")["data_fields"]["note"] == "n1"
        relabel = c.put(f"{SUBJ_URL}/E1", params={f"{MR}/label": "OTHER"})
        assert relabel.status_code == 400 and "separate URI" in h3(relabel)
        retype = c.put(f"{SUBJ_URL}/E1", params={"xsiType": "xnat:ctSessionData"})
        assert retype.status_code == 409


def test_custom_variables_need_prefix_and_xsitype(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c)

        def custom() -> dict[str, str]:
            items = _kids(first_item(c, f"/data/experiments/{exp_id}")).get("fields/field", [])
            return {i["data_fields"]["name"]: i["data_fields"]["field"] for i in items}

        c.put(f"{SUBJ_URL}/E1", params={f"{MR}/fields/field[name=a]/field": "1"})
        c.put(
            f"{SUBJ_URL}/E1",
            params={"xsiType": MR, "xnat:experimentData/fields/field[name=b]/field": "2"},
        )
        assert custom() == {}
        c.put(f"{SUBJ_URL}/E1", params={"xsiType": MR, f"{MR}/fields/field[name=c]/field": "3"})
        assert custom() == {"c": "3"}
        flat = c.put(
            f"/data/experiments/{exp_id}",
            params={"xsiType": MR, f"{MR}/fields/field[name=d]/field": "4"},
        )
        assert flat.status_code == 200
        assert custom() == {"c": "3", "d": "4"}


def test_flat_put_saves_nothing_and_project_put_only_xpaths(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c)
        flat = c.put(f"/data/experiments/{exp_id}", params={"note": "flat", "label": "NEW"})
        assert (flat.status_code, flat.text) == (200, exp_id)
        data = first_item(c, f"/data/experiments/{exp_id}")["data_fields"]
        assert "note" not in data and data["label"] == "E1"
        shortcut = c.put("/data/projects/P1/experiments/E1", params={"note": "short"})
        assert shortcut.status_code == 200
        assert "note" not in first_item(c, f"/data/experiments/{exp_id}")["data_fields"]
        xpath = c.put("/data/projects/P1/experiments/E1", params={f"{MR}/note": "xp"})
        assert xpath.status_code == 200
        assert first_item(c, f"/data/experiments/{exp_id}")["data_fields"]["note"] == "xp"
        assert (
            c.put("/data/projects/P1/experiments/NOPE", params={"xsiType": MR}).status_code == 404
        )


def test_rename_and_reassign(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c)
        c.put(f"{SUBJ_URL}/E2", params={"xsiType": MR})
        renamed = c.put(f"{SUBJ_URL}/E1", params={"label": "E1B", "note": "ignored"})
        assert (renamed.status_code, renamed.text) == (200, "")
        assert "note" not in first_item(c, f"/data/experiments/{exp_id}")["data_fields"]
        assert c.get("/data/projects/P1/experiments/E1?format=json").status_code == 404
        clash = c.put("/data/projects/P1/experiments/E1B", params={"label": "E2"})
        assert clash.status_code == 409 and h3(clash) == "Specified label is already in use."
        moved = c.put(f"{SUBJ_URL}/E1B", params={"subject_ID": "S9"})
        assert moved.status_code == 200
        row = result_rows(
            c.get("/data/projects/P1/experiments?label=E1B&columns=label,subject_label")
        )
        assert row[0]["subject_label"] == "S9"
        back = c.put("/data/projects/P1/subjects/S1/experiments/E1B")
        assert back.status_code == 200
        assert (
            first_item(c, f"/data/experiments/{exp_id}")["data_fields"]["subject_ID"]
            == "XNAT_S00001"
        )


def test_post_to_subject_collection(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        made = c.post(SUBJ_URL, params={"xsiType": MR, "label": "E5"})
        assert made.status_code == 200
        assert made.text == f"{xnat_emulator.url}{SUBJ_URL}/XNAT_E00002"
        dup = c.post(SUBJ_URL, params={"xsiType": MR, "label": "E5"})
        assert dup.status_code == 409 and h3(dup) == "Specified experiment already exists."


def test_status_history_and_projects_subpaths(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2")
        c.put(f"{SUBJ_URL}/E1", params={"note": "x"})
        c.put(f"/data/experiments/{exp_id}/projects/P2")
        assert c.get(f"/data/experiments/{exp_id}/status").text == "active"
        history = result_rows(c.get("/data/projects/P1/experiments/E1/history"))
        assert [h["action"] for h in history] == ["created", "modified", "shared"]
        assert history[0]["user"] == "admin" and history[0]["xsiType"] == MR
        rows = result_rows(c.get(f"{SUBJ_URL}/E1/projects"))
        assert [(r["ID"], r["label"]) for r in rows] == [("P1", "E1"), ("P2", exp_id)]


def test_delete_rules(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2", "PRIV")
        c.put(f"/data/experiments/{exp_id}/projects/P2", params={"label": "SH"})
        c.put("/data/projects/PRIV/subjects/X/experiments/HIDDEN", params={"xsiType": MR})
        add_member(xnat_emulator, c, "P1")
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.delete(f"/data/experiments/{exp_id}").status_code == 403
        assert bob.delete("/data/experiments/XNAT_E00002").status_code == 404
        assert bob.get("/data/experiments/XNAT_E00002?format=json").status_code == 404
    with logged_in(xnat_emulator) as c:
        assert c.delete("/data/projects/P2/experiments/SH").status_code == 200
        assert result_rows(c.get("/data/projects/P2/experiments")) == []
        assert c.get(f"/data/experiments/{exp_id}?format=json").status_code == 200
        gone = c.delete(f"{SUBJ_URL}/E1", params={"removeFiles": "true"})
        assert (gone.status_code, gone.text) == (200, "")
        assert c.get(f"/data/experiments/{exp_id}?format=json").status_code == 404
        assert c.delete(f"/data/experiments/{exp_id}").status_code == 404


def test_sharing_codes_and_shared_listing(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2", "P3")
        c.put("/data/projects/P2/subjects/T/experiments/TAKEN", params={"xsiType": MR})
        clash = c.put(f"/data/experiments/{exp_id}/projects/P2", params={"label": "TAKEN"})
        assert clash.status_code == 409 and h3(clash) == "Label already in use:TAKEN"
        ok = c.put("/data/projects/P1/experiments/E1/projects/P2", params={"label": "E1_SH"})
        assert ok.status_code == 200
        dup = c.put(f"/data/experiments/{exp_id}/projects/P2")
        assert dup.status_code == 409 and h3(dup) == "Already assigned to project:P2"
        rows = result_rows(
            c.get(
                "/data/projects/P2/experiments", params={"columns": "label,project,subject_label"}
            )
        )
        shared = next(r for r in rows if r["label"] == "E1_SH")
        assert (shared["project"], shared["subject_label"]) == ("P2", "S1")
        assert [s["label"] for s in result_rows(c.get("/data/projects/P2/subjects"))] == ["S1", "T"]
        assert c.put(f"/data/experiments/{exp_id}/projects/NOPE").status_code == 404
        assert c.delete(f"/data/experiments/{exp_id}/projects/P3").status_code == 200
        assert c.delete(f"/data/experiments/{exp_id}/projects/P2").status_code == 200
        assert c.delete(f"/data/experiments/{exp_id}/projects/P2").status_code == 200
        moved = c.put(f"/data/experiments/{exp_id}/projects/P3", params={"primary": "true"})
        assert moved.status_code == 200
        assert first_item(c, f"/data/experiments/{exp_id}")["data_fields"]["project"] == "P3"
        assert result_rows(c.get("/data/projects/P1/experiments")) == []
        assert (
            c.put(f"/data/experiments/{exp_id}/projects/P3", params={"primary": "true"}).status_code
            == 409
        )
        assert c.delete(f"/data/experiments/{exp_id}/projects/P3").status_code == 200
        assert c.get(f"/data/experiments/{exp_id}?format=json").status_code == 404


def test_member_shares_into_own_project_but_cannot_move(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2", "P3")
        add_member(xnat_emulator, c, "P1")
        c.put("/data/projects/P2/users/member/bob")
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.put(f"/data/experiments/{exp_id}/projects/P2").status_code == 200
        assert bob.put(f"/data/experiments/{exp_id}/projects/P3").status_code == 404
        moved = bob.put(f"/data/experiments/{exp_id}/projects/P2", params={"primary": "true"})
        assert moved.status_code == 403


def test_subject_scoped_share_form_and_abstract_type_filter(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        exp_id = _setup(c, "P2")
        qc = c.put(f"{SUBJ_URL}/QC1", params={"xsiType": "xnat:qcManualAssessorData"})
        assert qc.status_code == 201
        shared = c.put(f"{SUBJ_URL}/E1/projects/P2", params={"label": "E1_P2", "format": "json"})
        assert shared.status_code == 200
        assert shared.json()["items"][0]["data_fields"]["ID"] == exp_id
        sessions = c.get(
            "/data/projects/P1/experiments", params={"xsiType": "xnat:imageSessionData"}
        )
        assert [r["label"] for r in result_rows(sessions)] == ["E1"]
        every = c.get("/data/projects/P1/experiments", params={"xsiType": "xnat:experimentData"})
        assert {r["xsiType"] for r in result_rows(every)} == {MR, "xnat:qcManualAssessorData"}
        assert c.delete(f"{SUBJ_URL}/E1/projects/P2").status_code == 200
        assert result_rows(c.get("/data/projects/P2/experiments")) == []
