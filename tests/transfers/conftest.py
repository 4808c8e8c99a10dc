"""Fixtures for the transfer tests: clients, services with a per-test ledger, raw-REST helpers.

Setup and checks go through XNAT's REST API with plain client calls (not the services under
test), and through the emulator's own control API (faults, metrics, timings).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.services.ledger import ENV_LEDGER_DIR, TransferLedger
from xnat_prefect.services.uploads import UploadService
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

IMPORT_KEY = "POST /data/services/import"


@pytest.fixture(autouse=True)
def _private_ledger_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may write the user's real ledger (~/.cache)."""
    monkeypatch.setenv(ENV_LEDGER_DIR, str(tmp_path / "default-ledger"))


@pytest.fixture
def client(xnat_emulator: XNATEmulator) -> Iterator[XNATClient]:
    with XNATClient(
        xnat_emulator.url, "admin", "admin", backoff_base=0.01, backoff_max=0.05
    ) as xnat:
        yield xnat


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[TransferLedger]:
    with TransferLedger(tmp_path / "ledger" / "transfers.sqlite") as book:
        yield book


@pytest.fixture
def uploads(client: XNATClient, ledger: TransferLedger) -> UploadService:
    return UploadService(client, ledger=ledger, backoff_base=0.01)


@pytest.fixture
def downloads(client: XNATClient) -> DownloadService:
    return DownloadService(client, backoff_base=0.01)


@dataclass
class Rest:
    """Raw-REST setup and checks, plus metric helpers (the services under test are not used)."""

    client: XNATClient

    def project(self, project: str, code: int = 4) -> None:
        self.client.put(f"/data/projects/{project}")
        self.client.put(f"/data/projects/{project}/prearchive_code/{code}")

    def archive_study(self, seed: Path, **study: Any) -> str:
        """Generate P1/SUBJ1/SESS1 under ``seed`` and archive it with one raw DICOM-zip import.

        Args:
            seed: Folder for the synthetic study.
            **study: ``generate_study`` options (series, instances_per_series, rows...).

        Returns:
            The experiment ID.
        """
        self.project("P1")
        manifest = generate_study(seed, project="P1", subject="SUBJ1", session="SESS1", **study)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in manifest.files:
                archive.write(path, path.relative_to(seed).as_posix())
        self.client.post(
            "/data/services/import",
            params={"import-handler": "DICOM-zip", "project": "P1", "subject": "SUBJ1",
                    "session": "SESS1", "dest": "/archive/projects/P1"},
            content=buffer.getvalue(),
            headers={"Content-Type": "application/zip"},
        )  # fmt: skip
        [experiment] = self.experiments("P1")
        return str(experiment["ID"])

    def experiments(self, project: str) -> list[dict[str, str]]:
        return self.client.get_result_set(f"/data/projects/{project}/experiments")

    def prearchive(self, project: str) -> list[dict[str, str]]:
        return self.client.get_result_set(f"/data/prearchive/projects/{project}")

    def session_files(self, experiment_id: str) -> list[dict[str, str]]:
        return self.client.get_result_set(f"/data/experiments/{experiment_id}/scans/ALL/files")

    def scans(self, experiment_id: str) -> list[str]:
        rows = self.client.get_result_set(f"/data/experiments/{experiment_id}/scans")
        return sorted(r["ID"] for r in rows)

    @staticmethod
    def md5(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    @staticmethod
    def total(metrics: dict[str, Any], kind: str, needle: str) -> int:
        """Sum of ``bytes_in``/``bytes_out``/``requests`` over routes whose key has ``needle``."""
        return sum(v for k, v in metrics[kind].items() if needle in k)

    @staticmethod
    def statuses(metrics: dict[str, Any], needle: str, status: int) -> int:
        return sum(v.get(str(status), 0) for k, v in metrics["statuses"].items() if needle in k)


@pytest.fixture
def rest(client: XNATClient) -> Rest:
    return Rest(client)
