"""Fixtures for the flow tests: one Prefect harness, credentials and a raw-REST ``lab`` helper.

Every flow runs for real under the session-scoped ``prefect_harness`` against a fresh
``xnat_emulator``. Setup and checks go through XNAT's REST API with a plain HTTP client and the
emulator's control API, never through the services the flows use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.services.ledger import ENV_LEDGER_DIR
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

#: Settle timings for the emulator's fast clock (rebuild after 0.3 s of quiet).
FAST: dict[str, float] = {
    "stall_seconds": 15.0,
    "max_wait_seconds": 30.0,
    "poll_interval_seconds": 0.1,
}


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    """Every flow test runs against the session's Prefect test harness."""


@pytest.fixture(autouse=True)
def _private_ledger_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may write the user's real transfer ledger (~/.cache)."""
    monkeypatch.setenv(ENV_LEDGER_DIR, str(tmp_path / "ledger"))


@pytest.fixture
def creds(xnat_emulator: XNATEmulator) -> XNATCredentials:
    return XNATCredentials(
        url=xnat_emulator.url,
        username="admin",
        password=SecretStr("admin"),
        timeout_seconds=20.0,
        max_retries=2,
    )


@pytest.fixture
def fast() -> dict[str, float]:
    return dict(FAST)


@dataclass
class Lab:
    """Raw-REST setup and checks against one emulator."""

    rest: httpx.Client
    emulator: XNATEmulator
    tmp_path: Path

    def project(self, project: str = "P1", *, code: int | None = None) -> str:
        """Create a project (prearchive code 4 = auto-archive unless ``code`` says otherwise)."""
        reply = self.rest.put(f"/data/projects/{project}")
        assert reply.status_code in (200, 201), reply.text
        if code is not None:
            reply = self.rest.put(f"/data/projects/{project}/prearchive_code/{code}")
            assert reply.status_code == 200, reply.text
        return project

    def study(
        self, name: str = "study", *, project: str | None = "P1", **options: Any
    ) -> tuple[Path, StudyManifest]:
        """A synthetic study (routing in Patient Comments) in ``tmp_path/name``."""
        folder = self.tmp_path / name
        options.setdefault("subject", "SUBJ01")
        options.setdefault("session", "SUBJ01_MR1")
        options.setdefault("series", 2)
        options.setdefault("instances_per_series", 3)
        manifest = generate_study(folder, project=project, **options)
        return folder, manifest

    def prearchive(self, project: str | None = None) -> list[dict[str, str]]:
        path = f"/data/prearchive/projects/{project}" if project else "/data/prearchive"
        reply = self.rest.get(path, params={"format": "json"})
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
        return rows

    def experiments(self, project: str = "P1") -> list[dict[str, str]]:
        reply = self.rest.get(f"/data/projects/{project}/experiments", params={"format": "json"})
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
        return rows

    def files(self, experiment_id: str, scan_id: str) -> list[dict[str, str]]:
        path = f"/data/experiments/{experiment_id}/scans/{scan_id}/resources/DICOM/files"
        reply = self.rest.get(path, params={"format": "json"})
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
        return rows

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``check`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def lab(xnat_emulator: XNATEmulator, tmp_path: Path) -> Iterator[Lab]:
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=20) as client:
        yield Lab(client, xnat_emulator, tmp_path)
