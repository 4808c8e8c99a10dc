"""Emulator scan routes over real sockets: listing, documents, create/update rules, delete."""

from __future__ import annotations

import httpx

from tests.testing._support import first_item, h3, logged_in, result_rows
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes._cascade import resource_dir

MR_SCAN = "xnat:mrScanData"
SESSION = "/data/projects/P1/subjects/S1/experiments/E1"
FLAT = "/data/experiments/XNAT_E00001"


def _setup(client: httpx.Client) -> None:
    assert client.put("/data/projects/P1").status_code == 200
    made = client.put(SESSION, params={"xsiType": "xnat:mrSessionData"})
    assert made.text == "XNAT_E00001"
    created = client.put(f"{FLAT}/scans/1", params={"xsiType": MR_SCAN, "type": "T1"})
    assert (created.status_code, created.text) == (200, "")


def test_listing_default_columns_and_uri(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put(f"{SESSION}/scans/2", params={"xsiType": "xnat:ctScanData", "quality": "usable"})
        body = c.get(f"{FLAT}/scans").json()["ResultSet"]
        assert body["totalRecords"] == "2"
        first, second = body["Result"]
        assert list(first) == [
            "xnat_imagescandata_id",
            "ID",
            "type",
            "quality",
            "xsiType",
            "note",
            "series_description",
            "URI",
        ]
        assert first["URI"] == "/data/experiments/XNAT_E00001/scans/1"
        assert (first["ID"], first["type"], first["xsiType"]) == ("1", "T1", MR_SCAN)
        assert first["xnat_imagescandata_id"].isdigit()
        assert (second["xsiType"], second["quality"]) == ("xnat:ctScanData", "usable")
        assert result_rows(c.get(f"{SESSION}/scans")) == body["Result"]
        cts = result_rows(c.get(f"{FLAT}/scans", params={"xsiType": "xnat:ctScanData"}))
        assert [r["ID"] for r in cts] == ["2"]
        usable = result_rows(c.get(f"{FLAT}/scans", params={"quality": "usable"}))
        assert [r["ID"] for r in usable] == ["2"]


def test_extra_columns(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put(f"{FLAT}/scans/1", params={"frames": "176", "UID": "1.2.840.1"})
        cols = "ID,frames,UID,modality,insert_date,last_modified"
        (row,) = result_rows(c.get(f"{FLAT}/scans", params={"columns": cols}))
        assert list(row) == [*cols.split(","), "URI"]
        assert (row["frames"], row["UID"], row["modality"]) == ("176", "1.2.840.1", "MR")
        assert row["insert_date"] and row["last_modified"] >= row["insert_date"]


def test_new_scan_rules(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        empty = c.put(f"{FLAT}/scans/5")
        assert empty.status_code == 417 and h3(empty) == "Need PUT Contents"
        shortcut = c.put(f"{FLAT}/scans/5", params={"type": "T2"})
        assert shortcut.status_code == 400 and "modality-specific" in h3(shortcut)
        abstract = c.put(f"{FLAT}/scans/5", params={"xsiType": "xnat:imageScanData", "type": "T2"})
        assert abstract.status_code == 400
        assert c.put(f"{FLAT}/scans/5", params={"xsiType": "xnat:nonsense"}).status_code == 400
        assert c.get(f"{FLAT}/scans/5?format=json").status_code == 404
        other = c.put(f"{FLAT}/scans/6", params={"xsiType": "xnat:otherDicomScanData"})
        assert (other.status_code, other.text) == (200, "")
        assert first_item(c, f"{FLAT}/scans/6")["data_fields"]["modality"] == "OT"


def test_existing_scan_updates(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        assert (c.put(f"{FLAT}/scans/1").status_code, c.put(f"{FLAT}/scans/1").text) == (200, "")
        for name, value in (
            ("quality", "questionable"),
            ("type", "MPRAGE"),
            ("note", "moved"),
            ("series_description", "t1_mprage"),
            ("frames", "160"),
            ("UID", "1.2.3"),
        ):
            reply = c.put(f"{FLAT}/scans/1", params={name: value})
            assert (reply.status_code, reply.text) == (200, "")
            assert first_item(c, f"{FLAT}/scans/1")["data_fields"][name] == value
        assert (
            c.put(f"{FLAT}/scans/1", params={"xnat:imageScanData/note": "base"}).status_code == 200
        )
        assert first_item(c, f"{FLAT}/scans/1")["data_fields"]["note"] == "base"
        assert c.put(f"{FLAT}/scans/1", params={f"{MR_SCAN}/quality": "usable"}).status_code == 200
        assert first_item(c, f"{FLAT}/scans/1")["data_fields"]["quality"] == "usable"
        foreign = c.put(f"{FLAT}/scans/1", params={"xnat:ctScanData/note": "ct"})
        assert foreign.status_code == 200
        assert first_item(c, f"{FLAT}/scans/1")["data_fields"]["note"] == "base"
        changed = c.put(f"{FLAT}/scans/1", params={"xsiType": "xnat:ctScanData"})
        assert changed.status_code == 409
        assert h3(changed) == "Specified xsiType differs from existing xsiType"
        same = c.put(f"{FLAT}/scans/1", params={"xsiType": MR_SCAN, "note": "again"})
        assert same.status_code == 200


def test_item_document_formats_and_url_forms(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        c.put(f"{SESSION}/scans/1", params={"series_description": "t1", "quality": "usable"})
        item = first_item(c, f"{SESSION}/scans/1")
        assert item["meta"]["xsi:type"] == MR_SCAN
        data = item["data_fields"]
        assert (data["ID"], data["type"], data["series_description"]) == ("1", "T1", "t1")
        assert data["image_session_ID"] == "XNAT_E00001"
        assert first_item(c, f"{FLAT}/scans/1") == item
        xml = c.get(f"{FLAT}/scans/1", params={"format": "xml"})
        assert "<xnat:MRScan " in xml.text and 'type="T1"' in xml.text
        assert c.get(f"{FLAT}/scans/1").headers["content-type"].startswith("text/html")
        missing = c.get(f"{FLAT}/scans/99", params={"format": "json"})
        assert missing.status_code == 404 and h3(missing) == "Unable to find the specified scan."
        assert c.get("/data/experiments/NOPE/scans").status_code == 404
        assert c.get("/data/projects/P1/subjects/S1/experiments/NOPE/scans").status_code == 404
        quirk = c.get("/data/projects/P1/experiments/E1/scans/1", params={"format": "json"})
        assert quirk.json()["items"][0]["meta"]["xsi:type"] == "xnat:mrSessionData"


def test_delete_with_remove_files_and_history(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        pk = result_rows(c.get(f"{FLAT}/scans"))[0]["xnat_imagescandata_id"]
        store = xnat_emulator.state.store
        rid = store.execute(
            "INSERT INTO resources(parent_type, parent_id, label) VALUES('scan', ?, 'DICOM')", (pk,)
        )
        folder = resource_dir(xnat_emulator.state, rid)
        folder.mkdir(parents=True)
        (folder / "1.dcm").write_bytes(b"x")
        kids = first_item(c, f"{FLAT}/scans/1")["children"]
        assert kids[0]["field"] == "file" and kids[0]["items"][0]["data_fields"]["label"] == "DICOM"
        gone = c.delete(f"{SESSION}/scans/1", params={"removeFiles": "true"})
        assert (gone.status_code, gone.text) == (200, "")
        assert not folder.exists()
        assert store.one("SELECT 1 FROM resources WHERE xnat_abstractresource_id=?", (rid,)) is None
        assert result_rows(c.get(f"{FLAT}/scans")) == []
        assert c.delete(f"{FLAT}/scans/1").status_code == 404
        history = result_rows(c.get(f"{FLAT}/history"))
        scan_rows = [(h["action"], h["xsiType"]) for h in history if h["xsiType"] == MR_SCAN]
        assert scan_rows == [("created", MR_SCAN), ("deleted", MR_SCAN)]


def test_permissions(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as c:
        _setup(c)
        assert c.put("/data/projects/PRIV").status_code == 200
        c.put(
            "/data/projects/PRIV/subjects/X/experiments/H", params={"xsiType": "xnat:mrSessionData"}
        )
        c.put("/data/experiments/XNAT_E00002/scans/1", params={"xsiType": MR_SCAN})
        xnat_emulator.add_user("bob", "pw")
        assert c.put("/data/projects/P1/users/member/bob").status_code == 200
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        assert bob.get("/data/experiments/XNAT_E00002/scans").status_code == 404
        assert bob.get("/data/experiments/XNAT_E00002/scans/1?format=json").status_code == 404
        assert bob.delete("/data/experiments/XNAT_E00002/scans/1").status_code == 404
        assert bob.put(f"{FLAT}/scans/2", params={"xsiType": MR_SCAN}).status_code == 200
        assert bob.put(f"{FLAT}/scans/1", params={"quality": "usable"}).status_code == 200
        assert bob.delete(f"{FLAT}/scans/1").status_code == 403
        assert len(result_rows(bob.get(f"{FLAT}/scans"))) == 2
