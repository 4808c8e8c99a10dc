"""The emulator's archive service ``POST /data/services/archive``: 200/303/404/409/queued."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests._shared import small_study
from tests.testing._support import coded_project, import_zip
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

ARCHIVE = "/data/services/archive"


def _upload(
    xnat_emulator: XNATEmulator,
    client: httpx.Client,
    tmp_path: Path,
    project: str | None,
    *,
    session: str = "SESS001",
    subject: str = "SUBJ001",
    seed: int = 0,
) -> str:
    """Upload a study routed to ``project`` (None: Unassigned) and return its READY URL."""
    root = tmp_path / f"{session}-{seed}"
    study = small_study(root, project=project, subject=subject, session=session, seed=seed)
    url = import_zip(xnat_emulator, client, study.files, root)
    assert (
        client.get(url, params={"format": "json"}).json()["ResultSet"]["Result"][0]["status"]
        == "READY"
    )
    return url.removeprefix("/data")


def test_single_session_is_archived_synchronously(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "AR", code=0)
    src = _upload(xnat_emulator, client, tmp_path, "AR")
    reply = client.post(ARCHIVE, data={"src": src})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/uri-list")
    assert reply.text == "/data/archive/projects/AR/subjects/SUBJ001/experiments/SESS001\r\n"
    rows = client.get("/data/projects/AR/experiments").json()["ResultSet"]["Result"]
    assert [r["label"] for r in rows] == ["SESS001"]
    assert client.get("/data" + src).status_code == 404
    gone = client.post(ARCHIVE, params={"src": src})
    assert gone.status_code == 404 and "not found" in gone.text
    history = xnat_emulator.state.store.query(  # type: ignore[union-attr]
        "SELECT action, login FROM history WHERE item_id=?", (rows[0]["ID"],)
    )
    assert [(h["action"], h["login"]) for h in history] == [("archived", "admin")]


def test_overrides_and_project_timestamp_folder_form(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "OV", code=0)
    src = _upload(xnat_emulator, client, tmp_path, "OV")
    _, _, _, project, timestamp, folder = src.split("/")
    reply = client.post(
        ARCHIVE,
        params={
            "project": project,
            "timestamp": timestamp,
            "folder": folder,
            "subject": "NEWSUBJ",
            "label": "NEWLABEL",
        },
    )
    assert reply.text == "/data/archive/projects/OV/subjects/NEWSUBJ/experiments/NEWLABEL\r\n"


def test_auto_archive_sessions_answer_303_unless_asked_not_to(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "RED", code=0)
    first = _upload(xnat_emulator, client, tmp_path, "RED", session="E1", seed=1)
    second = _upload(xnat_emulator, client, tmp_path, "RED", session="E2", seed=2)
    third = _upload(xnat_emulator, client, tmp_path, "RED", session="E3", seed=3)
    # the project becomes auto-archive after the sessions reached READY
    xnat_emulator.set_timing(archive_delay_seconds=60)
    assert client.put("/data/projects/RED/prearchive_code/4").status_code == 200
    redirected = client.post(ARCHIVE, params={"src": first}, follow_redirects=False)
    assert redirected.status_code == 303
    assert redirected.headers["location"] == (
        f"{xnat_emulator.url}/data/archive/projects/RED/subjects/SUBJ001/experiments/E1"
    )
    plain = client.post(ARCHIVE, params={"src": second, "auto-archive": "false"})
    assert plain.status_code == 200
    assert plain.text == "/data/archive/projects/RED/subjects/SUBJ001/experiments/E2\r\n"
    assert client.put("/data/projects/RED/prearchive_code/0").status_code == 200
    asked = client.post(ARCHIVE, params={"src": third, "redirect": "true"}, follow_redirects=False)
    assert asked.status_code == 303


def test_errors(xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path) -> None:
    coded_project(client, "ERR", code=0)
    assert client.post(ARCHIVE).status_code == 404
    assert "Unknown prearchive session." in client.post(ARCHIVE).text
    assert client.post(ARCHIVE, params={"src": "/archive/projects/ERR"}).status_code == 400
    unassigned = _upload(xnat_emulator, client, tmp_path, None)
    assert unassigned.startswith("/prearchive/projects/Unassigned/")
    refused = client.post(ARCHIVE, params={"src": unassigned})
    assert refused.status_code == 400
    routed = client.post(ARCHIVE, params={"src": unassigned, "dest": "/archive/projects/ERR"})
    assert routed.status_code == 200
    assert routed.text.startswith("/data/archive/projects/ERR/subjects/")
    xnat_emulator.add_user("stranger", "pw")
    mine = _upload(xnat_emulator, client, tmp_path, "ERR", session="MINE", seed=9)
    with httpx.Client(base_url=xnat_emulator.url, auth=("stranger", "pw")) as stranger:
        assert stranger.post(ARCHIVE, params={"src": mine}).status_code == 403


def test_conflict_marks_the_session_and_overwrite_resolves_it(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "CON", code=0)
    first = _upload(xnat_emulator, client, tmp_path, "CON", seed=1)
    assert client.post(ARCHIVE, params={"src": first}).status_code == 200
    second = _upload(xnat_emulator, client, tmp_path, "CON", seed=2)
    conflict = client.post(ARCHIVE, params={"src": second})
    assert conflict.status_code == 409
    assert "<h3>Session already exists, retry with overwrite enabled</h3>" in conflict.text
    row = client.get("/data" + second, params={"format": "json"}).json()["ResultSet"]["Result"][0]
    assert row["status"] == "CONFLICT"
    other_subject = client.post(
        ARCHIVE, params={"src": second, "overwrite": "append", "subject": "ELSEWHERE"}
    )
    assert other_subject.status_code == 409 and "subject" in other_subject.text
    # seed 2 reuses scan IDs 1 and 2 with other series UIDs: append refuses, delete replaces
    append = client.post(ARCHIVE, params={"src": second, "overwrite": "append"})
    assert append.status_code == 409 and "same ID and a different UID" in append.text
    replaced = client.post(ARCHIVE, params={"src": second, "overwrite": "delete"})
    assert replaced.status_code == 200
    [experiment] = client.get("/data/projects/CON/experiments").json()["ResultSet"]["Result"]
    scans = client.get(f"/data/experiments/{experiment['ID']}/scans").json()["ResultSet"]["Result"]
    assert len(scans) == 2
    state = xnat_emulator.state
    assert state is not None
    uids = {r["uid"] for r in state.store.query("SELECT uid FROM scans")}
    routed = generate_study(
        tmp_path / "check", project="CON", series=2, instances_per_series=1, seed=2
    )
    assert uids == {info.uid for info in routed.series.values()}


def test_multiple_sources_are_queued(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    coded_project(client, "MUL", code=0)
    one = _upload(xnat_emulator, client, tmp_path, "MUL", session="A1", seed=1)
    two = _upload(xnat_emulator, client, tmp_path, "MUL", session="A2", seed=2)
    xnat_emulator.set_timing(sweep_interval_seconds=5)  # keep the queue visible
    time.sleep(0.2)  # let the sweeper finish its current short wait
    reply = client.post(ARCHIVE, params=[("src", one), ("src", two)])
    assert reply.status_code == 200
    statuses = [r["status"] for r in reply.json()["ResultSet"]["Result"]]
    assert statuses == ["QUEUED_ARCHIVING", "QUEUED_ARCHIVING"]
    locked = client.post(ARCHIVE, params={"src": one})
    assert locked.status_code == 403
    assert xnat_emulator.wait_idle(10)
    labels = sorted(
        r["label"]
        for r in client.get("/data/projects/MUL/experiments").json()["ResultSet"]["Result"]
    )
    assert labels == ["A1", "A2"]


def test_unexpected_failure_leaves_the_session_in_error_with_its_files(
    xnat_emulator: XNATEmulator,
    client: httpx.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xnat_prefect.testing.routes import _archiving

    coded_project(client, "BRK", code=0)
    src = _upload(xnat_emulator, client, tmp_path, "BRK")
    real = _archiving._archive_scan
    calls = []

    def flaky(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first scan's files are already moved when this fails
            raise RuntimeError("disk on fire")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_archiving, "_archive_scan", flaky)
    reply = client.post(ARCHIVE, params={"src": src})
    assert reply.status_code == 500 and "disk on fire" in reply.text
    row = client.get("/data" + src, params={"format": "json"}).json()["ResultSet"]["Result"][0]
    assert row["status"] == "ERROR"
    assert "Archive failed" in client.get("/data" + src + "/logs/last").text
    assert client.get("/data/projects/BRK/experiments").json()["ResultSet"]["Result"] == []
    files = client.get("/data" + src + "/scans/1/resources/DICOM/files").json()["ResultSet"]
    for item in files["Result"]:
        assert client.get(item["URI"]).status_code == 200  # moved back into the prearchive
    monkeypatch.setattr(_archiving, "_archive_scan", real)
    assert client.post(ARCHIVE, params={"src": src}).status_code == 200
