"""Site and project anonymization applied on receipt (XNAT quirk 17), over real sockets."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.routes import _anon
from xnat_prefect.testing.synthetic import generate_study

IMPORT = "/data/services/import"
SITE_SCRIPT = """// emulator test script
version "6.1"
(0010,0010) := "ANON^PATIENT"
-(0010,0030)
project != "Unassigned" ? (0008,1030) := project
(0010,0020) := session
(0008,0080) := hashUID[(0020,000D)]
"""


def _send(client: httpx.Client, files: list[Path]) -> None:
    for path in files:
        reply = client.post(
            IMPORT, content=path.read_bytes(), headers={"Content-Type": "application/dicom"}
        )
        assert reply.status_code == 200, reply.text


def _archived(client: httpx.Client, project: str) -> dict[str, bytes]:
    """The archived DICOM files of the project's only session, by SOP Instance UID."""
    [experiment] = client.get(f"/data/projects/{project}/experiments").json()["ResultSet"]["Result"]
    listing = client.get(f"/data/experiments/{experiment['ID']}/scans/ALL/files").json()
    found = {}
    for row in listing["ResultSet"]["Result"]:
        uri = row["URI"] if row["URI"].startswith("/data/") else "/data" + row["URI"]
        body = client.get(uri).content
        assert hashlib.md5(body).hexdigest() == row["digest"]  # the catalog knows the new bytes
        found[str(dcmread(io.BytesIO(body)).SOPInstanceUID)] = body
    return found


def _enable_site_script(client: httpx.Client, script: str) -> None:
    headers = {"content-type": "text/plain"}
    assert client.put("/xapi/anonymize/site", content=script, headers=headers).status_code == 200
    enabled = client.put("/xapi/anonymize/site/enabled", params={"enable": "true"})
    assert enabled.status_code == 200


def test_site_script_rewrites_headers_and_keeps_pixels(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    assert client.put("/data/projects/ANON").status_code == 200
    _enable_site_script(client, SITE_SCRIPT)
    study = generate_study(tmp_path, project="ANON", series=1, instances_per_series=3)
    uploaded = {str(dcmread(p).SOPInstanceUID): p.read_bytes() for p in study.files}
    _send(client, study.files)
    assert xnat_emulator.wait_idle(15)
    archived = _archived(client, "ANON")
    assert set(archived) == set(uploaded)  # SOP Instance UIDs unchanged
    for uid, body in archived.items():
        before, after = dcmread(io.BytesIO(uploaded[uid])), dcmread(io.BytesIO(body))
        assert hashlib.md5(body).hexdigest() != hashlib.md5(uploaded[uid]).hexdigest()
        assert after.PixelData == before.PixelData
        assert str(after.PatientName) == "ANON^PATIENT"
        assert "PatientBirthDate" in before and "PatientBirthDate" not in after
        assert after.StudyDescription == "ANON"  # the project variable, condition true
        assert after.PatientID == "SESS001"  # the session label
        assert after.get("InstitutionName") == before.get("InstitutionName")  # unsupported line
        assert after.SeriesInstanceUID == before.SeriesInstanceUID


def test_project_script_runs_and_unsupported_lines_are_logged(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    assert client.put("/data/projects/PANON").status_code == 200
    assert client.put("/data/projects/PANON/prearchive_code/0").status_code == 200
    script = '(0008,1030) := "PROJECT SCRIPT"\n(0010,0010) := (0010,0020)\nalterPixels["x"]\n'
    assert client.put("/xapi/anonymize/projects/PANON", content=script).status_code == 200
    study = generate_study(tmp_path, project="PANON", series=1, instances_per_series=2)
    _send(client, study.files)
    assert xnat_emulator.wait_idle(15)
    [row] = client.get("/data/prearchive/projects/PANON").json()["ResultSet"]["Result"]
    logs = client.get(f"/data{row['url']}/logs").text
    assert "not supported by the emulator: alterPixels" in logs
    scans = client.get(f"/data{row['url']}/scans/1/resources/DICOM/files").json()
    first = scans["ResultSet"]["Result"][0]
    header = dcmread(io.BytesIO(client.get(first["URI"]).content))
    assert header.StudyDescription == "PROJECT SCRIPT"
    assert str(header.PatientName) == str(header.PatientID)  # copied from another element


def test_prevent_anon_skips_the_project_script(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    assert client.put("/data/projects/KEEP").status_code == 200
    script = '(0008,1030) := "PROJECT SCRIPT"\n'
    assert client.put("/xapi/anonymize/projects/KEEP", content=script).status_code == 200
    study = generate_study(tmp_path, project="KEEP", series=1, instances_per_series=1)
    reply = client.post(
        IMPORT,
        params={"prevent_anon": "true"},
        content=study.files[0].read_bytes(),
        headers={"Content-Type": "application/dicom"},
    )
    assert reply.status_code == 200
    assert xnat_emulator.wait_idle(15)
    [body] = _archived(client, "KEEP").values()
    assert body == study.files[0].read_bytes()


def test_script_subset_parser() -> None:
    statements, unsupported = _anon.parse(SITE_SCRIPT)
    assert [s.op for s in statements] == ["set", "delete", "set", "set"]
    assert unsupported == ["(0008,0080) := hashUID[(0020,000D)]"]
    ds = Dataset()
    ds.PatientName = "X"
    ds.PatientBirthDate = "19800101"
    problems = _anon.apply(
        ds, statements, {"project": "Unassigned", "subject": "S", "session": "E"}
    )
    assert problems == [] and str(ds.PatientName) == "ANON^PATIENT"
    assert "PatientBirthDate" not in ds and "StudyDescription" not in ds  # condition false
    assert _anon.parse('(0002,0010) := "1.2"\n-(0002,0010)')[0] == []  # file meta: refused
