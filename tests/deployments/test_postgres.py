"""The same N concurrent deployment runs with the server on SQLite and on PostgreSQL.

On demand, not in CI (needs the PostgreSQL 15 binaries; ~5 minutes)::

    XNAT_PREFECT_POSTGRES=1 pytest -m postgres tests/deployments -s

Without ``XNAT_PREFECT_POSTGRES=1`` the test is deselected by the rule in ``conftest.py``.
The PostgreSQL cluster is private: ``initdb`` in a temporary directory (as ``nobody`` when the
tests run as root, since initdb refuses root), ``pg_ctl start`` on a free loopback port,
``pg_ctl stop`` and removal at the end. The numbers printed go to docs/performance.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(1200)]

IMPORT_KEY = "POST /data/services/import"
RUNS = 8
BATCHES = 4
UPLOAD_SLOTS = 3
ROUNDS = 3


def _summary(elapsed: float, runs: list[Any]) -> dict[str, float]:
    lags = [
        (r.start_time - r.expected_start_time).total_seconds()
        for r in runs
        if r.start_time and r.expected_start_time
    ]
    durations = [r.total_run_time.total_seconds() for r in runs]
    return {
        "wall": elapsed,
        "lag_median": statistics.median(lags),
        "lag_max": max(lags),
        "run_median": statistics.median(durations),
        "run_max": max(durations),
    }


def test_n_concurrent_runs_on_sqlite_and_postgres(
    stack_factory: Callable[..., Any],
    deploy: Callable[..., Any],
    postgres_cluster: Any,
) -> None:
    results: dict[str, list[dict[str, float]]] = {}
    locked: dict[str, int] = {}
    for backend, url in (("sqlite", None), ("postgresql", postgres_cluster.url)):
        stack = stack_factory(f"{backend}-stack", database_url=url)
        with deploy(stack, worker_limit=RUNS // 2) as deployed:
            for round_ in range(ROUNDS):
                elapsed, runs, metrics = deployed.ingest_concurrently(
                    RUNS,
                    batches=BATCHES,
                    upload_slots=UPLOAD_SLOTS,
                    prefix=f"R{round_}S",
                    emit_events=False,  # no downstream runs competing for the workers
                    timeout=600,
                )
                states = {r.name: r.state.name for r in runs if r.state}
                assert all(r.state and r.state.is_completed() for r in runs), states
                assert metrics["requests"][IMPORT_KEY] == RUNS * BATCHES
                assert 1 <= metrics["max_in_flight"][IMPORT_KEY] <= UPLOAD_SLOTS
                results.setdefault(backend, []).append(_summary(elapsed, runs))
            locked[backend] = stack.tail("server", 1_000_000).count("database is locked")
        if url:  # the runs really went through PostgreSQL
            assert int(postgres_cluster.query("select count(*) from flow_run")) >= RUNS * ROUNDS
        else:
            assert (stack.root / "prefect-home" / "prefect.db").is_file()
    print(f"\n{RUNS} concurrent ingest deployment runs ({BATCHES} batches each, uploads limit")
    print(f"{UPLOAD_SLOTS}), 2 process workers x {RUNS // 2} runs, {ROUNDS} rounds per backend:")
    print(f"  'database is locked' lines in the server logs: {locked}")
    for backend, rounds in results.items():
        for number, row in enumerate(rounds, start=1):
            print(
                f"  {backend:10s} round {number}: all done in {row['wall']:6.1f} s; "
                f"start lag median {row['lag_median']:5.1f} s max {row['lag_max']:5.1f} s; "
                f"run time median {row['run_median']:5.1f} s max {row['run_max']:5.1f} s"
            )
