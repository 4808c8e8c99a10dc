"""Fault injection on the emulator's DICOM C-STORE receiver (``dicom_*`` kinds), over real sockets.

A pynetdicom SCU talks to the emulator's receiver; what reached the prearchive is read from the
emulator's store, so a test sees both sides: the status the SCU got and whether XNAT kept the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study


@pytest.fixture
def study(tmp_path: Path) -> StudyManifest:
    return generate_study(tmp_path / "study", project="FLT", series=1, instances_per_series=6)


def _datasets(study: StudyManifest) -> list[Dataset]:
    return [dcmread(path) for path in study.files]


def _request(emu: XNATEmulator, study: StudyManifest, calling: str = "TESTSCU") -> Any:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for info in study.series.values():
        ae.add_requested_context(info.sop_class_uid, study.transfer_syntax)
    ae.add_requested_context(Verification, ImplicitVRLittleEndian)
    return ae.associate("127.0.0.1", emu.dicom_port, ae_title=emu.dicom_ae_title)


@contextmanager
def _association(
    emu: XNATEmulator, study: StudyManifest, calling: str = "TESTSCU"
) -> Iterator[Any]:
    assoc = _request(emu, study, calling)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        assoc.join(5)


def _stored(emu: XNATEmulator) -> set[str]:
    assert emu.state is not None
    return {row["sop_uid"] for row in emu.state.store.query("SELECT sop_uid FROM prearc_files")}


def _rejection(assoc: Any) -> tuple[int, int, int]:
    reply = assoc.acceptor.primitive
    return int(reply.result), int(reply.result_source), int(reply.diagnostic)


def _scp_leftovers(emu: XNATEmulator) -> list[Path]:
    assert emu.state is not None
    return sorted((emu.state.store.tmp_dir / "scp").iterdir())


def test_transient_reject_spends_its_budget(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    rule = xnat_emulator.add_fault(r"^ASSOCIATE TESTSCU XNAT$", "dicom_reject", times=2)
    for _ in range(2):
        assoc = _request(xnat_emulator, study)
        assert assoc.is_rejected and not assoc.is_established
        assert _rejection(assoc) == (2, 3, 1)  # transient, presentation, temporary congestion
    with _association(xnat_emulator, study) as assoc:
        assert assoc.send_c_echo().Status == 0
    assert rule.fired == 2
    assert xnat_emulator.metrics()["faults"] == {"dicom_reject": 2}


def test_permanent_reject_with_a_reason_over_the_control_api(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    rule = {
        "route": "^ASSOCIATE BADSCU ",
        "kind": "dicom_reject",
        "reject": "permanent",
        "reject_source": 1,
        "reject_reason": 3,
    }
    created = httpx.post(f"{xnat_emulator.url}/emulator/faults", json=rule, timeout=10)
    assert created.status_code == 201
    assert created.json()["reject"] == "permanent" and created.json()["fired"] == 0
    for _ in range(2):  # no times: every association of BADSCU
        assoc = _request(xnat_emulator, study, "BADSCU")
        assert assoc.is_rejected
        assert _rejection(assoc) == (1, 1, 3)  # permanent, service user, calling AE unknown
    with _association(xnat_emulator, study, "GOODSCU") as assoc:  # the route does not match
        assert assoc.send_c_echo().Status == 0
    [listed] = httpx.get(f"{xnat_emulator.url}/emulator/faults", timeout=10).json()
    assert listed["fired"] == 2


def test_abort_after_n_stores_keeps_only_acknowledged_files(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    datasets = _datasets(study)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    xnat_emulator.add_fault(r"^C-STORE TESTSCU ", "dicom_abort", after_stores=3, times=1)
    statuses: list[int | None] = []
    with _association(xnat_emulator, study) as assoc:
        for ds in datasets:
            reply = assoc.send_c_store(ds)
            statuses.append(reply.get("Status"))
            if reply.get("Status") is None:
                break
        assoc.join(5)
        assert assoc.is_aborted and not assoc.is_established
    assert statuses == [0, 0, 0, None]
    assert _stored(xnat_emulator) == set(uids[:3])  # the 4th was never acknowledged nor kept
    with _association(xnat_emulator, study) as assoc:  # times=1: the resend goes through
        assert [assoc.send_c_store(ds).Status for ds in datasets[3:]] == [0, 0, 0]
    assert _stored(xnat_emulator) == set(uids)
    assert xnat_emulator.metrics()["faults"] == {"dicom_abort": 1}
    assert _scp_leftovers(xnat_emulator) == []


def test_failure_statuses_are_not_stored_and_warnings_are(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    datasets = _datasets(study)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    xnat_emulator.add_fault(r"^C-STORE ", "dicom_status", times=1, body="disk full")  # 0xA700
    xnat_emulator.add_fault(r"^C-STORE ", "dicom_status", store_status=0xC000, times=1)
    xnat_emulator.add_fault(r"^C-STORE ", "dicom_status", store_status=0xB000, times=1)
    with _association(xnat_emulator, study) as assoc:
        replies = [assoc.send_c_store(ds) for ds in datasets]
    assert [r.Status for r in replies] == [0xA700, 0xC000, 0xB000, 0, 0, 0]
    assert replies[0].ErrorComment == "disk full"
    assert "ErrorComment" not in replies[1]
    assert _stored(xnat_emulator) == set(uids[2:])  # the warning's dataset was kept
    assert xnat_emulator.metrics()["faults"] == {"dicom_status": 3}
    assert _scp_leftovers(xnat_emulator) == []


def _status_pattern(emu: XNATEmulator, datasets: list[Dataset], study: StudyManifest) -> list[int]:
    emu.add_fault(r"^C-STORE ", "dicom_status", rate=0.5, store_status=0xA700)
    with _association(emu, study) as assoc:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]


def test_rates_are_seeded(
    xnat_emulator_factory: Callable[..., XNATEmulator], tmp_path: Path
) -> None:
    study = generate_study(tmp_path / "many", project="FLT", series=1, instances_per_series=16)
    datasets = _datasets(study)
    first = xnat_emulator_factory(seed=7)
    pattern = _status_pattern(first, datasets, study)
    assert set(pattern) == {0, 0xA700}  # some fail, some pass
    kept = {
        str(ds.SOPInstanceUID) for ds, status in zip(datasets, pattern, strict=True) if status == 0
    }
    assert _stored(first) == kept
    assert first.metrics()["faults"] == {"dicom_status": pattern.count(0xA700)}
    again = xnat_emulator_factory(seed=7)
    assert _status_pattern(again, datasets, study) == pattern


def test_latency_delays_association_echo_and_later_stores(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    datasets = _datasets(study)
    slow_assoc = xnat_emulator.add_fault(
        r"^ASSOCIATE ", "dicom_latency", latency_ms=(300, 300), times=1
    )
    slow_echo = xnat_emulator.add_fault(
        r"^C-ECHO ", "dicom_latency", latency_ms=(300, 300), times=1
    )
    slow_store = xnat_emulator.add_fault(
        r"^C-STORE ", "dicom_latency", latency_ms=(300, 300), after_stores=1, times=1
    )
    started = time.monotonic()
    with _association(xnat_emulator, study) as assoc:
        assert time.monotonic() - started >= 0.3
        assert slow_assoc.fired == 1
        started = time.monotonic()
        assert assoc.send_c_echo().Status == 0
        assert time.monotonic() - started >= 0.3 and slow_echo.fired == 1
        assert assoc.send_c_store(datasets[0]).Status == 0
        assert slow_store.fired == 0  # after_stores=1: not the association's first C-STORE
        started = time.monotonic()
        assert assoc.send_c_store(datasets[1]).Status == 0
        assert time.monotonic() - started >= 0.3 and slow_store.fired == 1
    assert xnat_emulator.metrics()["faults"] == {"dicom_latency": 3}
    assert len(_stored(xnat_emulator)) == 2  # latency delays, it does not fail


def test_dicom_and_http_faults_stay_apart(
    xnat_emulator: XNATEmulator, study: StudyManifest
) -> None:
    dicom_rule = xnat_emulator.add_fault(r".", "dicom_status", store_status=0xC000)
    http_rule = xnat_emulator.add_fault(r"^C-", "status", status=503)  # never an HTTP target
    xnat_emulator.add_fault(r"^GET /data/projects$", "status", status=503, times=1)
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=10) as client:
        assert client.get("/data/projects").status_code == 503
        assert client.get("/data/projects").status_code == 200
    assert dicom_rule.fired == 0 and http_rule.fired == 0
    with _association(xnat_emulator, study) as assoc:
        assert assoc.send_c_echo().Status == 0  # dicom_status only answers C-STOREs
        assert assoc.send_c_store(_datasets(study)[0]).Status == 0xC000
    assert dicom_rule.fired == 1 and http_rule.fired == 0
    assert _stored(xnat_emulator) == set()


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "dicom_reject", "reject": "sometimes"},
        {"kind": "dicom_reject", "reject_source": 3, "reject_reason": 7},
        {"kind": "dicom_reject", "reject_source": 4},
        {"kind": "dicom_status", "store_status": 0},
        {"kind": "dicom_status", "store_status": 0xFF00},
        {"kind": "dicom_abort", "after_stores": -1},
        {"kind": "dicom_abort", "times": -1},
        {"kind": "dicom_chaos"},
    ],
)
def test_bad_rules_are_refused(xnat_emulator: XNATEmulator, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        xnat_emulator.add_fault(".", **options)
    reply = httpx.post(
        f"{xnat_emulator.url}/emulator/faults", json={"route": ".", **options}, timeout=10
    )
    assert reply.status_code == 400 and "Bad fault rule" in reply.text
    assert httpx.get(f"{xnat_emulator.url}/emulator/faults", timeout=10).json() == []


def test_control_api_takes_hex_statuses(xnat_emulator: XNATEmulator) -> None:
    reply = httpx.post(
        f"{xnat_emulator.url}/emulator/faults",
        json={"route": "^C-STORE ", "kind": "dicom_status", "store_status": "0xA700"},
        timeout=10,
    )
    assert reply.status_code == 201 and reply.json()["store_status"] == 0xA700
