"""The emulator driven by a real third-party client: xnatpy (PyPI ``xnat``).

xnatpy builds its object model from the server's XSDs at connect time and then parses every
listing and item document itself, so these tests check the emulator's wire shapes against a
client nobody here wrote: connect/disconnect, projects, subjects and MR sessions created
through xnatpy's classes, custom fields, resource upload and download, DICOM-zip import into
an auto-archive project and into a prearchive project (archived through xnatpy).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import xnat
from xnat.exceptions import XNATLoginFailedError
from xnat.prearchive import PrearchiveSession

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

XS = "{http://www.w3.org/2001/XMLSchema}"
REQUIRED_XNAT_TYPES = {
    "projectData",
    "subjectData",
    "demographicData",
    "experimentData",
    "subjectAssessorData",
    "imageSessionData",
    "mrSessionData",
    "petSessionData",
    "ctSessionData",
    "petmrSessionData",
    "otherDicomSessionData",
    "imageScanData",
    "mrScanData",
    "petScanData",
    "ctScanData",
    "otherDicomScanData",
    "abstractResource",
    "resource",
    "resourceCatalog",
    "fieldDefinitionGroup",
}


@contextmanager
def _connect(emulator: XNATEmulator, **options: Any) -> Iterator[Any]:
    session = xnat.connect(
        emulator.url, user="admin", password="admin", loglevel="WARNING", **options
    )
    try:
        yield session
    finally:
        session.disconnect()


def _make_project(session: Any, project_id: str, **fields: str) -> Any:
    session.put(f"/data/archive/projects/{project_id}", query=fields or None)
    session.projects.clearcache()
    return session.projects[project_id]


def _wait_for(check: Callable[[], Any], *, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _study_zip(
    tmp_path: Path, *, project: str, subject: str, session: str, seed: int
) -> tuple[Path, StudyManifest]:
    manifest = generate_study(
        tmp_path / f"study-{seed}",
        project=project,
        subject=subject,
        session=session,
        series=2,
        instances_per_series=3,
        rows=16,
        cols=16,
        seed=seed,
    )
    archive = tmp_path / f"study-{seed}.zip"
    root = tmp_path / f"study-{seed}"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in manifest.files:
            zipped.write(path, path.relative_to(root).as_posix())
    return archive, manifest


# ----------------------------------------------------------------------------- raw routes


def test_schema_routes_serve_xsds_for_the_emulated_types(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=10) as http:
        names = http.get("/xapi/schemas").json()
        assert {"xdat", "xnat"} <= set(names)
        for name in names:
            reply = http.get(f"/xapi/schemas/{name}")
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("application/xml")
            ET.fromstring(reply.content)  # well-formed
        root = ET.fromstring(http.get("/xapi/schemas/xnat").content)
        assert root.get("targetNamespace") == "http://nrg.wustl.edu/xnat"
        declared = {t.get("name") for t in root.findall(f"{XS}complexType")}
        assert declared >= REQUIRED_XNAT_TYPES
        missing = http.get("/xapi/schemas/nosuchschema")
        assert missing.status_code == 404
        assert "nosuchschema" in missing.text
    assert httpx.get(f"{xnat_emulator.url}/xapi/schemas").status_code == 401


def test_search_elements_and_access_listings(xnat_emulator: XNATEmulator) -> None:
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=10) as http:
        assert http.put("/data/projects/ACC1").status_code == 200
        elements = http.get("/data/search/elements", params={"format": "json"}).json()
        rows = {r["ELEMENT_NAME"]: r for r in elements["ResultSet"]["Result"]}
        assert {"xnat:projectData", "xnat:subjectData", "xnat:mrSessionData"} <= set(rows)
        assert rows["xnat:projectData"]["COUNT"] == "1"
        fields = http.get("/data/search/elements/xnat:subjectData", params={"format": "json"})
        field_ids = [r["FIELD_ID"] for r in fields.json()["ResultSet"]["Result"]]
        assert "SUBJECT_LABEL" in field_ids
        assert http.get("/data/search/elements/xnat:nothing").status_code == 404
        access = http.get("/xapi/access/projects").json()
        assert {"ID": "ACC1", "role": "owner"}.items() <= access[0].items()
        for path in ("/data/archive/scanners", "/data/archive/scan_types"):
            assert http.get(path, params={"format": "json"}).json()["ResultSet"]["Result"] == []


# ----------------------------------------------------------------------------- connect


def test_connect_builds_the_model_and_disconnect_ends_the_session(
    xnat_emulator: XNATEmulator,
) -> None:
    session = xnat.connect(xnat_emulator.url, user="admin", password="admin", loglevel="WARNING")
    try:
        assert session.logged_in_user == "admin"
        assert session.xnat_version.startswith("1.9")
        lookup = session.XNAT_CLASS_LOOKUP
        for name in REQUIRED_XNAT_TYPES:
            assert f"xnat:{name}" in lookup, name
        classes = session.classes
        assert issubclass(classes.MrSessionData, classes.ImageSessionData)
        assert issubclass(classes.PetmrSessionData, classes.PetSessionData)
        assert issubclass(classes.ResourceCatalog, classes.AbstractResource)
        assert issubclass(classes.CtScanData, classes.ImageScanData)
        jsession = session.jsession
        assert jsession
        cookies = {"JSESSIONID": jsession}
        assert httpx.get(f"{xnat_emulator.url}/data/auth", cookies=cookies).status_code == 200
    finally:
        session.disconnect()
    assert httpx.get(f"{xnat_emulator.url}/data/auth", cookies=cookies).status_code == 401


def test_connect_without_extension_types(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.reset_metrics()
    with _connect(xnat_emulator, extension_types=False) as session:
        assert "xnat:mrScanData" in session.XNAT_CLASS_LOOKUP
    requests = xnat_emulator.metrics()["requests"]
    assert "GET /xapi/schemas" not in requests  # only xdat and xnat are fetched, by name
    assert requests["GET /xapi/schemas/{schema:path}"] == 2


def test_wrong_password_is_a_login_error(xnat_emulator: XNATEmulator) -> None:
    with pytest.raises(XNATLoginFailedError):
        xnat.connect(xnat_emulator.url, user="admin", password="wrong", loglevel="CRITICAL")


def test_alias_token_login(xnat_emulator: XNATEmulator) -> None:
    token = httpx.get(
        f"{xnat_emulator.url}/data/services/tokens/issue", auth=("admin", "admin")
    ).json()
    session = xnat.connect(
        xnat_emulator.url, user=token["alias"], password=token["secret"], loglevel="WARNING"
    )
    try:
        assert session.logged_in_user == "admin"
        assert session.jsession  # the JSESSIONID cookie set by GET / with Basic credentials
    finally:
        session.disconnect()


# ----------------------------------------------------------------------------- object model


def test_project_created_by_put_is_listed_and_parsed(xnat_emulator: XNATEmulator) -> None:
    with _connect(xnat_emulator) as session:
        project = _make_project(
            session,
            "XPY1",
            name="xnatpy project",
            description="made through xnatpy",
            pi_firstname="Ada",
            pi_lastname="Lovelace",
            alias="XPYALIAS",
        )
        assert project.id == "XPY1"
        assert project.name == "xnatpy project"
        assert project.description == "made through xnatpy"
        assert project.pi.lastname == "Lovelace"
        assert project.aliases.listing == ["XPYALIAS"]
        assert session.projects.key_map["xnatpy project"] is project
        assert project.access_level == "owner"
        assert len(project.subjects) == 0


def test_create_subject_and_mr_session_through_the_object_model(
    xnat_emulator: XNATEmulator,
) -> None:
    with _connect(xnat_emulator) as session:
        project = _make_project(session, "XPY2")
        subject = session.classes.SubjectData(parent=project, label="SUBJ_A")
        assert subject.id.startswith("XNAT_S")
        assert subject.label == "SUBJ_A"
        assert subject.project == "XPY2"
        experiment = session.classes.MrSessionData(parent=subject, label="SESS_A")
        assert experiment.id.startswith("XNAT_E")
        assert experiment.label == "SESS_A"
        assert experiment.subject_id == subject.id

    with _connect(xnat_emulator) as session:  # a fresh client sees what the first one made
        project = session.projects["XPY2"]
        assert list(project.subjects.key_map) == ["SUBJ_A"]
        found = project.subjects["SUBJ_A"]
        assert isinstance(found, session.classes.SubjectData)
        assert list(found.experiments.key_map) == ["SESS_A"]
        listed = project.experiments["SESS_A"]
        assert isinstance(listed, session.classes.MrSessionData)
        assert listed.__xsi_type__ == "xnat:mrSessionData"
        assert session.subjects[found.id].label == "SUBJ_A"
        assert listed.id in session.experiments
        rows = project.subjects.tabulate(columns=("ID", "label"))
        assert [(r.ID, r.label) for r in rows] == [(found.id, "SUBJ_A")]


def test_set_fields_through_the_object_model(xnat_emulator: XNATEmulator) -> None:
    with _connect(xnat_emulator) as session:
        project = _make_project(session, "XPY3")
        subject = session.classes.SubjectData(parent=project, label="SUBJ_F")
        experiment = session.classes.MrSessionData(parent=subject, label="SESS_F")
        experiment.fields["mood"] = "calm"
        subject.fields["cohort"] = "pilot"
        experiment.note = "set through xnatpy"
        subject.demographics.gender = "female"

    with _connect(xnat_emulator) as session:
        subject = session.projects["XPY3"].subjects["SUBJ_F"]
        experiment = subject.experiments["SESS_F"]
        assert experiment.fields["mood"] == "calm"
        assert subject.fields["cohort"] == "pilot"
        assert experiment.note == "set through xnatpy"
        assert subject.demographics.gender == "female"


def test_resource_upload_and_download_roundtrip(
    xnat_emulator: XNATEmulator, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 40
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    with _connect(xnat_emulator) as session:
        project = _make_project(session, "XPY4")
        subject = session.classes.SubjectData(parent=project, label="SUBJ_R")
        experiment = session.classes.MrSessionData(parent=subject, label="SESS_R")
        resource = experiment.create_resource("NOTES")
        assert isinstance(resource, session.classes.AbstractResource)
        resource.upload(local, "data/upload.bin", verbose=False)
        resource.upload_data("hello from xnatpy\n", "readme.txt")
        assert set(resource.files.keys()) == {"data/upload.bin", "readme.txt"}
        assert set(experiment.resources.key_map) == {"NOTES"}

    with _connect(xnat_emulator) as session:
        experiment = session.projects["XPY4"].experiments["SESS_R"]
        resource = experiment.resources["NOTES"]
        assert resource.file_count == 2
        assert resource.file_size == len(payload) + len("hello from xnatpy\n")
        stored = resource.files["data/upload.bin"]
        assert stored.name == "upload.bin"
        target = tmp_path / "download.bin"
        stored.download(target, verbose=False)  # xnatpy checks the listed md5 digest
        assert target.read_bytes() == payload
        with resource.files["readme.txt"].open() as handle:
            assert handle.read() == b"hello from xnatpy\n"
        resource.upload_data(b"second version\n", "readme.txt", overwrite=True)
        with resource.files["readme.txt"].open() as handle:
            assert handle.read() == b"second version\n"
        resource.download_dir(tmp_path / "all", verbose=False)  # GET .../files?format=zip
        unpacked = tmp_path / "all" / "SESS_R" / "resources" / "NOTES" / "files"
        assert (unpacked / "data" / "upload.bin").read_bytes() == payload
        assert (unpacked / "readme.txt").read_bytes() == b"second version\n"


# ----------------------------------------------------------------------------- DICOM import


def test_dicom_zip_import_is_archived_on_an_auto_archive_project(
    xnat_emulator: XNATEmulator, tmp_path: Path
) -> None:
    archive, manifest = _study_zip(
        tmp_path, project="XPY5", subject="SUBJ_D", session="SESS_D", seed=5
    )
    with _connect(xnat_emulator) as session:
        project = _make_project(session, "XPY5")
        assert session.get("/data/projects/XPY5/prearchive_code").text == "4"
        result = session.services.import_(
            archive, project="XPY5", subject="SUBJ_D", experiment="SESS_D"
        )
        assert isinstance(result, PrearchiveSession)
        assert result.uri.startswith("/data/prearchive/projects/XPY5/")

        def archived() -> bool:
            project.experiments.clearcache()
            return "SESS_D" in project.experiments

        _wait_for(archived, what="SESS_D to be auto-archived")
        experiment = project.experiments["SESS_D"]
        assert isinstance(experiment, session.classes.MrSessionData)
        assert session.subjects[experiment.subject_id].label == "SUBJ_D"
        scans = experiment.scans
        assert len(scans) == len(manifest.series)
        for scan in scans.values():
            info = manifest.series[int(scan.id)]
            assert isinstance(scan, session.classes.MrScanData)
            assert scan.series_description == info.description
            assert scan.type == info.description
            assert len(scan.resources["DICOM"].files) == info.count
        dataset = scans[str(1)].read_dicom()
        assert dataset.SOPInstanceUID in manifest.sop_uids[1]
        assert {s.description for s in manifest.series.values()} <= set(
            t["type"] for t in session.scan_types
        )
        assert [s for s in session.prearchive.sessions() if s.project == "XPY5"] == []


def test_dicom_zip_waits_in_the_prearchive_and_is_archived_through_xnatpy(
    xnat_emulator: XNATEmulator, tmp_path: Path
) -> None:
    archive, manifest = _study_zip(
        tmp_path, project="XPY6", subject="SUBJ_P", session="SESS_P", seed=6
    )
    with _connect(xnat_emulator) as session:
        project = _make_project(session, "XPY6")
        session.put("/data/projects/XPY6/prearchive_code/0")
        assert session.get("/data/projects/XPY6/prearchive_code").text == "0"
        imported = session.services.import_(
            archive, project="XPY6", subject="SUBJ_P", experiment="SESS_P"
        )
        assert isinstance(imported, PrearchiveSession)

        def ready() -> list[Any]:
            return [
                s
                for s in session.prearchive.sessions()
                if s.project == "XPY6" and s.status == "READY"
            ]

        (entry,) = _wait_for(ready, what="the prearchive session to become READY")
        assert entry.uri == imported.uri
        assert entry.subject == "SUBJ_P"
        assert entry.label == "SESS_P"
        assert entry.tag == manifest.study_uid
        assert entry.timestamp.year >= 2024
        assert entry.uploaded is not None
        assert [s.uri for s in session.prearchive.sessions(project="XPY6")] == [entry.uri]
        assert session.prearchive.find(project="XPY6", subject="SUBJ_P")[0].uri == entry.uri
        descriptions = {s.series_description for s in entry.scans.values()}
        assert descriptions == {info.description for info in manifest.series.values()}
        first = next(s for s in entry.scans.values() if s.id == "1")
        header = first.read_dicom()
        assert isinstance(header, pydicom.Dataset)
        assert header.SeriesInstanceUID == manifest.series[1].uid
        assert "SESS_P" not in project.experiments

        experiment = entry.archive()
        assert isinstance(experiment, session.classes.MrSessionData)
        assert experiment.label == "SESS_P"
        project.experiments.clearcache()
        assert "SESS_P" in project.experiments
        assert len(project.experiments["SESS_P"].scans) == len(manifest.series)
        assert session.prearchive.sessions(project="XPY6") == []
