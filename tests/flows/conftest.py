"""Fixtures for the flow tests: one Prefect harness, credentials and a raw-REST ``lab`` helper.

Every flow runs for real under the session-scoped ``prefect_harness`` against a fresh
``xnat_emulator``. Setup and checks go through XNAT's REST API with a plain HTTP client and the
emulator's control API, never through the services the flows use.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._shared import RestLab, admin_credentials
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
    return admin_credentials(xnat_emulator, max_retries=2)


@pytest.fixture
def fast() -> dict[str, float]:
    return dict(FAST)


class Lab(RestLab):
    """Raw-REST setup and checks against one emulator."""

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

    def study_with_a_repeated_instance(self) -> Path:
        """Project P1 and a study whose first SOP instance is also stored as IM9999.dcm.

        XNAT keeps one copy of an instance, so one local file never reaches the archive.
        """
        self.project("P1")
        folder, manifest = self.study()
        original = manifest.files[0]
        shutil.copy(original, original.with_name("IM9999.dcm"))
        return folder

    def files(self, experiment_id: str, scan_id: str) -> list[dict[str, str]]:
        return self.rows(f"/data/experiments/{experiment_id}/scans/{scan_id}/resources/DICOM/files")


@pytest.fixture
def lab(xnat_emulator: XNATEmulator, tmp_path: Path) -> Iterator[Lab]:
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=20) as client:
        yield Lab(client, xnat_emulator, tmp_path)
