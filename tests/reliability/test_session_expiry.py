"""Suite 2 - session expiry: JSESSIONs die twice a second during a long transfer and a long wait.

A thread calls ``XNATEmulator.expire_sessions()`` every ``EVERY`` (0.5) seconds (XNAT's idle
timeout or a restart, scaled down). The flows must finish with exactly one re-login per expiry
for each client that is still working: the pipeline wait polls through one shared client, so
its ``login_count`` is 1 + the expiries it lived through; the transfer uses one client per
batch thread plus the shared one, so its re-logins are bounded by the sessions the expiries
killed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests._shared import container_outcomes, install_command, session_command
from tests.reliability._support import (
    QUIET_SECONDS,
    Inspector,
    record_figures,
)
from xnat_prefect.blocks import XNATCredentials
from xnat_prefect.flows.ingest import ingest_dicom
from xnat_prefect.flows.pipelines import run_pipeline_and_wait
from xnat_prefect.testing.server import XNATEmulator

EVERY = 0.5
COMMAND = session_command("slowtool")


class Expirer:
    """Expire every HTTP session every ``every`` seconds until stopped (joined by its handle)."""

    def __init__(self, emulator: XNATEmulator, every: float) -> None:
        self.emulator = emulator
        self.every = every
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expirer", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.killed.append(len(self.emulator.expire_sessions()))

    def __enter__(self) -> Expirer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def expiries(self) -> int:
        """Expiries that killed at least one session."""
        return sum(1 for n in self.killed if n)


def _logins(emulator: XNATEmulator) -> int:
    return int(emulator.metrics()["logins"])


@pytest.mark.slow
def test_long_pipeline_wait_relogs_once_per_expiry(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    lab.project("P1")
    reply = lab.rest.put(
        "/data/projects/P1/subjects/S1/experiments/S1_MR1", params={"xsiType": "xnat:mrSessionData"}
    )
    session = reply.text.strip()
    install_command(lab.rest, COMMAND)
    container_outcomes(lab.emulator, {})
    run_seconds = 6 * EVERY + 0.5
    lab.emulator.set_timing(job_run_seconds=run_seconds)
    shared = creds.shared_client()  # the client every task of the flow uses
    before_count = shared.login_count
    before = _logins(lab.emulator)
    with Expirer(lab.emulator, EVERY) as expirer:
        run = run_pipeline_and_wait(
            creds,
            "slowtool-session",
            [session],
            max_wait_seconds=60,
            poll_interval_seconds=0.1,
        )
        time.sleep(0.01)
    relogins = shared.login_count - before_count
    server_logins = _logins(lab.emulator) - before
    assert run.succeeded == [session]
    assert expirer.expiries >= 5
    # one re-login per expiry the waiting client lived through (the last may come after it ended)
    assert expirer.expiries - 1 <= relogins <= expirer.expiries
    assert server_logins == relogins  # nobody else logged in, and no login storm
    record_figures(
        "expiry-pipeline-wait",
        wait_seconds=run_seconds,
        expiries=expirer.expiries,
        relogins=relogins,
        server_logins=server_logins,
    )


@pytest.mark.slow
def test_long_transfer_relogs_at_most_once_per_expiry_and_client(
    prefect: None, creds: XNATCredentials, lab: Inspector
) -> None:
    lab.project("P1")
    lab.emulator.set_timing(rebuild_quiet_seconds=QUIET_SECONDS)
    folder, manifest = lab.study()
    # a long transfer: every import waits 50-150 ms, 4 batch threads
    lab.emulator.add_fault(r"^POST /data/services/import", "latency", latency_ms=(50, 150))
    shared = creds.shared_client()
    before_count = shared.login_count
    lab.emulator.reset_metrics()
    with Expirer(lab.emulator, EVERY) as expirer:
        result = ingest_dicom(
            creds,
            str(folder),
            transport="gradual",
            project="P1",
            subject="SUBJ01",
            session="SUBJ01_MR1",
            batches=4,
            stall_seconds=60,
            max_wait_seconds=300,
            poll_interval_seconds=0.2,
        )
    metrics = lab.emulator.metrics()
    lab.emulator.clear_faults()
    server_logins = int(metrics["logins"])
    # every batch thread's client logs in once and logs out (DELETE /data/JSESSION) when done
    clients = metrics["requests"].get("DELETE /data/JSESSION", 0)
    relogins = server_logins - clients
    assert result.verified and result.experiment_id
    archived = lab.archived(result.experiment_id)
    assert Counter(archived.sop_uids) == Counter(manifest.all_sop_uids)
    assert expirer.expiries >= 3
    assert 1 <= relogins <= sum(expirer.killed)  # at most one per killed session
    shared_relogins = shared.login_count - before_count
    assert 1 <= shared_relogins <= expirer.expiries
    record_figures(
        "expiry-transfer",
        files=len(manifest.files),
        expiries=expirer.expiries,
        sessions_killed=sum(expirer.killed),
        clients=clients,
        relogins=relogins,
        shared_client_relogins=shared_relogins,
        server_logins=server_logins,
        duration_seconds=result.duration_seconds,
    )
