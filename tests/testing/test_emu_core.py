"""Cross-cutting emulator behaviour: aliases, unknown routes, faults, metrics, persistence."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from xnat_prefect.testing import Timing, XNATEmulator


@contextmanager
def _login(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/data/JSESSION", auth=("admin", "admin")).status_code == 200
        yield client


def test_boots_and_stops_cleanly(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    emulator = XNATEmulator(tmp_path / "data").start()  # boot time: bench/emulator.py
    try:
        assert httpx.get(f"{emulator.url}/emulator/health").json()["status"] == "ok"
    finally:
        emulator.stop()
    time.sleep(0.1)
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if n.startswith("xnat-emulator")]


def test_rest_and_archive_aliases(xnat_emulator: XNATEmulator) -> None:
    with _login(xnat_emulator.url) as client:
        assert client.put("/data/projects/ALIAS1").status_code == 200
        for path in ("/REST/projects", "/data/archive/projects", "/data/projects/"):
            rows = client.get(path).json()["ResultSet"]["Result"]
            assert [r["ID"] for r in rows] == ["ALIAS1"]


def test_unknown_route_is_a_loud_404(xnat_emulator: XNATEmulator) -> None:
    with _login(xnat_emulator.url) as client:
        for path in ("/data/pipelines/jobs", "/data/audit", "/xapi/nothing/here"):
            reply = client.get(path)
            assert reply.status_code == 404
            assert "no route for GET" in reply.text and path in reply.text


def test_status_fault_fires_the_requested_number_of_times(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault(r"GET /data/projects$", "status", status=503, times=2)
    with _login(xnat_emulator.url) as client:
        codes = [client.get("/data/projects").status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    assert xnat_emulator.metrics()["faults"]["status"] == 2


def test_rate_limit_fault_sends_retry_after(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("/data/projects", "rate_limit", retry_after=2.5, times=1)
    with _login(xnat_emulator.url) as client:
        reply = client.get("/data/projects")
    assert reply.status_code == 429 and reply.headers["retry-after"] == "2.5"


def test_drop_fault_breaks_the_connection(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("/data/projects", "drop", times=1)
    with _login(xnat_emulator.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/data/projects")
        assert client.get("/data/projects").status_code == 200


def test_rate_limited_faults_are_probabilistic_and_seeded(tmp_path: Path) -> None:
    def run(seed: int) -> list[int]:
        with XNATEmulator(
            tmp_path / f"d{seed}-{time.monotonic_ns()}", seed=seed, enable_dicom=False
        ) as emu:
            emu.add_fault("GET /data/projects", "status", status=502, rate=0.3)
            with _login(emu.url) as client:
                return [client.get("/data/projects").status_code for _ in range(40)]

    first, second = run(7), run(7)
    assert first == second
    assert 3 <= first.count(502) <= 25


def test_latency_fault_delays(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("/data/projects", "latency", latency_ms=(150, 150))
    with _login(xnat_emulator.url) as client:
        started = time.perf_counter()
        client.get("/data/projects")
        assert time.perf_counter() - started >= 0.14


def test_error_body_fault_answers_200_with_error_text(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("/data/projects$", "error_body", body="Error: it broke", times=1)
    with _login(xnat_emulator.url) as client:
        reply = client.get("/data/projects")
    assert reply.status_code == 200 and reply.text == "Error: it broke"


def test_expire_session_fault_forces_401(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("/data/projects", "expire_session", times=1)
    with _login(xnat_emulator.url) as client:
        assert client.get("/data/projects").status_code == 401


def test_faults_and_timing_through_the_http_control_api(xnat_emulator: XNATEmulator) -> None:
    url = xnat_emulator.url
    rule = httpx.post(f"{url}/emulator/faults", json={"route": "x", "kind": "drop"}).json()
    assert rule["id"] >= 1
    assert len(httpx.get(f"{url}/emulator/faults").json()) == 1
    assert httpx.delete(f"{url}/emulator/faults/{rule['id']}").status_code == 200
    assert (
        httpx.post(f"{url}/emulator/faults", json={"route": "x", "kind": "bogus"}).status_code
        == 400
    )
    timing = httpx.put(f"{url}/emulator/timing", json={"job_run_seconds": 4}).json()
    assert timing["job_run_seconds"] == 4
    assert httpx.put(f"{url}/emulator/timing", json={"nope": 1}).status_code == 400


def test_metrics_track_peak_concurrency(xnat_emulator: XNATEmulator) -> None:
    # 1.5 s per request: the five overlap even when a loaded machine starts them unevenly
    xnat_emulator.add_fault("GET /data/projects$", "latency", latency_ms=(1500, 1500))
    xnat_emulator.reset_metrics()
    barrier = threading.Barrier(5)

    def call() -> None:
        barrier.wait()
        httpx.get(f"{xnat_emulator.url}/data/projects", auth=("admin", "admin"), timeout=10)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = xnat_emulator.metrics()
    assert metrics["requests"]["GET /data/projects"] == 5
    assert metrics["max_in_flight"]["GET /data/projects"] == 5


def test_state_survives_a_restart_with_the_same_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "xnat"
    with XNATEmulator(data, enable_dicom=False, timing=Timing()) as emu:
        with _login(emu.url) as client:
            assert client.put("/data/projects/KEEP", params={"name": "Kept"}).status_code == 200
        emu.add_user("bob", "pw")
    with XNATEmulator(data, enable_dicom=False) as emu:
        with _login(emu.url) as client:
            project = client.get("/data/projects/KEEP", params={"format": "json"}).json()
            assert project["items"][0]["data_fields"]["name"] == "Kept"
        assert httpx.get(f"{emu.url}/xapi/users/username", auth=("bob", "pw")).text == "bob"


def test_kept_alive_requests_are_fast(xnat_emulator: XNATEmulator) -> None:
    """Nagle's algorithm must be off: a kept-alive round trip is ~1 ms, not ~40 ms."""
    with _login(xnat_emulator.url) as client:
        client.get("/xapi/users/username")
        times = []
        for _ in range(21):
            started = time.perf_counter()
            client.get("/xapi/users/username")
            times.append(time.perf_counter() - started)
    # Nagle's delayed-ACK stall is ~40 ms on every request; the median ignores a loaded
    # machine's occasional slow one.
    median = statistics.median(times)
    assert median < 0.03, f"{median * 1000:.1f} ms median per kept-alive request"


def test_invalid_fault_regex_is_a_400(xnat_emulator: XNATEmulator) -> None:
    reply = httpx.post(f"{xnat_emulator.url}/emulator/faults", json={"route": "(", "kind": "drop"})
    assert reply.status_code == 400 and "regex" in reply.text


def test_only_the_applied_fault_spends_its_budget(xnat_emulator: XNATEmulator) -> None:
    xnat_emulator.add_fault("GET /data/projects$", "status", status=503, times=1)
    xnat_emulator.add_fault("GET /data/projects$", "status", status=502, times=1)
    with _login(xnat_emulator.url) as client:
        codes = [client.get("/data/projects").status_code for _ in range(3)]
    assert codes == [503, 502, 200]


def test_emulator_on_ipv6_loopback(tmp_path: Path) -> None:
    import socket

    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 support at all")
    with XNATEmulator(tmp_path / "v6", host="::1", enable_dicom=False) as emulator:
        assert emulator.url.startswith("http://[::1]:")
        assert httpx.get(f"{emulator.url}/emulator/health").status_code == 200


def test_failed_start_releases_everything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        emulator = XNATEmulator(host="127.0.0.1", port=port, enable_dicom=False)
        with pytest.raises(OSError):
            emulator.start()
        assert emulator.state is None
        assert not emulator.data_dir.exists()
