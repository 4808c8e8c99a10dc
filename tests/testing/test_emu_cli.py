"""``xnat-emulator serve``: every timing, the site ID and the fault seed from the command line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.cli import build_parser, timing_from

READY = re.compile(r"XNAT emulator ready at (http://\S+)")


def _codes(url: str) -> list[int]:
    fault = {"route": "GET /data/projects", "kind": "status", "status": 502, "rate": 0.5}
    assert httpx.post(f"{url}/emulator/faults", json=fault).status_code == 201
    with httpx.Client(base_url=url, timeout=10) as client:
        client.post("/data/JSESSION", auth=("admin", "admin"))
        return [client.get("/data/projects").status_code for _ in range(30)]


def test_parser_builds_the_timing() -> None:
    args = build_parser().parse_args(
        ["serve", "--sweep-interval-seconds", "0.5", "--job-run-seconds", "3",
         "--session-timeout-seconds", "60", "--job-polls", "2", "--archive-delay-seconds", "1"]
    )  # fmt: skip
    timing = timing_from(args)
    assert (timing.sweep_interval_seconds, timing.job_run_seconds) == (0.5, 3.0)
    assert (timing.session_timeout_seconds, timing.job_polls) == (60.0, 2)
    assert timing.archive_delay_seconds == 1.0 and timing.rebuild_quiet_seconds == 2.0
    assert timing_from(build_parser().parse_args(["serve"])).session_timeout_seconds is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--sweep-interval-seconds", "0"])


def test_serve_applies_timings_site_id_and_seed(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "xnat_prefect.testing.cli", "serve", "--port", "0", "--no-dicom",
        "--data-dir", str(tmp_path / "data"), "--site-id", "CLI", "--seed", "11",
        "--sweep-interval-seconds", "0.2", "--job-run-seconds", "0.7",
        "--session-timeout-seconds", "120", "--job-polls", "4",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout = process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()))
        reader.start()
        reader.join(30)
        match = READY.search(line[0] if line else "")
        assert match, f"no ready line: {line}"
        url = match.group(1)
        timing = httpx.get(f"{url}/emulator/timing").json()
        assert timing["sweep_interval_seconds"] == 0.2 and timing["job_run_seconds"] == 0.7
        assert timing["session_timeout_seconds"] == 120 and timing["job_polls"] == 4
        with httpx.Client(base_url=url, auth=("admin", "admin")) as admin:
            admin.put("/data/projects/P1")
            created = admin.put("/data/projects/P1/subjects/S1")
            assert created.text.startswith("CLI_S")
        served = _codes(url)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode == 0
    with XNATEmulator(tmp_path / "same-seed", seed=11, enable_dicom=False) as emu:
        assert _codes(emu.url) == served  # the fault draws follow --seed
