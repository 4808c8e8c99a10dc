"""Shared helpers of the reliability suites: scale, fault profile, an independent archive inspector.

* ``XNAT_PREFECT_RELIABILITY_FILES`` sets the load (files per transfer). CI runs the default
  (120); ``XNAT_PREFECT_RELIABILITY_FILES=1000`` is the full-size run recorded in
  ``docs/reliability.md``.
* ``XNAT_PREFECT_RELIABILITY_REPORT=<path>`` makes the suites append their figures (files,
  faults injected, retries observed, what was lost) to that JSON-lines file.
* The :class:`Inspector` reads the archive back with plain httpx (never through the client or
  services under test) and the emulator's control API: what XNAT holds is judged by a second,
  independent reader.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from tests._shared import RestLab
from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

ENV_FILES = "XNAT_PREFECT_RELIABILITY_FILES"
ENV_REPORT = "XNAT_PREFECT_RELIABILITY_REPORT"
FILES = max(8, int(os.environ.get(ENV_FILES, "120")))
SERIES = 4
#: Every XNAT route (not the emulator's own /emulator control API).
XNAT_ROUTES = r"^(GET|HEAD|PUT|POST|DELETE) /(data|xapi)/"
IMPORT_ROUTE = r"^POST /data/services/import"
TRANSIENT_400 = "Concurrent file sends of the same data is not supported."
#: Quiet interval before the emulator builds a session: longer than any retry pause the faults
#: cause (Retry-After 1 s, backoff of a few seconds), as XNAT's 5 minutes are in production.
QUIET_SECONDS = 4.0


def record_figures(suite: str, **figures: Any) -> None:
    """Append one suite's figures to the report file named by ``XNAT_PREFECT_RELIABILITY_REPORT``.

    Args:
        suite: Suite name.
        **figures: JSON-friendly numbers and lists.
    """
    target = os.environ.get(ENV_REPORT)
    if not target:
        return
    line = json.dumps({"suite": suite, "files_setting": FILES, **figures}, sort_keys=True)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def inject_standard_faults(emulator: XNATEmulator, *, routes: str = XNAT_ROUTES) -> None:
    """The issue's fault profile on every XNAT route.

    10 % 5xx (503/502/504), 2 % dropped connections, 2 % 429 with ``Retry-After: 1``,
    0-200 ms latency on every request, and 3 % transient import 400s.

    Args:
        emulator: The emulator.
        routes: Regex of the routes to hit.
    """
    emulator.add_fault(routes, "latency", latency_ms=(0, 200))
    emulator.add_fault(routes, "status", rate=0.05, status=503)
    emulator.add_fault(routes, "status", rate=0.03, status=502)
    emulator.add_fault(routes, "status", rate=0.02, status=504)
    emulator.add_fault(routes, "drop", rate=0.02)
    emulator.add_fault(routes, "rate_limit", rate=0.02, retry_after=1)
    emulator.add_fault(IMPORT_ROUTE, "status", rate=0.03, status=400, body=TRANSIENT_400)


def fault_counts(emulator: XNATEmulator) -> dict[str, int]:
    """Faults the emulator injected so far, by kind (plus ``total``)."""
    faults = dict(emulator.metrics()["faults"])
    faults["total"] = sum(v for k, v in faults.items() if k != "latency")
    return faults


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    return md5_bytes(path.read_bytes())


def dataset_md5(data: bytes) -> str:
    """MD5 of a Part-10 file's dataset, without its preamble and file meta group.

    A C-STORE receiver writes its own file meta (implementation UID and name), so the archived
    bytes of a C-STOREd file differ from the source there and only there.
    """
    if data[128:132] != b"DICM":
        return md5_bytes(data)
    group_length = int.from_bytes(data[140:144], "little")
    return md5_bytes(data[144 + group_length :])


def leftovers(root: Path) -> list[Path]:
    """Half-written files under ``root``: ``*.part`` and other temporary names."""
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (p.name.endswith((".part", ".tmp")) or p.name.startswith(".tmp"))
    )


@dataclass
class ArchivedSession:
    """One archived session, read back independently."""

    experiment_id: str
    label: str
    scans: dict[str, list[dict[str, str]]]
    sop_uids: list[str]
    digests: list[str]
    dataset_digests: list[str]

    @property
    def file_count(self) -> int:
        return sum(len(files) for files in self.scans.values())


class Inspector(RestLab):
    """Raw-REST setup and checks, plus the emulator's control API (no code under test)."""

    def study(
        self, name: str = "study", *, files: int = FILES, project: str | None = "P1", **options: Any
    ) -> tuple[Path, StudyManifest]:
        """A synthetic study of about ``files`` small files (4 series, or one per 50 files)."""
        folder = self.tmp_path / name
        options.setdefault("subject", "SUBJ01")
        options.setdefault("session", "SUBJ01_MR1")
        # 4 series, or one per 50 files for big studies (zip batches keep series whole)
        series = options.pop("series", min(files, max(SERIES, files // 50)))
        options.setdefault("rows", 24)
        options.setdefault("cols", 24)
        manifest = generate_study(
            folder,
            project=project,
            series=series,
            instances_per_series=max(1, files // series),
            **options,
        )
        return folder, manifest

    def archived(self, experiment_id: str) -> ArchivedSession:
        """Scans, file rows, SOP Instance UIDs (read from the archived bytes) and digests."""
        label = self.rest.get(
            f"/data/experiments/{experiment_id}", params={"format": "json"}
        ).json()["items"][0]["data_fields"]["label"]
        scans: dict[str, list[dict[str, str]]] = {}
        for scan in self.rows(f"/data/experiments/{experiment_id}/scans"):
            scans[scan["ID"]] = self.rows(
                f"/data/experiments/{experiment_id}/scans/{scan['ID']}/resources/DICOM/files"
            )
        reply = self.rest.get(
            f"/data/experiments/{experiment_id}/scans/ALL/files", params={"format": "zip"}
        )
        assert reply.status_code == 200, reply.text[:200]
        uids: list[str] = []
        digests: list[str] = []
        datasets: list[str] = []
        with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
            for name in archive.namelist():
                data = archive.read(name)
                digests.append(md5_bytes(data))
                datasets.append(dataset_md5(data))
                dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
                uids.append(str(dataset.SOPInstanceUID))
        return ArchivedSession(experiment_id, label, scans, uids, digests, datasets)

    def seed_archive(self, folder: Path, *, project: str, subject: str, session: str) -> str:
        """Put a study in the archive with one DICOM-zip import (no faults), return its ID."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(folder.rglob("*.dcm")):
                archive.write(path, path.relative_to(folder).as_posix())
        reply = self.rest.post(
            "/data/services/import",
            params={
                "import-handler": "DICOM-zip",
                "project": project,
                "subject": subject,
                "session": session,
                "Direct-Archive": "true",
            },
            content=buffer.getvalue(),
            headers={"Content-Type": "application/zip"},
        )
        assert reply.status_code == 200, reply.text
        found = self.wait_for(
            lambda: [e for e in self.experiments(project) if e["label"] == session], 60
        )
        self.emulator.wait_idle()
        return str(found[0]["ID"])
