"""``refresh_catalogs_flow`` and ``download_sessions`` against the emulator."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.flows import download_sessions, refresh_catalogs_flow
from xnat_prefect.tasks.limits import limit_name, set_limit

REFRESH_KEY = "POST /data/services/refresh/catalog"


def _session_with_files(lab: Any, n: int, files: dict[str, bytes]) -> str:
    reply = lab.rest.put(
        f"/data/projects/P1/subjects/S{n}/experiments/S{n}_MR1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    assert reply.status_code == 201, reply.text
    session_id: str = reply.text.strip()
    scan = f"/data/experiments/{session_id}/scans/1"
    assert lab.rest.put(scan, params={"xsiType": "xnat:mrScanData", "type": "T1w"}).is_success
    for name, data in files.items():
        put = lab.rest.put(
            f"{scan}/resources/DICOM/files/{name}",
            params={"inbody": "true"},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert put.is_success, put.text
    return session_id


def test_catalog_refresh_in_bounded_batches(creds: XNATCredentials, lab: Any) -> None:
    lab.project("P1")
    ids = [_session_with_files(lab, n, {"a.dcm": b"x" * n}) for n in (1, 2, 3)]
    set_limit(limit_name(creds.server_key, "catalog"), 1)
    lab.emulator.add_fault(r"^POST /data/services/refresh/catalog", "latency", latency_ms=(80, 80))
    result = refresh_catalogs_flow(
        creds, "P1", options=["append", "populateStats"], batch_size=2, max_workers=2
    )
    assert sorted(result.refreshed) == sorted(ids) and result.success
    assert (result.batches, result.experiments) == (2, 3)
    metrics = lab.emulator.metrics()
    assert metrics["requests"][REFRESH_KEY] == 3
    assert metrics["max_in_flight"][REFRESH_KEY] == 1


def test_download_is_verified_and_resumes(creds: XNATCredentials, lab: Any, tmp_path: Path) -> None:
    lab.project("P1")
    contents = {
        "a.dcm": b"first file " * 100,
        "b.dcm": b"second file " * 200,
    }
    ids = [_session_with_files(lab, n, contents) for n in (1, 2)]
    out = tmp_path / "out"
    first = download_sessions(creds, ids, str(out), workers_per_session=2)
    assert first.verified and not first.failed
    assert [s.session for s in first.sessions] == ids
    assert first.files == 4 and first.bytes_received > 0
    written = sorted(p for p in out.rglob("*.dcm"))
    assert len(written) == 4
    digests = {hashlib.md5(p.read_bytes()).hexdigest() for p in written}
    assert digests == {hashlib.md5(v).hexdigest() for v in contents.values()}
    again = download_sessions(creds, ids, str(out))
    assert again.verified and again.files == 0
    assert [s.skipped for s in again.sessions] == [2, 2]
