"""Fan-out on a DaskTaskRunner (optional ``prefect-dask``): overhead per task, and a download.

On demand, not in CI (``prefect-dask`` is not a dependency of the package)::

    pip install prefect-dask
    XNAT_PREFECT_DASK=1 pytest -m dask tests/deployments -s

Without ``XNAT_PREFECT_DASK=1`` these tests are deselected by the rule in ``conftest.py``.
The LocalCluster runs its workers as separate processes, like a real cluster: tasks and their
arguments travel by cloudpickle, and each worker process reaches the Prefect API and XNAT on
its own.
"""

from __future__ import annotations

import io
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped
from pydantic import SecretStr

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.tasks.downloads import download_session
from xnat_prefect.tasks.limits import limit_name, set_limit, xnat_slot
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import generate_study

pytestmark = [pytest.mark.dask, pytest.mark.slow, pytest.mark.timeout(300)]

# This module is imported under a name Dask's worker processes cannot import: send its tasks
# by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TASKS = 60
CLUSTER = {"n_workers": 2, "threads_per_worker": 2, "processes": True}


def _dask_runner(**cluster: Any) -> Any:
    from prefect_dask import DaskTaskRunner  # the optional extra

    return DaskTaskRunner(cluster_kwargs={**CLUSTER, **cluster})


@task
def _noop(number: int) -> int:
    return number


def _fan_out(runner: Any) -> tuple[float, float]:
    """Seconds for the whole flow, and for TASKS mapped no-op tasks inside it."""

    @flow(task_runner=runner)
    def fan_out() -> float:
        started = time.perf_counter()
        total = sum(f.result() for f in _noop.map(range(TASKS)))
        assert total == TASKS * (TASKS - 1) // 2
        return time.perf_counter() - started

    started = time.perf_counter()
    inner = fan_out()
    return time.perf_counter() - started, inner


def test_per_task_overhead_dask_vs_threads(prefect_harness: None) -> None:
    _fan_out(ThreadPoolTaskRunner(max_workers=4))  # warm the harness and the task
    threads_total, threads = _fan_out(ThreadPoolTaskRunner(max_workers=4))
    dask_total, dask = _fan_out(_dask_runner())
    print(
        f"\n{TASKS} no-op tasks, 4 at a time: ThreadPoolTaskRunner {1000 * threads / TASKS:.0f} "
        f"ms/task (flow {threads_total:.1f} s); DaskTaskRunner LocalCluster 2 processes x 2 "
        f"threads {1000 * dask / TASKS:.0f} ms/task (flow {dask_total:.1f} s incl. the cluster)"
    )
    assert dask_total > dask and threads_total > threads


@task(name="Download a session under the downloads limit")
def fetch_session(credentials: XNATCredentials, experiment_id: str, out: str) -> int:
    """One session per Dask task, holding a slot of the server's ``downloads`` limit."""
    with xnat_slot(credentials.server_key, "downloads"):
        summary = download_session.fn(credentials, experiment_id, Path(out), verify=True)
    assert summary.success and summary.verified, summary.errors
    return int(summary.downloaded)


@flow(name="stage-sessions-on-dask")
def stage_sessions_on_dask(credentials: XNATCredentials, sessions: list[str], out: str) -> int:
    """Download sessions in parallel on the flow's task runner (here a Dask cluster)."""
    futures = fetch_session.map(unmapped(credentials), sessions, unmapped(out))
    return sum(f.result() for f in futures)


def _archive_study(rest: httpx.Client, folder: Path, subject: str, seed: int) -> tuple[str, int]:
    manifest = generate_study(
        folder, project="P1", subject=subject, session=f"{subject}_MR1", series=2, seed=seed
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in manifest.files:
            archive.write(path, path.relative_to(folder).as_posix())
    reply = rest.post(
        "/data/services/import",
        params={
            "import-handler": "DICOM-zip",
            "project": "P1",
            "subject": subject,
            "session": f"{subject}_MR1",
            "dest": "/archive/projects/P1",
        },
        content=buffer.getvalue(),
        headers={"Content-Type": "application/zip"},
    )
    assert reply.status_code == 200, reply.text
    rows = rest.get("/data/projects/P1/experiments", params={"format": "json"}).json()
    (row,) = [r for r in rows["ResultSet"]["Result"] if r["label"] == f"{subject}_MR1"]
    return str(row["ID"]), len(manifest.files)


def test_download_fan_out_on_a_local_cluster(prefect_harness: None, tmp_path: Path) -> None:
    with XNATEmulator() as xnat, httpx.Client(base_url=xnat.url, auth=("admin", "admin")) as rest:
        assert rest.put("/data/projects/P1").status_code in (200, 201)
        archived = [_archive_study(rest, tmp_path / f"s{k}", f"S{k}", k) for k in range(4)]
        credentials = XNATCredentials(url=xnat.url, username="admin", password=SecretStr("admin"))
        set_limit(limit_name(credentials.server_key, "downloads"), 2)
        started = time.perf_counter()
        files = stage_sessions_on_dask.with_options(task_runner=_dask_runner())(
            credentials, [experiment for experiment, _ in archived], str(tmp_path / "out")
        )
        elapsed = time.perf_counter() - started
    print(f"\n4 sessions downloaded by 4 Dask tasks on a LocalCluster in {elapsed:.1f} s")
    assert files == sum(count for _, count in archived)
    for k in range(4):
        assert list((tmp_path / "out").glob(f"S{k}_MR1/**/*.dcm")), k
