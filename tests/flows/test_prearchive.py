"""``archive_prearchive_sessions``: READY archived (relabelled), others untouched or reported."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.flows import LabelRule, archive_prearchive_sessions
from xnat_prefect.flows.prearchive import classify_sessions
from xnat_prefect.models.prearchive import PrearchiveSession


def _zip_of(files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, f"{path.parent.name}/{path.name}")
    return buffer.getvalue()


def _to_prearchive(lab: Any, name: str, subject: str, session: str, seed: int) -> dict[str, str]:
    """A study imported into P1's prearchive (DICOM-zip with dest: built READY at once)."""
    _, manifest = lab.study(name, subject=subject, session=session, seed=seed, series=1)
    reply = lab.rest.post(
        "/data/services/import",
        params={
            "import-handler": "DICOM-zip",
            "project": "P1",
            "subject": subject,
            "session": session,
            "dest": "/prearchive/projects/P1",
        },
        content=_zip_of(manifest.files),
        headers={"Content-Type": "application/zip"},
    )
    assert reply.status_code == 200, reply.text
    rows: list[dict[str, str]] = [r for r in lab.prearchive("P1") if r["name"] == session]
    assert len(rows) == 1
    return rows[0]


def _set_status(lab: Any, row: dict[str, str], status: str) -> None:
    reply = lab.rest.post(f"/data{row['url']}", params={"action": "set-status", "status": status})
    assert reply.status_code == 200, reply.text


def test_ready_archived_receiving_untouched_conflict_and_error_reported(
    creds: XNATCredentials, lab: Any
) -> None:
    lab.project("P1", code=0)
    lab.emulator.set_timing(rebuild_quiet_seconds=3600)  # a RECEIVING session stays RECEIVING
    _to_prearchive(lab, "a", "sub-01", "sub-01_MR1", seed=1)
    receiving = _to_prearchive(lab, "b", "sub-02", "sub-02_MR1", seed=2)
    conflict = _to_prearchive(lab, "c", "sub-03", "sub-03_MR1", seed=3)
    error = _to_prearchive(lab, "d", "sub-04", "sub-04_MR1", seed=4)
    _set_status(lab, receiving, "RECEIVING")
    _set_status(lab, conflict, "CONFLICT")
    _set_status(lab, error, "ERROR")
    report = archive_prearchive_sessions(
        creds,
        "P1",
        min_age_minutes=0,
        rules=[LabelRule(field="subject", pattern=r"sub-(\d+)", replacement=r"SUBJ\1")],
        label_map={"sub-01_MR1": "SUBJ01_MR1"},
    )
    assert [(i.target_subject, i.target_label) for i in report.archived] == [
        ("SUBJ01", "SUBJ01_MR1")
    ]
    archived = lab.experiments("P1")
    assert [e["label"] for e in archived] == ["SUBJ01_MR1"]
    assert report.archived[0].experiment_id == archived[0]["ID"]
    assert [i.folder for i in report.conflicts] == [conflict["folderName"]]
    assert [i.folder for i in report.errors] == [error["folderName"]]
    assert [(i.folder, i.status) for i in report.skipped] == [
        (receiving["folderName"], "RECEIVING")
    ]
    assert report.success and not report.failed
    left = {r["name"]: r["status"] for r in lab.prearchive("P1")}
    assert left == {"sub-02_MR1": "RECEIVING", "sub-03_MR1": "CONFLICT", "sub-04_MR1": "ERROR"}


def test_classify_keeps_young_and_busy_sessions_out() -> None:
    now = datetime(2024, 1, 31, 12, 0, 0)

    def row(folder: str, status: str, minutes_ago: float) -> PrearchiveSession:
        when = (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")
        return PrearchiveSession.model_validate(
            {
                "project": "P1",
                "timestamp": "20240131_110000000",
                "folderName": folder,
                "name": folder,
                "subject": "sub-9",
                "status": status,
                "lastmod": when,
            }
        )

    todo, report = classify_sessions(
        [row("old", "READY", 30), row("young", "READY", 2), row("busy", "BUILDING", 60)],
        min_age_minutes=10,
        subject_map={"sub-9": "S9"},
        label_map={},
        rules=[],
        now=now,
    )
    assert [(i.folder, i.target_subject) for i in todo] == [("old", "S9")]
    assert {i.folder: i.message for i in report.skipped} == {
        "young": "changed 2.0 min ago (min_age_minutes=10)",
        "busy": "still BUILDING",
    }
