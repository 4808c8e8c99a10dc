"""Fixtures of the reliability suites (helpers live in ``_support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._shared import admin_credentials
from tests.reliability._support import Inspector
from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.services.ledger import ENV_LEDGER_DIR
from xnat_prefect.testing.server import XNATEmulator


@pytest.fixture(autouse=True)
def _private_ledger_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may write the user's real transfer ledger (~/.cache)."""
    monkeypatch.setenv(ENV_LEDGER_DIR, str(tmp_path / "ledger"))


@pytest.fixture
def prefect(prefect_harness: None) -> None:
    """Flows run against the session's Prefect test harness."""


@pytest.fixture
def creds(xnat_emulator: XNATEmulator) -> XNATCredentials:
    return admin_credentials(xnat_emulator, max_retries=4)


@pytest.fixture
def lab(xnat_emulator: XNATEmulator, tmp_path: Path) -> Iterator[Inspector]:
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin"), timeout=60) as rest:
        yield Inspector(rest, xnat_emulator, tmp_path)
