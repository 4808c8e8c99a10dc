"""The ``delete_scans`` task carries ``force`` through to ``ScanService.delete_multiple``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from prefect import flow
from pydantic import SecretStr

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.models import BatchSummary
from xnat_prefect.services.scans import ScansWouldBeDeletedError
from xnat_prefect.tasks.scans import delete_scans
from xnat_prefect.testing.server import XNATEmulator


@pytest.fixture
def admin(xnat_emulator: XNATEmulator) -> Iterator[XNATClient]:
    with XNATClient(xnat_emulator.url, "admin", "admin") as client:
        yield client


def _session_with_scans(client: XNATClient, scans: tuple[str, ...]) -> str:
    client.put("/data/projects/P1")
    client.put("/data/projects/P1/subjects/SUB1")
    reply = client.put(
        "/data/projects/P1/subjects/SUB1/experiments/SUB1_MR1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    session_id = reply.text.strip()
    for scan_id in scans:
        client.put(
            f"/data/experiments/{session_id}/scans/{scan_id}",
            params={"xsiType": "xnat:mrScanData", "type": "T1w"},
        )
    return session_id


def _scan_ids(client: XNATClient, session_id: str) -> list[str]:
    return sorted(r["ID"] for r in client.get_result_set(f"/data/experiments/{session_id}/scans"))


def test_delete_scans_exposes_force_keyword_only_and_off() -> None:
    force = inspect.signature(delete_scans.fn).parameters["force"]
    assert force.kind is inspect.Parameter.KEYWORD_ONLY and force.default is False


def test_delete_scans_task_refuses_all_without_force(
    prefect_harness: None, xnat_emulator: XNATEmulator, admin: XNATClient
) -> None:
    session_id = _session_with_scans(admin, ("1", "2", "3"))
    credentials = XNATCredentials(
        url=xnat_emulator.url, username="admin", password=SecretStr("admin")
    )

    @flow
    def wipe(force: bool) -> BatchSummary:
        result: BatchSummary = delete_scans(credentials, session_id, ["*"], force=force)
        return result

    with pytest.raises(ScansWouldBeDeletedError, match="force=True"):
        wipe(False)
    assert _scan_ids(admin, session_id) == ["1", "2", "3"]
    summary = wipe(True)
    assert sorted(summary.succeeded) == ["1", "2", "3"]
    assert _scan_ids(admin, session_id) == []
