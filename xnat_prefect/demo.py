"""The main job on the embedded default: every composite flow against a local emulated XNAT.

``xnat-prefect demo`` starts the XNAT emulator (HTTP + DICOM receiver), writes synthetic
multi-series DICOM studies with pydicom, and runs under Prefect's local (ephemeral) server:
ingest by C-STORE, gradual-DICOM and parallel zip; prearchive archiving; a pipeline
run-and-wait; a catalog refresh; a verified download; and the archive watcher. It prints a
summary, and where to see the runs in the Prefect UI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr

DEMO_PROJECT = "DEMO"
MANUAL_PROJECT = "DEMO_QC"
PIPELINE = "dcm2nii-demo"
TRANSPORTS: tuple[Literal["cstore", "gradual", "parallel-zip"], ...] = (
    "cstore",
    "gradual",
    "parallel-zip",
)


@dataclass
class _Step:
    name: str
    outcome: str
    seconds: float


def _say(message: str) -> None:
    print(message, flush=True)


def _timed(steps: list[_Step], name: str, started: float, outcome: str) -> None:
    steps.append(_Step(name, outcome, time.perf_counter() - started))
    _say(f"  ✓ {name}: {outcome} ({steps[-1].seconds:.1f} s)")


def run_demo(
    *, data_dir: str | None = None, series: int = 3, instances: int = 12, workers: int = 4
) -> int:
    """Run the demo end to end and print a summary.

    Args:
        data_dir: Keep the emulator's data here (default: a temporary folder, removed).
        series: Series per synthetic study.
        instances: DICOM files per series.
        workers: Parallel workers per flow.

    Returns:
        0 when every step succeeded.

    Example:
        ```python
        from xnat_prefect.demo import run_demo

        run_demo(series=2, instances=5)
        ```
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from xnat_prefect.blocks import DicomNode, XNATCredentials
    from xnat_prefect.testing import Timing, XNATEmulator

    work = Path(tempfile.mkdtemp(prefix="xnat-prefect-demo-"))
    timing = Timing(rebuild_quiet_seconds=1.0, sweep_interval_seconds=0.1, job_run_seconds=2.0)
    steps: list[_Step] = []
    started = time.perf_counter()
    try:
        with XNATEmulator(data_dir, timing=timing) as xnat:
            _say(
                f"XNAT emulator at {xnat.url} "
                f"(DICOM receiver: AE {xnat.dicom_ae_title}, port {xnat.dicom_port})"
            )
            credentials = XNATCredentials(
                url=xnat.url, username=xnat.admin_user, password=SecretStr(xnat.admin_password)
            )
            node = DicomNode(
                host="127.0.0.1", port=xnat.dicom_port, called_ae_title=xnat.dicom_ae_title
            )
            _prepare_server(xnat.url, (xnat.admin_user, xnat.admin_password))
            _run_flows(
                credentials, node, work, steps, series=series, instances=instances, workers=workers
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say("")
    _say(f"Demo complete: {len(steps)} steps in {time.perf_counter() - started:.1f} s")
    for step in steps:
        _say(f"  {step.name:<34} {step.seconds:6.1f} s  {step.outcome}")
    home = os.environ.get("PREFECT_HOME", str(Path.home() / ".prefect"))
    _say(
        "\nThe flow runs, task runs, artifacts and events are in Prefect's local database "
        f"({home}).\nTo browse them: `.venv/bin/prefect server start`, then open "
        "http://127.0.0.1:4200/runs"
    )
    return 0


def _prepare_server(url: str, admin: tuple[str, str]) -> None:
    """Create the demo projects and a pipeline through XNAT's REST API and the emulator's."""
    with httpx.Client(base_url=url, auth=admin, timeout=30) as http:
        for project, code in ((DEMO_PROJECT, 4), (MANUAL_PROJECT, 0)):
            http.put(
                f"/data/projects/{project}", params={"name": f"xnat-prefect {project}"}
            ).raise_for_status()
            http.put(f"/data/projects/{project}/prearchive_code/{code}").raise_for_status()
        http.post(
            "/emulator/pipelines",
            json={
                "project": DEMO_PROJECT,
                "name": PIPELINE,
                "description": "Convert DICOM to NIfTI (emulated)",
                "outcome": "Complete",
                "run_seconds": 2,
            },
        ).raise_for_status()


def _run_flows(
    credentials: Any,
    node: Any,
    work: Path,
    steps: list[_Step],
    *,
    series: int,
    instances: int,
    workers: int,
) -> None:
    from xnat_prefect.flows import (
        archive_prearchive_sessions,
        download_sessions,
        ingest_dicom,
        refresh_catalogs_flow,
        run_pipeline_and_wait,
        watch_archive,
    )
    from xnat_prefect.testing.synthetic import generate_study

    watch_archive(credentials, DEMO_PROJECT)  # baseline watermark: only new sessions emit
    experiment_ids: list[str] = []
    for number, transport in enumerate(TRANSPORTS, start=1):
        subject, session = f"SUBJ{number:02d}", f"SUBJ{number:02d}_MR1"
        study = work / transport
        manifest = generate_study(
            study,
            project=DEMO_PROJECT,
            subject=subject,
            session=session,
            series=series,
            instances_per_series=instances,
            seed=number,
        )
        begun = time.perf_counter()
        result = ingest_dicom(
            credentials,
            str(study),
            transport=transport,
            project=DEMO_PROJECT,
            subject=subject,
            session=session,
            dicom_node=node,
            max_workers=workers,
            poll_interval_seconds=0.5,
            stall_seconds=60.0,
            max_wait_seconds=300.0,
        )
        experiment_ids.append(str(result.experiment_id))
        _timed(
            steps,
            f"ingest by {transport}",
            begun,
            f"{result.files_sent}/{len(manifest.files)} files -> {result.experiment_id}, "
            f"{len(result.scans)} scans, verified={result.verified}",
        )

    begun = time.perf_counter()
    generate_study(
        work / "qc",
        project=MANUAL_PROJECT,
        subject="QC01",
        session="QC01_MR1",
        series=2,
        instances_per_series=instances,
        seed=9,
    )
    held = ingest_dicom(
        credentials,
        str(work / "qc"),
        transport="gradual",
        project=MANUAL_PROJECT,
        subject="QC01",
        session="QC01_MR1",
        archive=False,
        verify=False,
        poll_interval_seconds=0.5,
        stall_seconds=60.0,
        max_wait_seconds=300.0,
    )
    report = archive_prearchive_sessions(credentials, MANUAL_PROJECT, min_age_minutes=0.0)
    _timed(
        steps,
        "prearchive archiving",
        begun,
        f"{held.files_sent} files held READY, then {len(report.archived)} archived, "
        f"{len(report.conflicts)} conflicts",
    )

    begun = time.perf_counter()
    run = run_pipeline_and_wait(
        credentials,
        PIPELINE,
        experiment_ids,
        project=DEMO_PROJECT,
        kind="legacy",
        poll_interval_seconds=0.5,
        max_wait_seconds=120.0,
    )
    outcomes = sorted({r.outcome for r in run.results})
    _timed(
        steps, f"pipeline {PIPELINE}", begun, f"{len(run.results)} sessions: {', '.join(outcomes)}"
    )

    begun = time.perf_counter()
    refreshed = refresh_catalogs_flow(credentials, DEMO_PROJECT, max_workers=workers)
    _timed(
        steps,
        "catalog refresh",
        begun,
        f"{len(refreshed.refreshed)}/{refreshed.experiments} refreshed",
    )

    begun = time.perf_counter()
    downloads = download_sessions(
        credentials, experiment_ids, str(work / "downloads"), max_workers=workers
    )
    _timed(
        steps,
        "download (resumable, verified)",
        begun,
        f"{downloads.files} files, {downloads.bytes_received / 1e6:.1f} MB, "
        f"verified={downloads.verified}",
    )

    begun = time.perf_counter()
    watched = watch_archive(credentials, DEMO_PROJECT)
    _timed(
        steps, "archive watcher", begun, f"{watched.events_emitted} xnat.session.archived events"
    )
