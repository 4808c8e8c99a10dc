"""The composite flows' fan-out on Dask (``executor="dask"``, the ``dask`` extra).

The tests that start Dask clusters are opt-in (about 80 s on a 2-CPU machine, over CI's budget
for one feature) and need the extra::

    pip install -e '.[test,dask]'
    XNAT_PREFECT_DASK=1 pytest -m dask tests/deployments/test_dask.py -s

Without ``XNAT_PREFECT_DASK=1`` they are deselected by the rule in ``conftest.py``; the two
tests without a cluster (the missing-extra error, pickling the progress reporter) always run.
``-s`` prints the measured numbers quoted in docs/deploying.md ("Fan-out on Dask"). The
LocalClusters here run their workers as separate processes, like a real cluster: tasks and their
arguments travel by pickle, and each worker process reaches the Prefect API and XNAT on its own.
Every cluster is closed by its handle (the ones ``fanout_runner`` starts by the runner's exit).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.flows import download_sessions, ingest_dicom
from xnat_prefect.flows._common import (
    FanoutExecutor,
    MissingExtraError,
    ProgressReporter,
    fanout_runner,
)
from xnat_prefect.tasks.limits import limit_name, set_limit
from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# This module is imported under a name Dask's worker processes cannot import: send its tasks
# by value. (The package's own tasks travel by reference: the workers import xnat_prefect.)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TASKS = 40
IMPORT_KEY = "POST /data/services/import"
#: ingest runs, in order: executor, and whether on the test's cluster (else a LocalCluster of
#: the run's own). The first run on the test's cluster meets worker processes that must import
#: Prefect and the package and log in first; the second finds them warm.
INGESTS: dict[str, tuple[FanoutExecutor, bool]] = {
    "threads": ("threads", False),
    "dask-cold": ("dask", True),
    "dask-warm": ("dask", True),
    "dask-own-cluster": ("dask", False),
}
SETTLE = {"stall_seconds": 15.0, "max_wait_seconds": 60.0, "poll_interval_seconds": 0.1}


# --- the runner factory -------------------------------------------------------------------------


@pytest.mark.dask
def test_fanout_runner_is_a_capped_thread_pool_or_a_dask_runner() -> None:
    from prefect_dask import DaskTaskRunner

    threads = fanout_runner(3)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    remote = fanout_runner(4, executor="dask", dask_address=" tcp://dask-scheduler:8786 ")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://dask-scheduler:8786"
    local = fanout_runner(4, executor="dask")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    kwargs = local.cluster_kwargs
    assert kwargs["processes"] is True and kwargs["n_workers"] <= len(os.sched_getaffinity(0))
    assert kwargs["n_workers"] * kwargs["threads_per_worker"] >= 4
    assert fanout_runner(1, executor="dask").cluster_kwargs["n_workers"] == 1
    with pytest.raises(InvalidInputError, match="executor='dask'"):
        fanout_runner(2, dask_address="tcp://dask-scheduler:8786")
    with pytest.raises(InvalidInputError, match="executor must be one of"):
        fanout_runner(2, executor="ray")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_workers"):
        fanout_runner(0, executor="dask")


def test_without_prefect_dask_the_flow_names_the_extra_before_any_work(
    prefect_harness: None,
    xnat_emulator: XNATEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # what an install without it sees
    with pytest.raises(MissingExtraError, match=r"pip install 'xnat-prefect\[dask\]'") as error:
        fanout_runner(2, executor="dask")
    assert isinstance(error.value, ImportError) and isinstance(error.value, InvalidInputError)
    credentials = XNATCredentials(url=xnat_emulator.url, username="admin", password="admin")
    xnat_emulator.reset_metrics()
    with pytest.raises(MissingExtraError, match="executor='threads'"):
        download_sessions(credentials, ["XNAT_E00001"], tmp_path / "out", executor="dask")
    assert not (tmp_path / "out").exists()
    assert xnat_emulator.metrics()["requests"] == {}  # not even a login


def test_a_progress_reporter_copy_pickles_and_leaves_the_artifact_to_the_flow(
    prefect_harness: None,
) -> None:
    @flow
    def report() -> tuple[ProgressReporter, ProgressReporter]:
        progress = ProgressReporter("dask-progress", total=4, description="t", min_interval=0)
        copy = cloudpickle.loads(cloudpickle.dumps(progress))
        copy.advance(4)  # a Dask worker's copy: counted there, never sent
        return progress, copy

    progress, copy = report()
    assert (progress.detached, copy.detached) == (False, True)
    assert (progress.done, copy.done) == (0, 4)
    only_it = ArtifactFilter(id=ArtifactFilterId(any_=[progress.artifact_id]))
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=only_it)
        assert artifact.data == 0.0
        progress.finish()
        (artifact,) = client.read_artifacts(artifact_filter=only_it)
        assert artifact.data == 100.0


# --- per-task overhead --------------------------------------------------------------------------


@task
def _whose_pid(number: int) -> int:
    return os.getpid() + 0 * number


@flow
def _fan_out(executor: FanoutExecutor) -> tuple[float, list[int]]:
    """TASKS no-op tasks through fanout_runner(4, executor); seconds once the runner is up."""
    with fanout_runner(4, executor=executor) as runner:
        runner.map(_whose_pid, {"number": [0]})[0].result()  # a LocalCluster starts here
        started = time.perf_counter()
        pids = [f.result() for f in runner.map(_whose_pid, {"number": list(range(TASKS))})]
        return time.perf_counter() - started, pids


@pytest.mark.dask
def test_per_task_overhead_threads_vs_a_local_cluster(prefect_harness: None) -> None:
    _fan_out("threads")  # warm the harness, the flow and the task
    started = time.perf_counter()
    threads, thread_pids = _fan_out("threads")
    threads_flow = time.perf_counter() - started
    started = time.perf_counter()
    dask, dask_pids = _fan_out("dask")  # fanout_runner's own LocalCluster, from max_workers
    dask_flow = time.perf_counter() - started
    print(
        f"\n{TASKS} no-op tasks, 4 at a time: threads {1000 * threads / TASKS:.0f} ms/task "
        f"(flow {threads_flow:.1f} s); dask LocalCluster {1000 * dask / TASKS:.0f} ms/task "
        f"(flow {dask_flow:.1f} s incl. starting and closing the cluster)"
    )
    assert set(thread_pids) == {os.getpid()}
    assert os.getpid() not in dask_pids and len(dask_pids) == TASKS


# --- ingest and download, threads vs dask ------------------------------------------------------


@pytest.fixture
def dask_client() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes x 2 threads, and a client on it; closed after."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as lc,
        # not the process's default client: prefect-dask would run every DaskTaskRunner here
        Client(lc, set_as_default=False) as client,
    ):
        yield client


def _md5s(files: list[Path]) -> Counter[str]:
    return Counter(hashlib.md5(path.read_bytes()).hexdigest() for path in files)


def _study(folder: Path, subject: str, seed: int) -> StudyManifest:
    return generate_study(
        folder / subject,
        project="P1",
        subject=subject,
        session=f"{subject}_MR1",
        series=4,
        instances_per_series=3,
        seed=seed,
    )


def _tasks_on_workers(client: Any, stream: Any, prefix: str) -> list[int]:
    """Pids of the Dask worker processes that ran tasks whose key starts with ``prefix``."""
    pids: dict[str, int] = client.run(os.getpid)
    return [pids[record["worker"]] for record in stream.data if record["key"].startswith(prefix)]


@pytest.mark.dask
def test_ingest_and_download_on_dask_match_threads(
    prefect_harness: None, xnat_emulator: XNATEmulator, dask_client: Any, tmp_path: Path
) -> None:
    from distributed import get_task_stream

    credentials = XNATCredentials(
        url=xnat_emulator.url, username="admin", password=SecretStr("admin"), timeout_seconds=20
    )
    with httpx.Client(base_url=xnat_emulator.url, auth=("admin", "admin")) as rest:
        assert rest.put("/data/projects/P1").status_code in (200, 201)
    studies = {name: _study(tmp_path, f"S_{name}", k) for k, name in enumerate(INGESTS)}
    set_limit(limit_name(credentials.server_key, "uploads"), 2)
    set_limit(limit_name(credentials.server_key, "downloads"), 2)
    # slower imports, so that the four batches overlap and the uploads limit has work to do
    xnat_emulator.add_fault(r"^POST /data/services/import", "latency", latency_ms=(200, 300))
    address = dask_client.scheduler_info()["address"]
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    with get_task_stream(dask_client) as stream:
        for name, (executor, on_cluster) in INGESTS.items():
            xnat_emulator.reset_metrics()
            started = time.perf_counter()
            results[name] = ingest_dicom(
                credentials,
                tmp_path / f"S_{name}",
                transport="parallel-zip",
                project="P1",
                subject=f"S_{name}",
                session=f"S_{name}_MR1",
                batches=4,
                max_workers=4,
                verify_checksums=True,
                executor=executor,
                dask_address=address if on_cluster else None,
                **SETTLE,
            )
            timings[f"ingest {name}"] = time.perf_counter() - started
            peak = xnat_emulator.metrics()["max_in_flight"].get(IMPORT_KEY, 0)
            assert 1 <= peak <= 2, (name, peak)  # the uploads limit held, in Dask workers too
    xnat_emulator.clear_faults()
    for name, result in results.items():
        assert result.verified and result.experiment_id, name
        assert result.files_sent == len(studies[name].files) == 12
        assert len(result.batches) == 4
        assert all(scan.md5_checked and scan.md5_mismatches == 0 for scan in result.scans)
    sent_by = _tasks_on_workers(dask_client, stream, "send_batch")
    assert len(sent_by) == 8 and os.getpid() not in sent_by, sent_by  # dask-cold, dask-warm

    sessions = [str(result.experiment_id) for result in results.values()]
    with get_task_stream(dask_client) as stream:
        for executor in ("threads", "dask"):
            started = time.perf_counter()
            done = download_sessions(
                credentials,
                sessions,
                tmp_path / f"out-{executor}",
                include_resources=False,
                executor=executor,
                dask_address=address if executor == "dask" else None,
            )
            timings[f"download {executor}"] = time.perf_counter() - started
            assert done.verified and not done.failed and done.files == 48, executor
            for name, manifest in studies.items():
                got = sorted((tmp_path / f"out-{executor}").glob(f"S_{name}_MR1/**/*.dcm"))
                assert _md5s(got) == _md5s(manifest.files), (executor, name)
    fetched_by = _tasks_on_workers(dask_client, stream, "download_one_session")
    assert len(fetched_by) == 4 and os.getpid() not in fetched_by, fetched_by
    print(
        "\nsame work, threads vs dask (LocalCluster 2 processes x 2 threads, started before): "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    )
