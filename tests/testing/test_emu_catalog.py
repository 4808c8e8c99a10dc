"""Emulator catalog refresh service (``POST /data/services/refresh/catalog``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes._cascade import resource_dir

OCTET = {"Content-Type": "application/octet-stream"}
REFRESH = "/data/services/refresh/catalog"
DICOM = "/data/experiments/XNAT_E00001/scans/1/resources/DICOM"


def _seed(emu: XNATEmulator) -> None:
    """Project P1, subject S1, session SESS1 with scan 1 and one uploaded file, over HTTP."""
    with logged_in(emu, timeout=30) as client:
        assert client.put("/data/projects/P1").status_code == 200
        assert client.put("/data/projects/P1/subjects/S1").text == "XNAT_S00001"
        session = client.put(
            "/data/projects/P1/subjects/S1/experiments/SESS1",
            params={"xsiType": "xnat:mrSessionData"},
        )
        assert session.text == "XNAT_E00001"
        scan = client.put(
            "/data/experiments/XNAT_E00001/scans/1",
            params={"xsiType": "xnat:mrScanData", "type": "T1w"},
        )
        assert scan.status_code == 200, scan.text
        reply = client.put(f"{DICOM}/files/0001.dcm", content=b"first", headers=OCTET)
        assert reply.status_code == 200


def _folder(emu: XNATEmulator) -> Path:
    state = emu.state
    assert state is not None
    row = state.store.one(
        "SELECT xnat_abstractresource_id AS id FROM resources WHERE label='DICOM'"
    )
    assert row is not None
    return resource_dir(state, int(row["id"]))


def _catalog(client: httpx.Client) -> dict[str, dict[str, str]]:
    reply = client.get(f"{DICOM}/files")
    assert reply.status_code == 200, reply.text
    return {r["Name"]: r for r in reply.json()["ResultSet"]["Result"]}


def _stats(client: httpx.Client) -> tuple[str, str]:
    row = client.get("/data/experiments/XNAT_E00001/scans/1/resources").json()["ResultSet"]
    first = row["Result"][0]
    return first["file_count"], first["file_size"]


def test_append_catalogs_files_written_behind_xnats_back(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    folder = _folder(xnat_emulator)
    (folder / "extra").mkdir()
    (folder / "extra" / "0002.dcm").write_bytes(b"second")
    with logged_in(xnat_emulator, timeout=30) as client:
        assert set(_catalog(client)) == {"0001.dcm"}
        reply = client.post(
            REFRESH,
            params={
                "resource": "/archive/experiments/XNAT_E00001/scans/1/resources/DICOM",
                "options": "append",
            },
        )
        assert reply.status_code == 200 and reply.text == ""
        added = _catalog(client)["0002.dcm"]
        assert added["Size"] == "6" and added["digest"] == ""  # append alone: no checksum
        assert added["URI"].endswith("/files/extra/0002.dcm")
        assert _stats(client) == ("1", "5")  # stats untouched without populateStats
        assert client.get(f"{DICOM}/files/extra/0002.dcm").content == b"second"


def test_delete_drops_entries_whose_files_are_gone(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        client.put(f"{DICOM}/files/0003.dcm", content=b"333", headers=OCTET)
        (_folder(xnat_emulator) / "0001.dcm").unlink()
        reply = client.post(
            REFRESH,
            params=[
                ("resource", "/data/archive/experiments/XNAT_E00001"),
                ("options", "delete,populateStats"),
            ],
        )
        assert reply.status_code == 200
        assert set(_catalog(client)) == {"0003.dcm"}
        assert _stats(client) == ("1", "3")


def test_checksum_fills_missing_digests_only(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    with logged_in(xnat_emulator, timeout=30) as client:
        state.store.execute("UPDATE files SET digest=''")
        assert _catalog(client)["0001.dcm"]["digest"] == ""
        reply = client.post(
            REFRESH,
            params={
                "resource": "/REST/archive/projects/P1/subjects/S1/experiments/SESS1",
                "checksum": "true",
            },
        )
        assert reply.status_code == 200
        assert _catalog(client)["0001.dcm"]["digest"] == hashlib.md5(b"first").hexdigest()
        state.store.execute("UPDATE files SET digest='kept'")
        client.post(
            REFRESH, params={"resource": "/archive/experiments/XNAT_E00001", "options": "checksum"}
        )
        assert _catalog(client)["0001.dcm"]["digest"] == "kept"


def test_no_options_means_every_operation(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    folder = _folder(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        (folder / "0001.dcm").unlink()
        (folder / "new.dcm").write_bytes(b"new-bytes")
        reply = client.post(REFRESH, params={"resource": "/archive/projects/P1/experiments/SESS1"})
        assert reply.status_code == 200
        catalog = _catalog(client)
        assert set(catalog) == {"new.dcm"}
        assert catalog["new.dcm"]["digest"] == hashlib.md5(b"new-bytes").hexdigest()
        assert _stats(client) == ("1", "9")


def test_populate_stats_and_form_fields(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    state.store.execute("UPDATE resources SET file_count=NULL, file_size=NULL")
    with logged_in(xnat_emulator, timeout=30) as client:
        assert _stats(client) == ("", "")
        reply = client.post(
            REFRESH,
            data={
                "resource": "/archive/projects/P1/subjects/S1/experiments/SESS1/scans/1",
                "options": "populateStats",
            },
        )
        assert reply.status_code == 200
        assert _stats(client) == ("1", "5")


def test_project_and_subject_resources(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    state = xnat_emulator.state
    assert state is not None
    with logged_in(xnat_emulator, timeout=30) as client:
        client.put("/data/projects/P1/resources/PR/files/a.txt", content=b"a", headers=OCTET)
        client.put("/data/projects/P1/subjects/S1/resources/SR")
        row = state.store.one(
            "SELECT xnat_abstractresource_id AS id FROM resources WHERE label='SR'"
        )
        assert row is not None
        subject_folder = resource_dir(state, int(row["id"]))
        subject_folder.mkdir(parents=True)
        (subject_folder / "s.txt").write_bytes(b"ss")
        for uri in ("/archive/projects/P1", "/archive/projects/P1/subjects/S1/resources/SR"):
            assert client.post(REFRESH, params={"resource": uri}).status_code == 200
        files = client.get("/data/projects/P1/subjects/S1/resources/SR/files").json()
        assert [r["Name"] for r in files["ResultSet"]["Result"]] == ["s.txt"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"resource": "/data/experiments/XNAT_E00001"}, 400),  # not an /archive path
        ({"resource": "/archive/experiments"}, 400),
        ({"resource": "/archive/scans/1"}, 400),
        ({"resource": "/archive/experiments/XNAT_E09999"}, 404),
        ({"resource": "/archive/experiments/XNAT_E00001/resources/NOPE"}, 404),
        ({"resource": "/archive/experiments/XNAT_E00001", "options": "sparkle"}, 400),
    ],
)
def test_bad_requests(xnat_emulator: XNATEmulator, params: dict[str, str], status: int) -> None:
    _seed(xnat_emulator)
    with logged_in(xnat_emulator, timeout=30) as client:
        assert client.post(REFRESH, params=params).status_code == status


def test_refresh_needs_edit_permission(xnat_emulator: XNATEmulator) -> None:
    _seed(xnat_emulator)
    xnat_emulator.add_user("collab", "pw")
    xnat_emulator.add_user("stranger", "pw")
    with logged_in(xnat_emulator, timeout=30) as admin:
        admin.put("/data/projects/P1/users/Collaborators/collab")
    params = {"resource": "/archive/experiments/XNAT_E00001"}
    with logged_in(xnat_emulator, "collab", "pw", timeout=30) as collaborator:
        assert collaborator.post(REFRESH, params=params).status_code == 403
    with logged_in(xnat_emulator, "stranger", "pw", timeout=30) as stranger:
        assert stranger.post(REFRESH, params=params).status_code == 404
