"""DICOM SCP receiver records of the emulator (/xapi/dicomscp)."""

from __future__ import annotations

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator

KEYS = {
    "id",
    "aeTitle",
    "port",
    "identifier",
    "fileNamer",
    "enabled",
    "customProcessing",
    "directArchive",
    "anonymizationEnabled",
    "whitelistEnabled",
    "whitelist",
    "routingExpressionsEnabled",
    "projectRoutingExpression",
    "subjectRoutingExpression",
    "sessionRoutingExpression",
    "label",
    "created",
    "timestamp",
    "disabled",
}


def test_default_receiver_is_the_live_scp(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        receivers = admin.get("/xapi/dicomscp").json()
        assert len(receivers) == 1
        default = receivers[0]
        assert set(default) == KEYS
        assert default["id"] == 1 and default["enabled"] is True
        assert default["aeTitle"] == xnat_emulator.dicom_ae_title
        assert default["port"] == xnat_emulator.dicom_port
        assert default["identifier"] == "dicomObjectIdentifier"
        assert admin.get("/xapi/dicomscp/1").json() == default
        ids = admin.get("/xapi/dicomscp/identifiers").json()
        assert list(ids) == ["dicomObjectIdentifier"]


def test_receiver_records_crud(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        created = admin.post("/xapi/dicomscp", json={"aeTitle": "SECOND", "port": 0})
        assert created.status_code == 200
        record = created.json()
        assert record["aeTitle"] == "SECOND" and record["port"] == 0 and record["id"] > 1
        duplicate = admin.post("/xapi/dicomscp", json={"aeTitle": "SECOND", "port": 0})
        assert duplicate.status_code == 400
        assert admin.post("/xapi/dicomscp", json={"port": 1}).status_code == 400
        scp = f"/xapi/dicomscp/{record['id']}"
        merged = admin.put(scp, json={"label": "Research", "customProcessing": True}).json()
        assert merged["label"] == "Research" and merged["aeTitle"] == "SECOND"
        assert merged["customProcessing"] is True
        assert admin.get("/xapi/dicomscp/title/SECOND/0").json()["id"] == record["id"]
        assert admin.put(f"{scp}/enabled/false").json()["enabled"] is False
        assert admin.get(f"{scp}/enabled").json() is False
        started = admin.put("/xapi/dicomscp/start").json()
        assert f"{xnat_emulator.dicom_ae_title}:{xnat_emulator.dicom_port}" in started
        assert "SECOND:0" not in started
        assert admin.delete(scp).status_code == 200
        missing = admin.get(scp)
        assert missing.status_code == 404
        assert (
            missing.text
            == f"Unable to find requested file or resource: DicomSCPInstance(id: {record['id']})"
        )
        assert admin.delete(scp).status_code == 404
        assert admin.put(scp, json={"label": "x"}).status_code == 500
        assert len(admin.get("/xapi/dicomscp").json()) == 1


def test_default_receiver_overrides_stick(xnat_emulator: XNATEmulator) -> None:
    with logged_in(xnat_emulator) as admin:
        changed = admin.put("/xapi/dicomscp/1", json={"aeTitle": "RENAMED"}).json()
        assert changed["aeTitle"] == "RENAMED" and changed["port"] == xnat_emulator.dicom_port
        assert admin.get("/xapi/dicomscp").json()[0]["aeTitle"] == "RENAMED"


def test_dicomscp_is_admin_only(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_user("bob", "pw")
    with logged_in(xnat_emulator, "bob", "pw") as bob:
        for reply in (
            bob.get("/xapi/dicomscp"),
            bob.get("/xapi/dicomscp/1"),
            bob.post("/xapi/dicomscp", json={"aeTitle": "X", "port": 1}),
        ):
            assert reply.status_code == 403 and reply.text == ""
