"""deployments/prefect.yaml on a real `prefect server start`, two process workers and an emulator.

One stack per module (server start + deploy + workers take ~25 s): a private PREFECT_HOME and
SQLite database, the `xnat-process` pool created with the documented CLI command,
`prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all`, two
`prefect worker start --pool xnat-process --limit 3`, the XNATCredentials block saved under the
name the yaml uses, pointing at an in-process XNAT emulator the workers reach over loopback.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import IntervalSchedule
from pydantic import SecretStr
from xnat_prefect.blocks import XNATCredentials

from xnat_prefect.tasks.limits import limit_name, set_limit
from xnat_prefect.testing import Timing, XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
IMPORT_KEY = "POST /data/services/import"
INGEST_PROJECT = "P1"  # auto-archive (prearchive code 4)
FAST_SETTLE = {"stall_seconds": 30.0, "max_wait_seconds": 90.0, "poll_interval_seconds": 0.5}
UPLOAD_SLOTS = 3
INGEST_RUNS = 4
BATCHES_PER_INGEST = 4


@dataclass
class Deployed:
    """The running stack and what the tests need to drive it."""

    stack: Any
    xnat: XNATEmulator
    rest: httpx.Client
    credentials_block: str
    project: str
    work: Path

    def deployment_id(self, client: SyncPrefectClient, name: str) -> UUID:
        return client.read_deployment_by_name(name).id


def _site() -> dict[str, str]:
    site: dict[str, str] = yaml.safe_load(PREFECT_YAML.read_text())["definitions"]["site"]
    return site


def _zip_of(files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, f"{path.parent.name}/{path.name}")
    return buffer.getvalue()


def _import(
    rest: httpx.Client, work: Path, project: str, subject: str, seed: int, **extra: str
) -> None:
    """Send one small study to XNAT's import service with plain REST (no event is emitted)."""
    manifest = generate_study(
        work / f"rest-{subject}",
        project=project,
        subject=subject,
        session=f"{subject}_MR1",
        series=1,
        instances_per_series=2,
        seed=seed,
    )
    reply = rest.post(
        "/data/services/import",
        params={
            "import-handler": "DICOM-zip",
            "project": project,
            "subject": subject,
            "session": f"{subject}_MR1",
            **extra,
        },
        content=_zip_of(manifest.files),
        headers={"Content-Type": "application/zip"},
    )
    assert reply.status_code == 200, reply.text


def _experiment_id(rest: httpx.Client, project: str, label: str) -> str:
    reply = rest.get(f"/data/projects/{project}/experiments", params={"format": "json"})
    assert reply.status_code == 200, reply.text
    rows = [r for r in reply.json()["ResultSet"]["Result"] if r["label"] == label]
    assert len(rows) == 1, rows
    return str(rows[0]["ID"])


def _wait(
    check: Callable[[], Any], *, timeout: float, what: str, stack: Any, interval: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s\n{stack.all_tails()}")


def _runs(client: SyncPrefectClient, ids: list[UUID]) -> list[FlowRun]:
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))


def _runs_of(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def _wait_final(
    client: SyncPrefectClient, ids: list[UUID], stack: Any, timeout: float
) -> list[FlowRun]:
    def final() -> list[FlowRun] | None:
        runs = _runs(client, ids)
        done = len(runs) == len(ids) and all(r.state and r.state.is_final() for r in runs)
        return runs if done else None

    runs: list[FlowRun] = _wait(final, timeout=timeout, what="flow runs final", stack=stack)
    return runs


def _states(runs: list[FlowRun]) -> dict[str, str]:
    return {r.name: (r.state.name if r.state else "?") for r in runs}


@pytest.fixture(scope="module")
def deployed(stack_factory: Callable[..., Any]) -> Iterator[Deployed]:
    site = _site()
    stack = stack_factory("sqlite-stack")
    stack.extra_env["HOME"] = str(stack.root / "home")  # ~/xnat-staging of the yaml lands here
    stack.start_server()
    stack.prefect("work-pool", "create", "xnat-process", "--type", "process")
    xnat = XNATEmulator(timing=Timing(rebuild_quiet_seconds=0.3)).start()
    rest = httpx.Client(base_url=xnat.url, auth=("admin", "admin"), timeout=30)
    try:
        for project, code in ((INGEST_PROJECT, 4), (site["project"], 0)):
            assert rest.put(f"/data/projects/{project}").status_code in (200, 201)
            reply = rest.put(f"/data/projects/{project}/prearchive_code/{code}")
            assert reply.status_code == 200, reply.text
        with stack.client_settings():
            XNATCredentials(
                url=xnat.url, username="admin", password=SecretStr("admin"), timeout_seconds=30
            ).save(site["credentials"], overwrite=True)
        output = stack.prefect("deploy", "--prefect-file", str(PREFECT_YAML), "--all")
        assert "stage-archived-session" in output
        stack.start_worker("worker-1", limit=3)
        stack.start_worker("worker-2", limit=3)
        yield Deployed(
            stack=stack,
            xnat=xnat,
            rest=rest,
            credentials_block=site["credentials"],
            project=site["project"],
            work=stack.root / "work",
        )
    finally:
        stack.stop()  # workers before the emulator they talk to
        rest.close()
        xnat.stop()


def test_concurrent_runs_hold_the_upload_limit_across_two_workers(deployed: Deployed) -> None:
    """(a) 4 ingest + 2 catalog-refresh runs at once on 2 workers; uploads <= 3 in flight."""
    stack, xnat = deployed.stack, deployed.xnat
    _import(deployed.rest, deployed.work, INGEST_PROJECT, "SEED01", seed=90)  # for the catalogs
    sources = []
    for k in range(INGEST_RUNS):
        folder = deployed.work / f"study{k}"
        generate_study(
            folder,
            project=INGEST_PROJECT,
            subject=f"SUBJ{k:02d}",
            session=f"SUBJ{k:02d}_MR1",
            series=BATCHES_PER_INGEST,
            instances_per_series=3,
            seed=k,
        )
        sources.append(folder)
    credentials = XNATCredentials(url=xnat.url, username="admin", password=SecretStr("admin"))
    xnat.reset_metrics()
    # slow imports down so the runs overlap whatever the scheduling of the worker processes
    xnat.add_fault(r"^POST /data/services/import", "latency", latency_ms=(400, 600))
    with stack.client_settings(), get_client(sync_client=True) as client:
        set_limit(limit_name(credentials.server_key, "uploads"), UPLOAD_SLOTS)
        ingest = deployed.deployment_id(client, "xnat-ingest-dicom/ingest-dicom")
        catalog = deployed.deployment_id(client, "xnat-refresh-catalogs/refresh-catalogs-nightly")
        started = time.monotonic()
        ids = [
            client.create_flow_run_from_deployment(
                ingest,
                parameters={
                    "source": str(folder),
                    "project": INGEST_PROJECT,
                    "subject": f"SUBJ{k:02d}",
                    "session": f"SUBJ{k:02d}_MR1",
                    "batches": BATCHES_PER_INGEST,
                    "max_workers": BATCHES_PER_INGEST,
                    **FAST_SETTLE,
                },
            ).id
            for k, folder in enumerate(sources)
        ]
        ids += [
            client.create_flow_run_from_deployment(catalog).id,  # the yaml's project (empty)
            client.create_flow_run_from_deployment(
                catalog, parameters={"project": INGEST_PROJECT}
            ).id,
        ]
        runs = _wait_final(client, ids, stack, timeout=240)
        elapsed = time.monotonic() - started
    xnat.clear_faults()
    print(f"\n{len(ids)} concurrent deployment runs on 2 process workers: {elapsed:.1f} s")
    assert all(r.state and r.state.is_completed() for r in runs), (
        f"{_states(runs)}\n{stack.all_tails()}"
    )
    metrics = xnat.metrics()
    assert metrics["requests"][IMPORT_KEY] == INGEST_RUNS * BATCHES_PER_INGEST
    peak = metrics["max_in_flight"][IMPORT_KEY]
    # 16 batches from 4 runs on 2 workers could have been 16 in flight: the server-wide limit
    # held them at 3, and they did run in parallel.
    assert 2 <= peak <= UPLOAD_SLOTS, metrics["max_in_flight"]
    experiments = deployed.rest.get(
        f"/data/projects/{INGEST_PROJECT}/experiments", params={"format": "json"}
    ).json()["ResultSet"]["Result"]
    assert {e["label"] for e in experiments} >= {f"SUBJ{k:02d}_MR1" for k in range(INGEST_RUNS)}
    # both workers took runs (each may hold 3 at a time: 6 runs cannot all go to one)
    by_worker = {
        name: set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", stack.tail(name, 10_000)))
        for name in ("worker-1", "worker-2")
    }
    assert all(by_worker.values()), by_worker
    assert {str(i) for i in ids} <= by_worker["worker-1"] | by_worker["worker-2"]


def _event_cli(stack: Any, *, server: str, experiment_id: str, project: str, label: str) -> None:
    resource = {
        "prefect.resource.id": f"xnat.session.{server}.{experiment_id}",
        "prefect.resource.name": label,
        "xnat.server": server,
        "xnat.project": project,
    }
    payload = {"server": server, "project": project, "experiment_id": experiment_id}
    stack.prefect(
        "event",
        "emit",
        "xnat.session.archived",
        "--resource",
        json.dumps(resource),
        "--payload",
        json.dumps(payload),
    )


def test_scheduled_archive_and_event_triggered_downstream(deployed: Deployed) -> None:
    """(b) the prearchive schedule fires and archives; each archived event stages the session."""
    stack, rest = deployed.stack, deployed.rest
    project = deployed.project
    server = XNATCredentials(
        url=deployed.xnat.url, username="admin", password=SecretStr("admin")
    ).server_key
    _import(rest, deployed.work, project, "PRE01", seed=70, dest=f"/prearchive/projects/{project}")
    with stack.client_settings(), get_client(sync_client=True) as client:
        archive_id = deployed.deployment_id(client, "xnat-archive-prearchive/archive-prearchive")
        stage_id = deployed.deployment_id(client, "xnat-download-sessions/stage-archived-session")
        deployment = client.read_deployment(archive_id)
        (schedule,) = deployment.schedules
        assert isinstance(schedule.schedule, IntervalSchedule)
        assert schedule.schedule.interval == timedelta(minutes=15)
        # Make the 15-minute schedule due now; accept a session archived a moment ago.
        client.update_deployment_schedule(
            archive_id,
            schedule.id,
            schedule=IntervalSchedule(interval=timedelta(seconds=10)),
            parameters={"min_age_minutes": 0},
        )

        def scheduled_done() -> FlowRun | None:
            done = [
                r
                for r in _runs_of(client, archive_id)
                if r.auto_scheduled
                and r.parameters.get("min_age_minutes") == 0
                and r.state
                and r.state.is_completed()
            ]
            return done[0] if done else None

        run = _wait(scheduled_done, timeout=90, what="a scheduled run Completed", stack=stack)
        client.update_deployment_schedule(archive_id, schedule.id, active=False)
        assert run.parameters["min_age_minutes"] == 0
        assert run.parameters["project"] == project
        archived = _experiment_id(rest, project, "PRE01_MR1")

        def staged(experiment_id: str) -> Callable[[], list[FlowRun]]:
            def check() -> list[FlowRun]:
                return [
                    r
                    for r in _runs_of(client, stage_id)
                    if r.parameters.get("sessions") == [experiment_id]
                    and r.state
                    and r.state.is_final()
                ]

            return check

        downstream = _wait(staged(archived), timeout=90, what="downstream run", stack=stack)
        assert [r.state.name for r in downstream if r.state] == ["Completed"]
        assert downstream[0].parameters["project"] == project
        staging = stack.root / "home" / "xnat-staging"
        assert any(p.is_file() for p in staging.rglob("*")), "nothing staged"

        # the ingest runs of the other test emitted the same event: one staging run each
        ingested = [
            _experiment_id(rest, INGEST_PROJECT, f"SUBJ{k:02d}_MR1") for k in range(INGEST_RUNS)
        ]
        for experiment_id in ingested:
            runs = _wait(staged(experiment_id), timeout=90, what="ingest downstream", stack=stack)
            assert [r.state.name for r in runs if r.state] == ["Completed"], experiment_id

        # A repeated event for an already staged session is absorbed by the trigger (one run
        # per session per hour); an event for another session still starts a run.
        _event_cli(stack, server=server, experiment_id=archived, project=project, label="PRE01_MR1")
        seeded = _experiment_id(rest, INGEST_PROJECT, "SEED01_MR1")
        _event_cli(stack, server=server, experiment_id=seeded, project=INGEST_PROJECT, label="x")
        _wait(staged(seeded), timeout=90, what="run for the emitted event", stack=stack)
        assert len(staged(archived)()) == 1
        assert (
            len(
                [
                    r
                    for r in _runs_of(client, stage_id)
                    if r.parameters.get("sessions") == [archived]
                ]
            )
            == 1
        )


def test_serve_script_serves_the_same_deployments(deployed: Deployed) -> None:
    """deployments/serve.py turns a yaml deployment into a served one that runs runs."""
    stack = deployed.stack
    log = (stack.logs / "serve.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "deployments" / "serve.py"),
            "--only",
            "refresh-catalogs-nightly",
            "--limit",
            "2",
        ],
        cwd=stack.root,
        env=stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    stack.procs.append(("serve", proc))  # stopped with the stack if this test fails early
    name = "xnat-refresh-catalogs/refresh-catalogs-nightly"
    with stack.client_settings(), get_client(sync_client=True) as client:

        def served() -> bool:
            assert proc.poll() is None, stack.tail("serve")
            return client.read_deployment_by_name(name).work_pool_name is None

        _wait(served, timeout=60, what="deployment served by serve.py", stack=stack)
        deployment = client.read_deployment_by_name(name)
        (schedule,) = deployment.schedules
        assert getattr(schedule.schedule, "cron", None) == "30 2 * * *"
        assert deployment.parameters["credentials"] == deployed.credentials_block
        assert deployment.entrypoint == "xnat_prefect.flows.catalog.refresh_catalogs_flow"
        run_id = client.create_flow_run_from_deployment(
            deployment.id, parameters={"project": INGEST_PROJECT}
        ).id
        (run,) = _wait_final(client, [run_id], stack, timeout=90)
    assert run.state and run.state.is_completed(), stack.tail("serve")
    assert run.work_pool_name is None
