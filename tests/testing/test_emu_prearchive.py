"""The emulator's prearchive routes: listing shape, one session, sub-resources, actions, batch."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx

from tests.testing._support import IMPORT, import_zip
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

COLUMNS = [
    "project",
    "timestamp",
    "lastmod",
    "uploaded",
    "scan_date",
    "scan_time",
    "subject",
    "folderName",
    "name",
    "tag",
    "status",
    "url",
    "autoarchive",
    "prevent_anon",
    "prevent_auto_commit",
    "SOURCE",
    "VISIT",
    "PROTOCOL",
    "TIMEZONE",
]


def _ready_session(
    xnat_emulator: XNATEmulator,
    client: httpx.Client,
    tmp_path: Path,
    project: str = "PRE",
    *,
    code: int = 0,
    series: int = 2,
    session: str = "SESS001",
) -> dict[str, str]:
    """Upload a small study into a project with the given code and wait until it is READY."""
    if client.get(f"/data/projects/{project}").status_code == 404:
        assert client.put(f"/data/projects/{project}").status_code == 200
    assert client.put(f"/data/projects/{project}/prearchive_code/{code}").status_code == 200
    root = tmp_path / session
    study = generate_study(
        root, project=project, session=session, series=series, instances_per_series=2
    )
    import_zip(xnat_emulator, client, study.files, root)
    rows = client.get(f"/data/prearchive/projects/{project}").json()["ResultSet"]["Result"]
    [row] = [r for r in rows if r["name"] == session]
    assert row["status"] == "READY"
    return dict(row)


def test_listing_shape(xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path) -> None:
    row = _ready_session(xnat_emulator, client, tmp_path)
    body = client.get("/data/prearchive").json()
    assert "totalRecords" not in body["ResultSet"]
    [listed] = body["ResultSet"]["Result"]
    assert list(listed) == COLUMNS
    assert all(isinstance(v, str) for v in listed.values())
    assert listed["url"] == f"/prearchive/projects/PRE/{row['timestamp']}/SESS001"
    assert len(listed["timestamp"]) == len("20240131_140509123") and listed["timestamp"][8] == "_"
    assert listed["subject"] == "SUBJ001" and listed["scan_date"] == "2024-01-01"
    assert client.get("/data/prearchive/projects").json() == body
    assert client.get("/data/prearchive/projects/PRE,Unassigned").json() == body
    by_tag = client.get("/data/prearchive", params={"tag": listed["tag"]}).json()
    assert by_tag["ResultSet"]["Result"] == [listed]
    csv = client.get("/data/prearchive/projects/PRE", params={"format": "csv"}).text
    assert csv.splitlines()[0] == ",".join(COLUMNS)


def test_listing_permissions(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    _ready_session(xnat_emulator, client, tmp_path)
    xnat_emulator.add_user("outsider", "pw")
    xnat_emulator.add_user("member", "pw")
    assert client.put("/data/projects/PRE/users/member/member").status_code == 200
    with httpx.Client(base_url=xnat_emulator.url, auth=("outsider", "pw")) as outsider:
        assert outsider.get("/data/prearchive/projects/PRE").status_code == 403
        assert outsider.get("/data/prearchive").json()["ResultSet"]["Result"] == []
    with httpx.Client(base_url=xnat_emulator.url, auth=("member", "pw")) as member:
        rows = member.get("/data/prearchive").json()["ResultSet"]["Result"]
        assert [r["project"] for r in rows] == ["PRE"]
    assert httpx.get(f"{xnat_emulator.url}/data/prearchive").status_code == 401


def test_one_session_documents(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    row = _ready_session(xnat_emulator, client, tmp_path)
    uri = "/data" + row["url"]
    xml = client.get(uri)
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("text/xml")
    assert 'xsi:type="xnat:mrSessionData"' in xml.text and 'label="SESS001"' in xml.text
    one = client.get(uri, params={"format": "json"}).json()["ResultSet"]
    assert "totalRecords" not in one and [r["status"] for r in one["Result"]] == ["READY"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(uri, params={"format": "zip"}).content))
    names = archive.namelist()
    assert len(names) == 4 and all(n.startswith("SESS001/SCANS/") for n in names)
    scans = client.get(uri + "/scans").json()["ResultSet"]["Result"]
    assert [list(s) for s in scans] == [["ID", "xsiType", "series_description"]] * 2
    assert [(s["ID"], s["series_description"]) for s in scans] == [
        ("1", "T1_MPRAGE"),
        ("2", "T2_FLAIR"),
    ]
    resources = client.get(uri + "/scans/1/resources").json()["ResultSet"]["Result"]
    assert resources[0]["label"] == "DICOM" and resources[0]["file_count"] == "2"
    files = client.get(uri + "/scans/1/resources/DICOM/files").json()["ResultSet"]
    assert "totalRecords" not in files
    assert [list(f) for f in files["Result"]] == [["Name", "Size", "URI"]] * 2
    first = files["Result"][0]
    assert first["URI"] == f"{uri}/scans/1/resources/DICOM/files/{first['Name']}"
    download = client.get(first["URI"])
    assert download.status_code == 200 and len(download.content) == int(first["Size"])
    assert download.content[128:132] == b"DICM"
    assert client.get(uri + "/scans/9/resources").status_code == 404
    logs = client.get(uri + "/logs").json()["ResultSet"]["Result"]
    assert list(logs[0]) == ["id", "date", "entry"]
    assert "built" in client.get(uri + "/logs/last").text
    assert client.get("/data/prearchive/projects/PRE/20000101_000000000/NOPE").status_code == 404


def test_actions(xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path) -> None:
    row = _ready_session(xnat_emulator, client, tmp_path)
    uri = "/data" + row["url"]
    build = client.post(uri, params={"action": "build"})
    assert build.status_code == 200 and build.text == uri + "\r\n"
    reset = client.post(uri, params={"action": "reset-status"})
    assert reset.status_code == 200
    for bad in ("rebuild", "explode", ""):
        reply = client.post(uri, params={"action": bad})
        assert reply.status_code == 400, bad
    assert client.put("/data/projects/OTHER").status_code == 200
    assert client.put("/data/projects/OTHER/prearchive_code/0").status_code == 200
    moved = client.post(uri, params={"action": "move", "newProject": "OTHER"})
    assert moved.status_code == 301
    new_uri = f"/data/prearchive/projects/OTHER/{row['timestamp']}/SESS001"
    assert moved.text == new_uri + "\r\n"
    assert client.get(uri).status_code == 404
    assert 'project="OTHER"' in client.get(new_uri).text
    # commit on a code-0 project builds and stays in the prearchive: 200 + prearchive URI
    commit = client.post(new_uri, params={"action": "commit"})
    assert commit.status_code == 200 and commit.text == new_uri + "\r\n"
    # commit with AA=true archives synchronously: 301 + archive URI
    commit = client.post(new_uri, data={"action": "commit", "AA": "true"})
    assert commit.status_code == 301
    assert commit.text == "/data/archive/projects/OTHER/subjects/SUBJ001/experiments/SESS001\r\n"
    assert client.get(new_uri).status_code == 404


def test_delete_and_permissions(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    row = _ready_session(xnat_emulator, client, tmp_path)
    uri = "/data" + row["url"]
    xnat_emulator.add_user("reader", "pw")
    assert client.put("/data/projects/PRE/users/collaborator/reader").status_code == 200
    with httpx.Client(base_url=xnat_emulator.url, auth=("reader", "pw")) as reader:
        assert reader.get(uri, params={"format": "json"}).status_code == 200
        assert reader.delete(uri).status_code == 403
        assert reader.post(uri, params={"action": "build"}).status_code == 403
    assert client.delete(uri + "/scans/1").status_code == 400
    assert client.delete(uri).status_code == 200
    assert client.get(uri).status_code == 404
    assert client.delete(uri).status_code == 404
    state = xnat_emulator.state
    assert state is not None
    assert not (state.store.prearchive_dir / "PRE" / row["timestamp"]).exists()


def test_xml_is_404_until_built(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    assert client.put("/data/projects/SLOW").status_code == 200
    xnat_emulator.set_timing(rebuild_quiet_seconds=60)
    study = generate_study(tmp_path, project="SLOW", series=1, instances_per_series=1)
    reply = client.post(
        IMPORT, content=study.files[0].read_bytes(), headers={"Content-Type": "application/dicom"}
    )
    uri = reply.text.strip()
    missing = client.get(uri)
    assert missing.status_code == 404 and "session document is not available" in missing.text
    assert client.post(uri, params={"action": "build"}).status_code == 200
    assert client.get(uri).status_code == 200


def test_batch_services(xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path) -> None:
    first = _ready_session(xnat_emulator, client, tmp_path, session="ONE")
    second = _ready_session(xnat_emulator, client, tmp_path, session="TWO")
    assert client.put("/data/projects/DEST").status_code == 200
    assert client.put("/data/projects/DEST/prearchive_code/0").status_code == 200
    moved = client.post(
        "/data/services/prearchive/move", params={"src": first["url"], "newProject": "DEST"}
    )
    assert moved.status_code == 200
    [queued] = moved.json()["ResultSet"]["Result"]
    assert queued["status"] == "QUEUED_MOVING"
    rebuilt = client.post(
        "/data/services/prearchive/rebuild", params={"src": "/data" + second["url"]}
    )
    assert rebuilt.json()["ResultSet"]["Result"][0]["status"] == "QUEUED_BUILDING"
    assert xnat_emulator.wait_idle(10)
    assert [
        r["name"]
        for r in client.get("/data/prearchive/projects/DEST").json()["ResultSet"]["Result"]
    ] == ["ONE"]
    deleted = client.post(
        "/data/services/prearchive/delete",
        params={"src": second["url"], "async": "false"},
    )
    assert deleted.status_code == 200 and deleted.json()["ResultSet"]["Result"] == []
    assert client.get("/data/prearchive/projects/PRE").json()["ResultSet"]["Result"] == []
    missing = client.post("/data/services/prearchive/delete", params={"src": second["url"]})
    assert missing.status_code == 404
    moved_url = first["url"].replace("/projects/PRE/", "/projects/DEST/")
    no_target = client.post("/data/services/prearchive/move", params={"src": moved_url})
    assert no_target.status_code == 400
