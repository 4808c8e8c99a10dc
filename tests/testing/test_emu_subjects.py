"""Emulator subject routes over real sockets: listings, documents, writes, deletes, sharing."""

from __future__ import annotations

import re

from tests.testing._support import add_member, create_projects, h3, logged_in, result_rows
from xnat_prefect.testing import XNATEmulator

CUSTOM = "xnat:subjectData/fields/field[name={}]/field"
GENDER_XPATH = "xnat:subjectData/demographics[@xsi:type=xnat:demographicData]/gender"


def test_put_creates_with_201_and_id_then_updates_with_200(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        created = c.put("/data/projects/P1/subjects/S1")
        assert created.status_code == 201 and created.text == "XNAT_S00001"
        again = c.put("/data/projects/P1/subjects/S1", params={"gender": "female"})
        assert again.status_code == 200 and again.text == "XNAT_S00001"
        second = c.put("/data/projects/P1/subjects/S2")
        assert (second.status_code, second.text) == (201, "XNAT_S00002")


def test_listing_default_columns_and_string_cells(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        c.put("/data/projects/P1/subjects/S1", params={"gender": "male", "yob": "1980"})
        reply = c.get("/data/projects/P1/subjects")
        body = reply.json()["ResultSet"]
        assert body["totalRecords"] == "1"
        (row,) = body["Result"]
        assert list(row) == ["ID", "project", "label", "insert_date", "insert_user", "URI"]
        assert row["URI"] == "/data/subjects/XNAT_S00001"
        assert (row["project"], row["label"], row["insert_user"]) == ("P1", "S1", "admin")
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$", row["insert_date"])


def test_listing_extra_columns_filters_and_formats(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        c.put("/data/projects/P1/subjects/S1", params={"gender": "male", "yob": "1980"})
        c.put("/data/projects/P1/subjects/S2", params={"gender": "female", "group": "ctl"})
        rows = result_rows(
            c.get("/data/projects/P1/subjects", params={"columns": "label,gender,yob"})
        )
        assert [list(r) for r in rows] == [["label", "gender", "yob", "URI"]] * 2
        assert rows[0] == {"label": "S1", "gender": "male", "yob": "1980", "URI": rows[0]["URI"]}
        assert rows[1]["yob"] == ""
        females = result_rows(c.get("/data/projects/P1/subjects", params={"gender": "female"}))
        assert [r["label"] for r in females] == ["S2"]
        xpath = result_rows(c.get("/data/projects/P1/subjects", params={"columns": GENDER_XPATH}))
        assert [r[GENDER_XPATH] for r in xpath] == ["male", "female"]
        liked = result_rows(c.get("/data/projects/P1/subjects", params={"label": "S*"}))
        assert len(liked) == 2
        csv = c.get("/data/projects/P1/subjects", params={"format": "csv", "columns": "label"})
        assert csv.text.splitlines() == [
            "label,URI",
            "S1,/data/subjects/XNAT_S00001",
            "S2,/data/subjects/XNAT_S00002",
        ]
        xml = c.get("/data/projects/P1/subjects", params={"format": "xml"})
        assert xml.text.startswith('<ResultSet totalRecords="2"')


def test_paging_drops_total_records(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        for label in ("S1", "S2", "S3"):
            c.put(f"/data/projects/P1/subjects/{label}")
        body = c.get("/data/projects/P1/subjects", params={"limit": "1", "offset": "1"}).json()
        assert "totalRecords" not in body["ResultSet"]
        assert [r["label"] for r in body["ResultSet"]["Result"]] == ["S2"]
        site = c.get("/data/subjects", params={"limit": "2"}).json()["ResultSet"]
        assert len(site["Result"]) == 2 and "totalRecords" not in site


def test_item_document_json_xml_and_html_default(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        params = {"gender": "male", "group": "ctl", CUSTOM.format("site"): "north"}
        c.put("/data/projects/P1/subjects/S1", params=params)
        doc = c.get("/data/projects/P1/subjects/S1", params={"format": "json"}).json()
        (item,) = doc["items"]
        assert item["meta"]["xsi:type"] == "xnat:subjectData"
        assert item["data_fields"]["ID"] == "XNAT_S00001"
        assert item["data_fields"]["label"] == "S1" and item["data_fields"]["group"] == "ctl"
        kids = {k["field"]: k["items"] for k in item["children"]}
        assert kids["demographics"][0]["meta"]["xsi:type"] == "xnat:demographicData"
        assert kids["demographics"][0]["data_fields"] == {"gender": "male"}
        assert kids["fields/field"][0]["data_fields"] == {"name": "site", "field": "north"}
        xml = c.get("/data/subjects/XNAT_S00001", params={"format": "xml"})
        assert xml.headers["content-type"].startswith("text/xml")
        assert "<xnat:Subject " in xml.text and 'label="S1"' in xml.text
        assert '<xnat:field name="site">north</xnat:field>' in xml.text
        html = c.get("/data/subjects/XNAT_S00001")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


def test_flat_urls_take_accession_ids_only(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        c.put("/data/projects/P1/subjects/S1")
        assert c.get("/data/subjects/XNAT_S00001", params={"format": "json"}).status_code == 200
        by_label = c.get("/data/subjects/S1", params={"format": "json"})
        assert by_label.status_code == 404 and "accession ID" in h3(by_label)
        by_id = c.get("/data/projects/P1/subjects/XNAT_S00001", params={"format": "json"})
        assert by_id.status_code == 200
        assert c.get("/data/archive/projects/P1/subjects/S1?format=json").status_code == 200
        assert (
            c.get("/data/projects/P1/subjects/NOPE", params={"format": "json"}).status_code == 404
        )
        assert c.get("/data/projects/NOPE/subjects").status_code == 404


def test_rename_returns_empty_200_and_conflicts_409(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        c.put("/data/projects/P1/subjects/S1", params={"gender": "male"})
        c.put("/data/projects/P1/subjects/S2")
        renamed = c.put("/data/projects/P1/subjects/S1", params={"label": "S9", "gender": "x"})
        assert renamed.status_code == 200 and renamed.text == ""
        assert c.get("/data/projects/P1/subjects/S1?format=json").status_code == 404
        doc = c.get("/data/projects/P1/subjects/S9?format=json").json()["items"][0]
        assert doc["data_fields"]["label"] == "S9"
        kids = {k["field"]: k["items"] for k in doc["children"]}
        assert kids["demographics"][0]["data_fields"]["gender"] == "male"  # rest ignored
        clash = c.put("/data/projects/P1/subjects/S9", params={"label": "S2"})
        assert clash.status_code == 409 and h3(clash) == "Specified label is already in use."
        bad = c.put("/data/projects/P1/subjects/S9", params={"label": "bad label"})
        assert bad.status_code == 417


def test_put_on_missing_subject_silently_creates(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        typo = c.put("/data/projects/P1/subjects/SUBJ_TYPO", params={"gender": "female"})
        assert typo.status_code == 201 and typo.text.startswith("XNAT_S")
        rows = result_rows(c.get("/data/projects/P1/subjects", params={"columns": "label,gender"}))
        assert rows[0]["label"] == "SUBJ_TYPO" and rows[0]["gender"] == "female"
        assert c.put("/data/projects/P1/subjects/a%20b").status_code == 417


def test_xpaths_custom_variables_and_immutable_fields(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        params = {
            GENDER_XPATH: "female",
            "xnat:subjectData/group": "patients",
            "xnat:subjectData/fields/field[name='visit']/field": "v1",
            "xnat:ctSessionData/note": "ignored",
            "xsiType": "xnat:subjectData",
        }
        assert c.put("/data/subjects/XNAT_S00001", params=params).status_code == 200
        rows = result_rows(c.get("/data/projects/P1/subjects", params={"columns": "gender,group"}))
        assert (rows[0]["gender"], rows[0]["group"]) == ("female", "patients")
        doc = c.get("/data/subjects/XNAT_S00001?format=json").json()["items"][0]
        fields = next(k for k in doc["children"] if k["field"] == "fields/field")["items"]
        assert fields[0]["data_fields"] == {"name": "visit", "field": "v1"}
        moved = c.put("/data/projects/P1/subjects/S1", params={"xnat:subjectData/project": "P2"})
        assert moved.status_code == 409
        assert "separate URI" in h3(moved)
        new_id = c.put("/data/projects/P1/subjects/S1", params={"xnat:subjectData/ID": "X"})
        assert new_id.status_code == 400 and h3(new_id) == "ID cannot be modified"
        wrong = c.put("/data/projects/P1/subjects/S1", params={"xsiType": "xnat:mrSessionData"})
        assert wrong.status_code == 400


def test_xml_body_creates_subject(xnat_emulator: XNATEmulator) -> None:
    body = (
        '<xnat:Subject xmlns:xnat="http://nrg.wustl.edu/xnat" label="SX">'
        "<xnat:group>g1</xnat:group><xnat:demographics><xnat:gender>male</xnat:gender>"
        '</xnat:demographics><xnat:fields><xnat:field name="k">v</xnat:field></xnat:fields>'
        "</xnat:Subject>"
    )
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        headers = {"content-type": "text/xml"}
        assert (
            c.put("/data/projects/P1/subjects/SX", content=body, headers=headers).status_code == 201
        )
        rows = result_rows(c.get("/data/projects/P1/subjects", params={"columns": "group,gender"}))
        assert (rows[0]["group"], rows[0]["gender"]) == ("g1", "male")
        broken = c.put("/data/projects/P1/subjects/SY", content="<oops", headers=headers)
        assert broken.status_code == 422


def test_post_to_collection_returns_url_and_409_for_duplicates(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        made = c.post("/data/projects/P1/subjects", params={"label": "S5", "gender": "male"})
        assert made.status_code == 200
        assert made.text == f"{xnat_emulator.url}/data/projects/P1/subjects/XNAT_S00001"
        assert made.headers["location"] == made.text
        dup = c.post("/data/projects/P1/subjects", params={"label": "S5"})
        assert dup.status_code == 409 and h3(dup) == "Subject already exists."


def test_status_and_projects_subpaths(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        status = c.get("/data/projects/P1/subjects/S1/status")
        assert status.status_code == 200 and status.text == "active"
        c.put("/data/subjects/XNAT_S00001/projects/P2")
        rows = result_rows(c.get("/data/subjects/XNAT_S00001/projects", params={"format": "json"}))
        assert next(list(r) for r in rows) == ["label", "ID", "Secondary_ID", "Name"]
        assert [(r["ID"], r["label"]) for r in rows] == [("P1", "S1"), ("P2", "XNAT_S00001")]
        assert result_rows(c.get("/data/projects/P1/subjects/S1/projects"))[0]["Name"] == "P1"


def test_site_listing_shows_only_readable_subjects(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        c.put("/data/projects/P2/subjects/S2")
        add_member(xnat_emulator, c, "P1")
        assert len(result_rows(c.get("/data/subjects"))) == 2
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert [r["label"] for r in result_rows(bob.get("/data/subjects"))] == ["S1"]


def test_permissions_private_404_member_delete_403(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "PRIV", "PROT")
        assert c.put("/data/projects/PROT/accessibility/protected").status_code == 200
        c.put("/data/projects/P1/subjects/S1")
        c.put("/data/projects/PRIV/subjects/HIDDEN")
        add_member(xnat_emulator, c, "P1")
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.get("/data/projects/PRIV/subjects").status_code == 404
        assert bob.get("/data/subjects/XNAT_S00002?format=json").status_code == 404
        assert bob.delete("/data/subjects/XNAT_S00002").status_code == 404
        assert bob.put("/data/projects/PRIV/subjects/NEW").status_code == 404
        assert bob.get("/data/projects/PROT/subjects").status_code == 403
        assert bob.put("/data/projects/PROT/subjects/NEW").status_code == 403
        assert bob.put("/data/projects/P1/subjects/S2").status_code == 201
        assert bob.put("/data/projects/P1/subjects/S1", params={"gender": "m"}).status_code == 200
        denied = bob.delete("/data/projects/P1/subjects/S1")
        assert denied.status_code == 403
        assert bob.get("/data/projects/P1/subjects/S1?format=json").status_code == 200


def test_delete_from_owner_cascades_to_experiments(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1")
        c.put("/data/projects/P1/subjects/S1")
        exp = c.put(
            "/data/projects/P1/subjects/S1/experiments/E1", params={"xsiType": "xnat:mrSessionData"}
        ).text
        gone = c.delete("/data/projects/P1/subjects/S1", params={"removeFiles": "true"})
        assert gone.status_code == 200 and gone.text == ""
        assert c.get("/data/projects/P1/subjects/S1?format=json").status_code == 404
        assert c.get(f"/data/experiments/{exp}?format=json").status_code == 404
        assert result_rows(c.get("/data/projects/P1/subjects")) == []
        c.put("/data/projects/P1/subjects/S2")
        assert c.delete("/data/subjects/XNAT_S00002").status_code == 200
        assert c.delete("/data/subjects/XNAT_S00002").status_code == 404
        history = xnat_emulator.state.store.query(
            "SELECT action FROM history WHERE item_id='XNAT_S00001' ORDER BY id"
        )
        assert [h["action"] for h in history] == ["created", "deleted"]


def test_sharing_codes_labels_and_listing(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        c.put("/data/projects/P2/subjects/TAKEN")
        clash = c.put("/data/subjects/XNAT_S00001/projects/P2", params={"label": "TAKEN"})
        assert clash.status_code == 409 and h3(clash) == "Label already in use:TAKEN"
        shared = c.put("/data/subjects/XNAT_S00001/projects/P2", params={"label": "SH1"})
        assert shared.status_code == 200
        assert shared.headers["content-type"].startswith("text/html")
        again = c.put("/data/subjects/XNAT_S00001/projects/P2")
        assert again.status_code == 409 and h3(again) == "Already assigned to project:P2"
        assert c.put("/data/subjects/XNAT_S00001/projects/P1").status_code == 409
        rows = result_rows(c.get("/data/projects/P2/subjects"))
        assert {(r["label"], r["project"]) for r in rows} == {("SH1", "P1"), ("TAKEN", "P2")}
        doc = c.get("/data/projects/P2/subjects/SH1", params={"format": "json"}).json()
        assert doc["items"][0]["data_fields"]["label"] == "S1"
        share = [k for k in doc["items"][0]["children"] if k["field"] == "sharing/share"]
        assert share[0]["items"][0]["data_fields"] == {"label": "SH1", "project": "P2"}
        relabel = c.put("/data/projects/P1/subjects/S1/projects/P2", params={"label": "SH2"})
        assert relabel.status_code == 200
        assert c.get("/data/projects/P2/subjects/SH2?format=json").status_code == 200
        renamed = c.put("/data/projects/P2/subjects/SH2", params={"label": "SH3"})
        assert renamed.status_code == 200
        assert c.get("/data/projects/P1/subjects/S1?format=json").status_code == 200
        assert c.get("/data/projects/P2/subjects/SH3?format=json").status_code == 200
        assert c.put("/data/subjects/XNAT_S00001/projects/NOPE").status_code == 404


def test_unsharing_and_deleting_through_the_primary(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2", "P3")
        c.put("/data/projects/P1/subjects/S1")
        c.put("/data/subjects/XNAT_S00001/projects/P2", params={"label": "SH"})
        never = c.delete("/data/subjects/XNAT_S00001/projects/P3")
        assert never.status_code == 403
        assert h3(never) == "Subject is not assigned to specified project"
        unshared = c.delete("/data/projects/P2/subjects/SH")
        assert unshared.status_code == 200
        assert result_rows(c.get("/data/projects/P2/subjects")) == []
        assert c.get("/data/subjects/XNAT_S00001?format=json").status_code == 200
        c.put("/data/subjects/XNAT_S00001/projects/P2")
        assert c.delete("/data/subjects/XNAT_S00001/projects/P2").status_code == 200
        assert c.delete("/data/subjects/XNAT_S00001/projects/P1").status_code == 200
        assert c.get("/data/subjects/XNAT_S00001?format=json").status_code == 404


def test_primary_true_moves_ownership(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        moved = c.put(
            "/data/subjects/XNAT_S00001/projects/P2", params={"primary": "true", "label": "M1"}
        )
        assert moved.status_code == 200
        rows = result_rows(c.get("/data/projects/P2/subjects"))
        assert [(r["label"], r["project"]) for r in rows] == [("M1", "P2")]
        assert result_rows(c.get("/data/projects/P1/subjects")) == []


def test_sharing_permissions_and_flat_label(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        create_projects(c, "P1", "P2")
        c.put("/data/projects/P1/subjects/S1")
        add_member(xnat_emulator, c, "P1")
        c.put("/data/projects/P2/users/collaborator/bob")
        flat_label = c.put("/data/subjects/S1/projects/P2")
        assert flat_label.status_code == 403
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.put("/data/subjects/XNAT_S00001/projects/P2").status_code == 403
        assert (
            bob.put(
                "/data/subjects/XNAT_S00001/projects/P2", params={"primary": "true"}
            ).status_code
            == 403
        )
