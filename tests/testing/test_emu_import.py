"""The emulator's DICOM intake: gradual-DICOM, DICOM-zip, SI, Direct-Archive and C-STORE."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pynetdicom import AE

from tests.testing._support import IMPORT, ZIP, coded_project
from xnat_prefect.testing import Timing, XNATEmulator
from xnat_prefect.testing.routes.imports import NotDicomError, ReceiveOptions, store_received_file
from xnat_prefect.testing.synthetic import StudyManifest, generate_study, write_non_dicom

DICOM = {"Content-Type": "application/dicom"}


def _zip(study: StudyManifest, root: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for index, path in enumerate(study.files):
            archive.write(path, path.relative_to(root).as_posix())
            if extra and index == 1:
                for name, data in extra.items():
                    archive.writestr(name, data)
    return buf.getvalue()


def _post_zip(
    client: httpx.Client, body: bytes, params: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(IMPORT, params=params, content=body, headers=ZIP)


def _post_dicom(
    client: httpx.Client, data: bytes, params: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(IMPORT, params=params, content=data, headers=DICOM)


def _prearc(client: httpx.Client, project: str | None = None) -> list[dict[str, str]]:
    path = "/data/prearchive" if project is None else f"/data/prearchive/projects/{project}"
    rows: list[dict[str, str]] = client.get(path).json()["ResultSet"]["Result"]
    return rows


def _experiments(client: httpx.Client, project: str) -> list[dict[str, str]]:
    reply = client.get(f"/data/projects/{project}/experiments")
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
    return rows


def _uris(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/uri-list")
    assert reply.text.endswith("\r\n")
    return reply.text.split("\r\n")[:-1]


def test_gradual_dicom_file_by_file_is_received_built_and_auto_archived(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "GRAD", code=4)
    study = generate_study(tmp_path, project="GRAD", series=2, instances_per_series=3)
    xnat_emulator.set_timing(rebuild_quiet_seconds=30)
    uris = set()
    for path in study.files:
        reply = _post_dicom(client, path.read_bytes())
        uris.update(_uris(reply))
    assert len(uris) == 1
    uri = uris.pop()
    assert uri.startswith("/data/prearchive/projects/GRAD/") and uri.endswith("/SESS001")
    [row] = _prearc(client, "GRAD")
    assert row["status"] == "RECEIVING" and row["tag"] == study.study_uid
    assert client.get(uri).status_code == 404  # no session XML before the build
    xnat_emulator.set_timing(rebuild_quiet_seconds=0.3)
    assert xnat_emulator.wait_idle(10)
    assert _prearc(client, "GRAD") == []
    [experiment] = _experiments(client, "GRAD")
    assert experiment["label"] == "SESS001" and experiment["xsiType"] == "xnat:mrSessionData"
    scans = client.get(f"/data/experiments/{experiment['ID']}/scans").json()["ResultSet"]["Result"]
    assert [(s["ID"], s["xsiType"]) for s in scans] == [
        ("1", "xnat:mrScanData"),
        ("2", "xnat:mrScanData"),
    ]
    files = client.get(
        f"/data/experiments/{experiment['ID']}/scans/1/resources/DICOM/files"
    ).json()["ResultSet"]["Result"]
    expected = {hashlib.md5(p.read_bytes()).hexdigest() for p in study.files[:3]}
    assert {f["digest"] for f in files} == expected


def test_code_zero_project_keeps_the_session_ready(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "MANUAL", code=0)
    study = generate_study(tmp_path, project="MANUAL", series=1, instances_per_series=2)
    for path in study.files:
        _uris(_post_dicom(client, path.read_bytes()))
    assert xnat_emulator.wait_idle(10)
    [row] = _prearc(client, "MANUAL")
    assert row["status"] == "READY" and row["autoarchive"] == "Manual"
    assert _experiments(client, "MANUAL") == []
    xml = client.get("/data" + row["url"])
    assert xml.status_code == 200 and "<xnat:MRSession" in xml.text and 'ID="1"' in xml.text


def test_dicom_zip_is_the_default_and_two_uploads_reuse_one_session(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "ZIPS", code=0)
    study = generate_study(tmp_path / "s", project="ZIPS", series=2, instances_per_series=2)
    body = _zip(study, tmp_path / "s")
    first = _uris(_post_zip(client, body))
    second = _uris(_post_zip(client, body))
    assert first == second and len(first) == 1
    assert xnat_emulator.wait_idle(10)
    [row] = _prearc(client, "ZIPS")
    assert row["status"] == "READY"
    files = client.get(f"/data{row['url']}/scans/1/resources/DICOM/files").json()
    assert len(files["ResultSet"]["Result"]) == 2  # the same SOP UIDs replaced, not duplicated


def test_dicom_zip_as_a_multipart_tar_gz(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "TARS", code=4)
    root = tmp_path / "s"
    study = generate_study(root, project="TARS", series=2, instances_per_series=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for path in study.files:
            archive.add(path, path.relative_to(root).as_posix())
    reply = client.post(
        IMPORT,
        params={"import-handler": "DICOM-zip", "PROJECT_ID": "TARS"},
        files={"file": ("study.tar.gz", buf.getvalue(), "application/octet-stream")},
    )
    [uri] = _uris(reply)
    assert uri.startswith("/data/prearchive/projects/TARS/")
    assert xnat_emulator.wait_idle(10)
    [experiment] = _experiments(client, "TARS")
    assert experiment["label"] == "SESS001"


def test_dest_archive_is_synchronous_and_overwrite_rules_apply(
    client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "ARC", code=0)
    root = tmp_path / "a"
    study = generate_study(root, project="ARC", series=2, instances_per_series=2)
    body = _zip(study, root)
    headers = {"Content-Type": "application/zip"}
    dest = {"dest": "/archive/projects/ARC/subjects/SUBJ9/experiments/EXP9"}
    assert _uris(client.post(IMPORT, params=dest, content=body, headers=headers)) == [
        "/data/archive/projects/ARC/subjects/SUBJ9/experiments/EXP9"
    ]
    [experiment] = _experiments(client, "ARC")
    assert experiment["label"] == "EXP9"
    conflict = client.post(IMPORT, params=dest, content=body, headers=headers)
    assert conflict.status_code == 409
    assert "<h3>Session already exists, retry with overwrite enabled</h3>" in conflict.text
    assert [r["status"] for r in _prearc(client, "ARC")] == ["CONFLICT"]
    # append: a study with a third series merges into the same experiment
    root3 = tmp_path / "b"
    more = generate_study(
        root3, project="ARC", series=3, instances_per_series=2, study_uid=study.study_uid
    )
    _uris(
        client.post(
            IMPORT,
            params={**dest, "overwrite": "append"},
            content=_zip(more, root3),
            headers=headers,
        )
    )
    scans = client.get(f"/data/experiments/{experiment['ID']}/scans").json()["ResultSet"]
    assert [s["ID"] for s in scans["Result"]] == ["1", "2", "3"]
    assert _prearc(client, "ARC") == []
    # delete: the uploaded scans replace the archived ones with the same ID
    root4 = tmp_path / "c"
    single = generate_study(root4, project="ARC", series=1, instances_per_series=1, seed=5)
    _uris(
        client.post(
            IMPORT,
            params={**dest, "overwrite": "delete"},
            content=_zip(single, root4),
            headers=headers,
        )
    )
    files = client.get(f"/data/experiments/{experiment['ID']}/scans/1/resources/DICOM/files")
    assert len(files.json()["ResultSet"]["Result"]) == 1


def test_ignore_unparsable(client: httpx.Client, tmp_path: Path) -> None:
    coded_project(client, "BAD", code=0)
    root = tmp_path / "s"
    study = generate_study(root, project="BAD", series=1, instances_per_series=4)
    body = _zip(study, root, extra={"notes/readme.txt": b"not dicom at all\n" * 20})
    headers = {"Content-Type": "application/zip"}
    refused = client.post(IMPORT, content=body, headers=headers)
    assert refused.status_code == 400 and "readme.txt" in refused.text
    [row] = _prearc(client, "BAD")  # the entries before the bad one stay
    files = client.get(f"/data{row['url']}/scans/1/resources/DICOM/files").json()
    assert len(files["ResultSet"]["Result"]) == 2
    accepted = client.post(
        IMPORT, params={"Ignore-Unparsable": "true"}, content=body, headers=headers
    )
    assert _uris(accepted) == ["/data" + row["url"]]
    files = client.get(f"/data{row['url']}/scans/1/resources/DICOM/files").json()
    assert len(files["ResultSet"]["Result"]) == 4


def test_request_format_errors(client: httpx.Client, tmp_path: Path) -> None:
    study = generate_study(tmp_path / "s", series=1, instances_per_series=1)
    data = study.files[0].read_bytes()
    unknown = client.post(IMPORT, params={"import-handler": "nope"}, content=data)
    assert unknown.status_code == 404
    assert "<h3>Unknown importer implementation specified: nope</h3>" in unknown.text
    two = client.post(IMPORT, files=[("a", ("a.zip", b"1")), ("b", ("b.zip", b"2"))])
    assert two.status_code == 400 and "limited to one uploaded resource" in two.text
    none = client.post(IMPORT, params={"import-handler": "DICOM-zip"})
    assert none.status_code == 400 and "Unable to identify upload format." in none.text
    octet = client.post(IMPORT, content=data, headers={"Content-Type": "application/octet-stream"})
    assert octet.status_code == 400 and "Unsupported format" in octet.text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("../../escape.dcm", data)
    slip = _post_zip(client, buf.getvalue())
    assert slip.status_code == 400 and "outside the upload folder" in slip.text
    broken = _post_zip(client, b"PK\x03\x04junk")
    assert broken.status_code == 400
    not_dicom = _post_dicom(client, b"hello")
    assert not_dicom.status_code == 400


def test_unknown_project_goes_to_unassigned_which_only_admins_see(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    study = generate_study(tmp_path, project="NOSUCH", series=1, instances_per_series=2)
    for path in study.files:
        [uri] = _uris(_post_dicom(client, path.read_bytes()))
        assert uri.startswith("/data/prearchive/projects/Unassigned/")
    assert xnat_emulator.wait_idle(10)
    [row] = _prearc(client, "Unassigned")
    assert row["status"] == "READY" and row["project"] == "Unassigned" and row["autoarchive"] == ""
    xnat_emulator.add_user("joe", "joe")
    with httpx.Client(base_url=xnat_emulator.url, auth=("joe", "joe")) as joe:
        assert joe.get("/data/prearchive").json()["ResultSet"]["Result"] == []
        assert joe.get("/data/prearchive/projects/Unassigned").status_code == 403
        assert joe.get("/data/prearchive", params={"tag": study.study_uid}).status_code == 403


def test_si_importer_archives_synchronously(client: httpx.Client, tmp_path: Path) -> None:
    coded_project(client, "SIP", code=4)
    root = tmp_path / "s"
    study = generate_study(root, project="SIP", series=1, instances_per_series=2)
    reply = _post_zip(
        client,
        _zip(study, root),
        {"import-handler": "SI", "project": "SIP", "subject": "S7", "session": "E7"},
    )
    assert _uris(reply) == ["/data/archive/projects/SIP/subjects/S7/experiments/E7"]
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("x.txt", b"nothing")
    nothing = _post_zip(client, empty.getvalue(), {"import-handler": "SI"})
    assert nothing.status_code == 400 and "parsable files" in nothing.text


def test_commit_on_an_auto_archive_project_returns_archive_uris(
    client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "COM", code=4)
    root = tmp_path / "s"
    study = generate_study(root, project="COM", series=1, instances_per_series=2)
    reply = _post_zip(client, _zip(study, root), {"action": "commit"})
    assert _uris(reply) == ["/data/archive/projects/COM/subjects/SUBJ001/experiments/SESS001"]


def test_dest_prearchive_still_auto_archives_on_code_4(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "DP", code=4)
    root = tmp_path / "s"
    study = generate_study(root, project="DP", series=1, instances_per_series=2)
    reply = _post_zip(client, _zip(study, root), {"dest": "/prearchive/projects/DP"})
    [uri] = _uris(reply)
    assert uri.startswith("/data/prearchive/projects/DP/")
    assert xnat_emulator.wait_idle(10)
    assert len(_experiments(client, "DP")) == 1


def test_direct_archive(xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path) -> None:
    coded_project(client, "DA", code=0)
    root = tmp_path / "s"
    study = generate_study(root, project="DA", series=2, instances_per_series=2)
    xnat_emulator.set_timing(rebuild_quiet_seconds=30)
    reply = _post_zip(client, _zip(study, root), {"Direct-Archive": "true"})
    [uri] = _uris(reply)
    assert uri == f"/xapi/direct-archive/DA/{study.study_uid}/SESS001"
    assert _prearc(client, "DA") == []  # holding area, not the prearchive
    held = client.get(uri)
    assert held.status_code == 200 and held.json()["status"] == "RECEIVING"
    assert [s["name"] for s in client.post("/xapi/direct-archive", json={}).json()] == ["SESS001"]
    xnat_emulator.set_timing(rebuild_quiet_seconds=0.3)
    assert xnat_emulator.wait_idle(10)
    assert [e["label"] for e in _experiments(client, "DA")] == ["SESS001"]
    assert client.get(uri).status_code == 404
    # the same study again conflicts and falls back into the prearchive as CONFLICT
    xnat_emulator.set_timing(rebuild_quiet_seconds=30)
    again = _post_zip(client, _zip(study, root), {"Direct-Archive": "true"})
    assert _uris(again) == [uri]
    assert client.post(uri).status_code == 200  # archive now
    [row] = _prearc(client, "DA")
    assert row["status"] == "CONFLICT"
    logs = client.get(f"/data{row['url']}/logs").json()["ResultSet"]["Result"]
    assert any("Attempt to direct-archive failed" in entry["entry"] for entry in logs)


def test_store_received_file_groups_replaces_and_rejects(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "SCP", code=0)
    state = xnat_emulator.state
    assert state is not None
    study = generate_study(tmp_path / "s", project="SCP", series=2, instances_per_series=5)
    copies = []
    for index, path in enumerate(study.files):
        copy = tmp_path / f"in{index}.dcm"
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    keys = []
    lock = threading.Lock()

    def send(chunk: list[Path]) -> None:
        for path in chunk:
            key = store_received_file(state, path, calling_ae="SENDER")
            with lock:
                keys.append(key)

    threads = [threading.Thread(target=send, args=(copies[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({(k.project, k.timestamp, k.folder) for k in keys}) == 1
    assert not any(p.exists() for p in copies)  # moved into the prearchive
    again = tmp_path / "again.dcm"
    again.write_bytes(study.files[0].read_bytes())
    store_received_file(state, again)
    key = keys[0]
    assert key.project == "SCP" and key.uri.startswith("/data/prearchive/projects/SCP/")
    counts = state.store.one(
        "SELECT COUNT(*) AS n FROM prearc_files WHERE session_id=?", (key.session_id,)
    )
    assert counts is not None and counts["n"] == 10
    junk = write_non_dicom(tmp_path / "junk.dcm")
    with pytest.raises(NotDicomError, match=r"junk\.dcm"):
        store_received_file(state, junk)
    assert junk.exists()
    labelled = tmp_path / "other.dcm"
    labelled.write_bytes(study.files[1].read_bytes())
    other = store_received_file(
        state, labelled, overrides=ReceiveOptions(project="SCP", session="OVERRIDE", login="admin")
    )
    assert other.session_id == key.session_id  # grouped by study, not by label
    assert xnat_emulator.wait_idle(10)
    logs = client.get(key.uri + "/logs").json()["ResultSet"]["Result"]
    assert "from AE SENDER" in logs[0]["entry"]


def test_c_store_round_trip_reaches_the_archive(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "CST", code=4)
    study = generate_study(tmp_path, project="CST", series=2, instances_per_series=3)
    ae = AE(ae_title="TESTSCU")
    for info in study.series.values():
        ae.add_requested_context(info.sop_class_uid, study.transfer_syntax)
    assoc = ae.associate("127.0.0.1", xnat_emulator.dicom_port, ae_title="XNAT")
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(dcmread(p)).Status for p in study.files]
    finally:
        assoc.release()
    assert statuses == [0] * len(study.files)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _experiments(client, "CST"):
        time.sleep(0.1)
    [experiment] = _experiments(client, "CST")
    assert experiment["label"] == "SESS001"
    history = xnat_emulator.state.store.query(  # type: ignore[union-attr]
        "SELECT action FROM history WHERE item_id=?", (experiment["ID"],)
    )
    assert [h["action"] for h in history] == ["archived"]


def test_fixed_prearchive_slot_and_routing_params(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "SLOT", code=0)
    study = generate_study(tmp_path, project=None, routing="none", series=1, instances_per_series=2)
    slot = "/prearchive/projects/SLOT/20240101_000000000/MYSESSION"
    for path in study.files:
        reply = _post_dicom(
            client,
            path.read_bytes(),
            {"import-handler": "gradual-DICOM", "dest": slot, "SUBJECT_ID": "SUBJX"},
        )
        assert _uris(reply) == ["/data" + slot]
    assert xnat_emulator.wait_idle(10)
    [row] = _prearc(client, "SLOT")
    assert (row["name"], row["subject"], row["status"]) == ("MYSESSION", "SUBJX", "READY")
    unknown = _post_dicom(client, study.files[0].read_bytes(), {"PROJECT_ID": "NOPE"})
    assert unknown.status_code == 404
    xnat_emulator.add_user("guest1", "pw")
    with httpx.Client(base_url=xnat_emulator.url, auth=("guest1", "pw")) as other:
        assert client.put("/data/projects/SLOT/accessibility/protected").status_code == 200
        refused = _post_dicom(other, study.files[0].read_bytes(), {"project": "SLOT"})
        assert refused.status_code == 403


def test_archived_dicom_catalogs_carry_sop_instance_uids(
    client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "UIDS", code=0)
    root = tmp_path / "u"
    study = generate_study(root, project="UIDS", series=2, instances_per_series=3)
    dest = {"dest": "/archive/projects/UIDS/subjects/S1/experiments/E1"}
    reply = _post_zip(client, _zip(study, root), dest)
    assert reply.status_code == 200
    [experiment] = _experiments(client, "UIDS")
    found: set[str] = set()
    for scan in client.get(f"/data/experiments/{experiment['ID']}/scans").json()["ResultSet"][
        "Result"
    ]:
        catalog = client.get(
            f"/data/experiments/{experiment['ID']}/scans/{scan['ID']}/resources/DICOM"
        ).text
        assert 'xsi:type="cat:dcmEntry"' in catalog
        found.update(re.findall(r'UID="([^"]+)"', catalog))
    assert found == set(study.all_sop_uids)


def test_sweeper_leaves_a_session_alone_while_its_zip_import_is_still_running(
    xnat_emulator_factory: Any, tmp_path: Path
) -> None:
    """A slow entry mid-zip must not let the rebuilder archive the half-received session.

    A real XNAT importer builds its own sessions in the request; the emulator once archived one
    under the running import (quiet interval elapsed on a loaded machine) and answered 500.
    """
    emulator = xnat_emulator_factory(
        timing=Timing(rebuild_quiet_seconds=0.02, sweep_interval_seconds=0.01)
    )
    root = tmp_path / "s"
    study = generate_study(root, project="SLOW", series=1, instances_per_series=4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index, path in enumerate(study.files):
            archive.write(path, path.relative_to(root).as_posix())
            if index == 1:  # deflates to ~100 KB, takes a while to unpack
                archive.writestr("padding.bin", bytes(96 * 1024 * 1024))
    with httpx.Client(base_url=emulator.url, auth=("admin", "admin"), timeout=60) as client:
        coded_project(client, "SLOW", code=4)
        reply = _post_zip(
            client,
            buf.getvalue(),
            {"dest": "/prearchive/projects/SLOW", "Ignore-Unparsable": "true"},
        )
        assert reply.status_code == 200, reply.text
        assert emulator.wait_idle(20)
        [experiment] = _experiments(client, "SLOW")
        files = client.get(
            f"/data/experiments/{experiment['ID']}/scans/ALL/files", params={"format": "json"}
        ).json()["ResultSet"]["Result"]
        assert len(files) == 4
