"""DICOM uploads through the import service: gradual-DICOM, DICOM-zip batches, zip sources."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.models.transfer import UploadProgress
from xnat_prefect.services.uploads import UploadService
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study, write_non_dicom

IMPORT = "POST /data/services/import"


def _study(root: Path, project: str = "P1", seed: int = 0, **kw: Any) -> StudyManifest:
    kw.setdefault("series", 2)
    kw.setdefault("instances_per_series", 4)
    return generate_study(root, project=project, seed=seed, **kw)


def _archived(rest: Any, emulator: XNATEmulator, project: str, label: str) -> dict[str, str]:
    assert emulator.wait_idle(15)
    found = [e for e in rest.experiments(project) if e["label"] == label]
    assert len(found) == 1, rest.experiments(project)
    return found[0]


def test_gradual_direct_archive_sends_each_file_and_skips_non_dicom(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    # One session needs the 8 requests to arrive within XNAT's quiet interval; the fast test
    # timing (0.3 s) split it in two on a loaded CI machine, as a real XNAT would.
    xnat_emulator.set_timing(rebuild_quiet_seconds=2.0)
    rest.project("P1")
    study = _study(tmp_path / "src")
    write_non_dicom(tmp_path / "src" / "notes.txt")
    write_non_dicom(tmp_path / "src" / "S001" / "README")
    seen: list[UploadProgress] = []
    summary = uploads.upload_dicom_gradual(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", workers=3, progress_callback=seen.append
    )
    assert summary.success and summary.errors == []
    assert (summary.total_files, summary.uploaded, summary.skipped) == (10, 8, 2)
    assert summary.bytes_sent == study.total_bytes
    assert len(summary.session_uris) == 1 and summary.session_uris[0].startswith(
        "/xapi/direct-archive/P1/"
    )
    metrics = xnat_emulator.metrics()
    assert metrics["requests"][IMPORT] == 8
    assert metrics["bytes_in"][IMPORT] == study.total_bytes  # raw bodies, nothing else
    assert seen[-1].phase == "done" and seen[-1].current == seen[-1].total == 8
    assert all(isinstance(p, UploadProgress) for p in seen)
    experiment = _archived(rest, xnat_emulator, "P1", "SESS1")
    digests = {f["digest"] for f in rest.session_files(experiment["ID"])}
    assert digests == {rest.md5(p) for p in study.files}


def test_gradual_to_prearchive_stays_there_on_a_manual_project(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("MAN", code=0)
    _study(tmp_path / "src", project="MAN")
    summary = uploads.upload_dicom_gradual(
        tmp_path / "src", "MAN", "SUBJ1", "SESS1", direct_archive=False
    )
    assert summary.success and summary.uploaded == 8
    assert summary.session_uris[0].startswith("/data/prearchive/projects/MAN/")
    assert xnat_emulator.wait_idle(15)
    [row] = rest.prearchive("MAN")
    assert row["status"] == "READY" and row["name"] == "SESS1"
    assert rest.experiments("MAN") == []


def test_prearchive_destination_is_auto_archived_on_an_auto_archive_project(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    """The documented caveat: the project's prearchive_code wins over dest=/prearchive."""
    rest.project("AUTO", code=4)
    _study(tmp_path / "src", project="AUTO")
    summary = uploads.upload_dicom_gradual(
        tmp_path / "src", "AUTO", "SUBJ1", "SESS1", direct_archive=False
    )
    assert summary.success
    _archived(rest, xnat_emulator, "AUTO", "SESS1")
    assert rest.prearchive("AUTO") == []


def test_gradual_from_a_zip_extracts_safely_and_the_ledger_skips_a_rerun(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = _study(tmp_path / "src")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in study.files:
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
        zf.writestr("notes.txt", "not dicom")
    first = uploads.upload_dicom_gradual(archive, "P1", "SUBJ1", "SESS1")
    assert (first.uploaded, first.skipped, first.failed) == (8, 1, 0)
    xnat_emulator.reset_metrics()
    again = uploads.upload_dicom_gradual(archive, "P1", "SUBJ1", "SESS1")
    assert (again.uploaded, again.skipped, again.failed) == (0, 9, 0)
    assert xnat_emulator.metrics()["bytes_in"].get(IMPORT, 0) == 0


def test_gradual_files_uploads_only_the_given_files_and_names_the_unparsable_one(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = _study(tmp_path / "src")
    bogus = write_non_dicom(tmp_path / "bogus.dcm")
    chosen = [*study.files[:3], bogus]
    summary = uploads.upload_dicom_gradual_files(
        files=chosen, project="P1", subject="SUBJ1", session="SESS1", workers=2
    )
    assert (summary.uploaded, summary.failed) == (3, 1)
    [(path, reason)] = summary.errors
    assert path == str(bogus.resolve()) and "HTTP 400" in reason and "parse" in reason
    # a permanent 400 is not retried: 4 requests, one per file
    assert xnat_emulator.metrics()["requests"][IMPORT] == 4
    with pytest.raises(InvalidInputError, match="not files"):
        uploads.upload_dicom_gradual_files(
            files=[tmp_path / "missing.dcm"], project="P1", subject="S", session="E"
        )


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_parallel_archives_one_request_per_worker(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path, fmt: str
) -> None:
    rest.project("P1")
    study = _study(tmp_path / "src", series=3, instances_per_series=5)
    write_non_dicom(tmp_path / "src" / "notes.txt")
    summary = uploads.upload_dicom_parallel(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", upload_workers=3, archive_format=fmt
    )
    assert summary.success and (summary.uploaded, summary.skipped) == (15, 1)
    metrics = xnat_emulator.metrics()
    assert metrics["requests"][IMPORT] == 3
    overhead = metrics["bytes_in"][IMPORT] - study.total_bytes
    assert 0 < overhead < 15 * 2048  # archive headers only: no re-encoding, no compression
    experiment = _archived(rest, xnat_emulator, "P1", "SESS1")
    assert rest.scans(experiment["ID"]) == ["1", "2", "3"]
    assert len(rest.session_files(experiment["ID"])) == 15


def test_upload_dicom_zips_batches_and_quarantine_goes_to_the_prearchive(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("MAN", code=0)
    _study(tmp_path / "src", project="MAN", series=2, instances_per_series=5)
    summary = uploads.upload_dicom(
        "MAN", "SUBJ1", "SESS1", tmp_path / "src", quarantine=True, batch_size=4, workers=2
    )
    assert summary.success and summary.uploaded == 10
    assert xnat_emulator.metrics()["requests"][IMPORT] == 3  # 4 + 4 + 2 files
    assert xnat_emulator.wait_idle(15)
    [row] = rest.prearchive("MAN")
    assert row["status"] == "READY" and rest.experiments("MAN") == []


def test_upload_dicom_sends_a_zip_source_as_it_is(
    xnat_emulator: XNATEmulator, rest: Any, uploads: UploadService, tmp_path: Path
) -> None:
    rest.project("P1")
    study = _study(tmp_path / "src")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in study.files:
            zf.write(path, path.name + f"-{path.parent.name}.dcm")
    summary = uploads.upload_dicom("P1", "SUBJ1", "SESS1", archive)
    assert summary.success and (summary.total_files, summary.uploaded) == (8, 8)
    metrics = xnat_emulator.metrics()
    assert metrics["requests"][IMPORT] == 1
    assert metrics["bytes_in"][IMPORT] == archive.stat().st_size
    experiment = _archived(rest, xnat_emulator, "P1", "SESS1")
    assert len(rest.session_files(experiment["ID"])) == 8


@pytest.mark.parametrize(
    ("mode", "expected_scans", "conflict"),
    [
        ("none", ["1", "2"], True),
        ("append", ["1", "2", "3"], False),
        ("delete", ["1", "2", "3"], False),
    ],
)
def test_overwrite_modes_when_the_session_is_already_archived(
    xnat_emulator: XNATEmulator,
    rest: Any,
    uploads: UploadService,
    tmp_path: Path,
    mode: str,
    expected_scans: list[str],
    conflict: bool,
) -> None:
    rest.project("P1")
    _study(tmp_path / "src", series=3, instances_per_series=3)
    first = tmp_path / "first"
    first.mkdir()
    (tmp_path / "src" / "S001").rename(first / "S001")
    (tmp_path / "src" / "S002").rename(first / "S002")
    assert uploads.upload_dicom_parallel(first, "P1", "SUBJ1", "SESS1").success
    experiment = _archived(rest, xnat_emulator, "P1", "SESS1")
    summary = uploads.upload_dicom_parallel(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", overwrite=mode
    )
    assert summary.success and summary.uploaded == 3
    assert xnat_emulator.wait_idle(15)
    assert rest.scans(experiment["ID"]) == expected_scans
    statuses = [r["status"] for r in rest.prearchive("P1")]
    assert statuses == (["CONFLICT"] if conflict else [])


def test_bad_arguments_raise_typed_errors(uploads: UploadService, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="archive_format"):
        uploads.upload_dicom_parallel(tmp_path, "P1", "S", "E", archive_format="rar")
    with pytest.raises(InvalidInputError, match="overwrite"):
        uploads.upload_dicom_parallel(tmp_path, "P1", "S", "E", overwrite="maybe")
    with pytest.raises(InvalidInputError, match="not a directory"):
        uploads.upload_dicom_gradual(tmp_path / "nope", "P1", "S", "E")
    with pytest.raises(InvalidInputError, match="session"):
        uploads.upload_dicom(project="P1", subject="S", session="a/b", source_path=tmp_path)
    with pytest.raises(InvalidInputError, match="workers"):
        uploads.upload_dicom_gradual(tmp_path, "P1", "S", "E", workers=0)


def test_upload_as_another_user_uses_that_users_clients(
    xnat_emulator: XNATEmulator, rest: Any, client: XNATClient, tmp_path: Path
) -> None:
    """Eve may read P1 but not upload: a permanent 403, not retried, and named per file."""
    rest.project("P1")
    xnat_emulator.add_user("eve", "pw")
    client.put("/data/projects/P1/users/Collaborators/eve")
    _study(tmp_path / "src")
    service = UploadService(client, ledger=False, backoff_base=0.01)
    summary = service.upload_dicom_parallel(
        tmp_path / "src", "P1", "SUBJ1", "SESS1", username="eve", password="pw", upload_workers=1
    )
    assert not summary.success and summary.failed == 8
    assert {path for path, _ in summary.errors} == {
        str(p) for p in sorted(tmp_path.glob("src/*/*"))
    }
    assert all("HTTP 403" in reason for _, reason in summary.errors)
    assert xnat_emulator.metrics()["requests"][IMPORT] == 1  # one batch, refused, not retried
    with pytest.raises(InvalidInputError, match="both username and password"):
        service.upload_dicom_parallel(tmp_path / "src", "P1", "S", "E", username="eve")
