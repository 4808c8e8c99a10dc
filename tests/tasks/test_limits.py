from __future__ import annotations

import math
import pickle
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from xnat_prefect.errors import is_transient
from xnat_prefect.tasks import limits
from xnat_prefect.tasks.limits import (
    DEFAULT_SLOT_TIMEOUT_SECONDS,
    ENV_SLOT_TIMEOUT,
    SlotTimeoutError,
    ensure_limit,
    limit_name,
    set_limit,
    slot_timeout_seconds,
    xnat_slot,
)


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


def test_waiting_for_taken_slots_fails_naming_the_limit_and_the_fix(
    prefect_harness: None,
) -> None:
    server = "leaked.example:1"
    name = limit_name(server, "uploads")
    set_limit(name, 1)
    started = time.monotonic()
    with (
        xnat_slot(server, "uploads"),  # what a killed run leaves taken
        pytest.raises(SlotTimeoutError) as caught,
        xnat_slot(server, "uploads", timeout_seconds=1),
    ):
        pytest.fail("a second slot of a 1-slot limit was granted")
    assert time.monotonic() - started < 30
    error = caught.value
    message = str(error)
    assert f"'{name}'" in message and "within 1 s" in message and "1 of 1 slots taken" in message
    assert f"prefect gcl update {name} --active-slots 0" in message
    assert f"prefect gcl inspect {name}" in message and ENV_SLOT_TIMEOUT in message
    assert (error.limit, error.timeout_seconds) == (name, 1.0)
    assert isinstance(error, TimeoutError) and not is_transient(error)  # no task retries
    again = pickle.loads(pickle.dumps(error))  # Prefect stores task exceptions
    assert (str(again), again.limit) == (message, name)
    with xnat_slot(server, "uploads", timeout_seconds=5):
        pass  # the slot was released


def test_the_default_wait_comes_from_the_environment(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert slot_timeout_seconds(None) == DEFAULT_SLOT_TIMEOUT_SECONDS
    assert slot_timeout_seconds(math.inf) is None
    monkeypatch.setenv(ENV_SLOT_TIMEOUT, "inf")
    assert slot_timeout_seconds(None) is None
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv(ENV_SLOT_TIMEOUT, bad)
        with pytest.raises(ValueError, match=f"{ENV_SLOT_TIMEOUT}='{bad}' must be a number"):
            slot_timeout_seconds(None)
    with pytest.raises(ValueError, match="timeout_seconds=0 must be"):
        slot_timeout_seconds(0)
    server = "env-timeout.example:1"
    set_limit(limit_name(server, "downloads"), 1)
    monkeypatch.setenv(ENV_SLOT_TIMEOUT, "1")
    with (
        xnat_slot(server, "downloads"),
        pytest.raises(SlotTimeoutError, match="within 1 s"),
        xnat_slot(server, "downloads"),
    ):
        pytest.fail("a second slot of a 1-slot limit was granted")


def test_a_timeout_of_the_work_itself_is_not_a_slot_timeout(prefect_harness: None) -> None:
    server = "work-timeout.example:1"
    with (
        pytest.raises(TimeoutError, match="the work timed out") as caught,
        xnat_slot(server, "api", timeout_seconds=5),
    ):
        raise TimeoutError("the work timed out")
    assert not isinstance(caught.value, SlotTimeoutError)


def test_slots_are_short_renewed_leases(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real = limits.concurrency

    def spy(*args: Any, **kwargs: Any) -> AbstractContextManager[None]:
        seen.append(kwargs)
        return real(*args, **kwargs)  # the real acquisition against the harness

    monkeypatch.setattr(limits, "concurrency", spy)
    with xnat_slot("lease.example:1", "catalog"):
        pass
    [kwargs] = seen
    assert kwargs["lease_duration"] == 60  # Prefect renews it every 45 s while we live
    assert kwargs["timeout_seconds"] == DEFAULT_SLOT_TIMEOUT_SECONDS
    assert kwargs["strict"] is True and kwargs["raise_on_lease_renewal_failure"] is False
    with (
        pytest.raises(ValueError, match="shortest lease"),
        xnat_slot("lease.example:1", "catalog", lease_seconds=30),
    ):
        pass
