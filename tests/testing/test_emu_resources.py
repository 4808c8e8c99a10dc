"""Emulator resource routes (``<parent>/resources[/{RES}]``) over real sockets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.testing._support import logged_in, result_rows
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes._cascade import resource_dir

RESOURCE_COLUMNS = [
    "xnat_abstractresource_id",
    "label",
    "element_name",
    "category",
    "cat_id",
    "cat_desc",
    "file_count",
    "file_size",
    "tags",
    "content",
    "format",
]
OCTET = {"Content-Type": "application/octet-stream"}


def _seed(emu: XNATEmulator, project: str = "P1") -> tuple[str, str]:
    """Project, subject S1, session SESS1 with scans 1 (T1w) and 2 (T2 w/FLAIR), over HTTP."""
    with logged_in(emu, timeout=30) as client:
        assert client.put(f"/data/projects/{project}").status_code == 200
        subject = client.put(f"/data/projects/{project}/subjects/S1")
        assert subject.status_code == 201, subject.text
        session = client.put(
            f"/data/projects/{project}/subjects/S1/experiments/SESS1",
            params={"xsiType": "xnat:mrSessionData"},
        )
        assert session.status_code == 201, session.text
        for scan_id, scan_type in (("1", "T1w"), ("2", "T2 w/FLAIR")):
            scan = client.put(
                f"/data/experiments/{session.text}/scans/{scan_id}",
                params={"xsiType": "xnat:mrScanData", "type": scan_type},
            )
            assert scan.status_code == 200, scan.text
    return subject.text, session.text


def _add_member(emu: XNATEmulator, login: str, group: str, project: str = "P1") -> None:
    emu.add_user(login, "pw")
    with logged_in(emu, timeout=30) as client:
        assert client.put(f"/data/projects/{project}/users/{group}/{login}").status_code == 200


def test_create_resource_sets_attributes_and_lists_fixed_columns(
    xnat_emulator: XNATEmulator,
) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        reply = client.put(
            "/data/projects/P1/resources/NOTES",
            params=[
                ("format", "TXT"),
                ("content", "notes"),
                ("description", "study notes"),
                ("tags", "a"),
                ("tags", "b"),
            ],
        )
        assert reply.status_code == 200 and reply.text == ""
        listed = client.get("/data/projects/P1/resources")
        envelope = listed.json()["ResultSet"]
        assert envelope["totalRecords"] == "1" and envelope["title"] == "Resources"
        (row,) = envelope["Result"]
        assert list(row) == RESOURCE_COLUMNS  # no URI column
        assert row["label"] == "NOTES" and row["format"] == "TXT" and row["content"] == "notes"
        assert row["tags"] == "a,b" and row["element_name"] == "xnat:resourceCatalog"
        assert row["category"] == "resources" and row["cat_id"] == "" and row["cat_desc"] == ""
        assert row["file_count"] == "0" and row["file_size"] == "0"
        assert row["xnat_abstractresource_id"].isdigit()
        catalog = ET.fromstring(client.get("/data/projects/P1/resources/NOTES").text)
        assert catalog.get("description") == "study notes"


def test_creating_an_existing_resource_is_409(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert client.post("/data/experiments/XNAT_E00001/resources/QC").status_code == 200
        again = client.put("/data/experiments/XNAT_E00001/resources/QC")
        assert again.status_code == 409
        assert "<h3>Specified resource already exists.</h3>" in again.text


def test_resource_get_is_the_catalog_xml_whatever_the_format(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        url = "/data/experiments/XNAT_E00001/scans/1/resources/DICOM"
        assert (
            client.put(f"{url}/files/sub/a.dcm", content=b"abc", headers=OCTET).status_code == 200
        )
        reply = client.get(url, params={"format": "json"})
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(reply.text)
        assert root.tag == "{http://nrg.wustl.edu/catalog}Catalog"
        (entry,) = root.iter("{http://nrg.wustl.edu/catalog}entry")
        assert entry.get("URI") == "sub/a.dcm" and entry.get("ID") == "sub/a.dcm"
        assert entry.get("name") == "a.dcm" and entry.get("size") == "3"
        assert entry.get("digest") == "900150983cd24fb0d6963f7d28e17f72"
        missing = client.get("/data/experiments/XNAT_E00001/resources/NOPE")
        assert (
            missing.status_code == 404 and "Unable to find the specified catalog." in missing.text
        )


@pytest.mark.parametrize(
    ("create_url", "list_url"),
    [
        ("/data/projects/P1/resources/R", "/data/archive/projects/P1/resources"),
        ("/data/projects/P1/subjects/S1/resources/R", "/data/subjects/XNAT_S00001/resources"),
        ("/data/subjects/XNAT_S00001/resources/R", "/data/projects/P1/subjects/S1/resources"),
        (
            "/data/experiments/XNAT_E00001/resources/R",
            "/data/projects/P1/experiments/SESS1/resources",
        ),
        (
            "/data/projects/P1/experiments/SESS1/resources/R",
            "/data/projects/P1/subjects/S1/experiments/SESS1/resources",
        ),
        (
            "/data/projects/P1/subjects/S1/experiments/SESS1/resources/R",
            "/REST/experiments/XNAT_E00001/resources",
        ),
        (
            "/data/experiments/XNAT_E00001/scans/1/resources/R",
            "/data/projects/P1/subjects/S1/experiments/SESS1/scans/1/resources",
        ),
        (
            "/data/projects/P1/subjects/S1/experiments/SESS1/scans/2/resources/R",
            "/data/experiments/XNAT_E00001/scans/2/resources",
        ),
    ],
)
def test_every_parent_form_creates_and_lists(
    xnat_emulator: XNATEmulator, create_url: str, list_url: str
) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert client.put(create_url).status_code == 200
        assert [r["label"] for r in result_rows(client.get(list_url))] == ["R"]


def test_scan_resources_carry_scan_context_and_all_true(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        client.put("/data/experiments/XNAT_E00001/resources/SESSION_NOTES")
        client.put(
            "/data/experiments/XNAT_E00001/scans/2/resources/NIFTI", params={"format": "NIFTI"}
        )
        plain = result_rows(client.get("/data/experiments/XNAT_E00001/resources"))
        assert [r["label"] for r in plain] == ["SESSION_NOTES"]
        every = result_rows(
            client.get("/data/experiments/XNAT_E00001/resources", params={"all": "true"})
        )
        assert [r["label"] for r in every] == ["SESSION_NOTES", "NIFTI"]
        scan_row = every[1]
        assert scan_row["category"] == "scans" and scan_row["cat_id"] == "2"
        assert scan_row["cat_desc"] == "T2 w/FLAIR" and scan_row["format"] == "NIFTI"
        fixed = client.get(  # columns= and filters are ignored: the table is fixed
            "/data/experiments/XNAT_E00001/resources",
            params={"all": "true", "category": "scans", "columns": "ID,URI,xsiType"},
        )
        assert [list(r) for r in result_rows(fixed)] == [RESOURCE_COLUMNS, RESOURCE_COLUMNS]
        as_xml = client.get("/data/experiments/XNAT_E00001/resources", params={"format": "xml"})
        assert 'title="Resources"' in as_xml.text


def test_resource_selector_by_numeric_id_and_comma_list(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        for label in ("A", "B", "C"):
            client.put(f"/data/projects/P1/resources/{label}")
        ids = {
            r["label"]: r["xnat_abstractresource_id"]
            for r in result_rows(client.get("/data/projects/P1/resources"))
        }
        by_id = ET.fromstring(client.get(f"/data/projects/P1/resources/{ids['B']}").text)
        assert by_id.get("ID") == "B"
        assert client.delete(f"/data/projects/P1/resources/A,{ids['C']}").status_code == 200
        assert [r["label"] for r in result_rows(client.get("/data/projects/P1/resources"))] == ["B"]


def test_delete_removes_files_and_missing_resources_are_a_silent_200(
    xnat_emulator: XNATEmulator,
) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    with logged_in(xnat_emulator, timeout=30) as client:
        url = "/data/experiments/XNAT_E00001/resources/RAW"
        assert client.put(f"{url}/files/x.bin", content=b"x" * 10, headers=OCTET).status_code == 200
        resource_id = int(
            result_rows(client.get("/data/experiments/XNAT_E00001/resources"))[0][
                "xnat_abstractresource_id"
            ]
        )
        assert (resource_dir(state, resource_id) / "x.bin").is_file()
        assert client.delete(url).status_code == 200
        assert not resource_dir(state, resource_id).exists()
        assert state.store.one("SELECT 1 FROM files WHERE resource_id=?", (resource_id,)) is None
        assert result_rows(client.get("/data/experiments/XNAT_E00001/resources")) == []
        assert client.delete(url).status_code == 200  # gone already: still 200
        assert client.delete("/data/projects/P1/resources/NEVER").status_code == 200


def test_members_may_create_but_not_delete(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    _add_member(xnat_emulator, "member1", "Members")
    _add_member(xnat_emulator, "collab1", "Collaborators")
    with logged_in(xnat_emulator, "member1", "pw", timeout=30) as member:
        assert member.put("/data/projects/P1/subjects/S1/resources/M").status_code == 200
        assert member.delete("/data/projects/P1/subjects/S1/resources/M").status_code == 403
    with logged_in(xnat_emulator, "collab1", "pw", timeout=30) as collaborator:
        assert collaborator.put("/data/projects/P1/resources/C").status_code == 403
        assert [
            r["label"]
            for r in result_rows(collaborator.get("/data/subjects/XNAT_S00001/resources"))
        ] == ["M"]
    with logged_in(xnat_emulator, timeout=30) as owner:
        assert owner.delete("/data/projects/P1/subjects/S1/resources/M").status_code == 200


def test_private_data_is_404_for_outsiders(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    xnat_emulator.add_user("stranger", "pw")
    with logged_in(xnat_emulator, "stranger", "pw", timeout=30) as client:
        assert client.get("/data/projects/P1/resources").status_code == 404
        assert client.get("/data/experiments/XNAT_E00001/resources").status_code == 404
        assert client.put("/data/experiments/XNAT_E00001/resources/X").status_code == 404


def test_unknown_parents_and_scans(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert client.get("/data/experiments/SESS1/resources").status_code == 404  # label: flat URL
        assert client.get("/data/experiments/XNAT_E00001/scans/9/resources").status_code == 404
        write = client.put("/data/experiments/XNAT_E00001/scans/ALL/resources/X")
        assert write.status_code == 404  # writes need exactly one scan
        assert client.get("/data/projects/NOPE/resources").status_code == 404
