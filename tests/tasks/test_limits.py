from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client

from xnat_prefect.tasks.limits import ensure_limit, limit_name, set_limit, xnat_slot


def test_limit_names_are_safe_for_prefect() -> None:
    assert limit_name("XNAT.example.org:8443", "uploads") == "xnat:xnat.example.org:8443:uploads"
    assert "/" not in limit_name("a/b c", "api")


def test_missing_limit_is_created_with_default(prefect_harness: None) -> None:
    name = limit_name("created.example:1", "uploads")
    ensure_limit(name, 3)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == 3
    with pytest.raises(ValueError, match="at least 1 slot"):
        ensure_limit("xnat:x:bad", 0)


def test_slots_bound_parallel_work(prefect_harness: None) -> None:
    server = "bounded.example:1"
    set_limit(limit_name(server, "uploads"), 2)
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def work() -> None:
        nonlocal in_flight, peak
        with xnat_slot(server, "uploads", timeout_seconds=60):
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.3)
            with lock:
                in_flight -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2
