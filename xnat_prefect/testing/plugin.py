"""pytest plugin (registered through the ``pytest11`` entry point): emulator fixtures.

Fixtures:
    xnat_emulator: a fresh emulator per test (boots in ~0.1 s), stopped afterwards.
    xnat_emulator_shared: one emulator for the whole test session.
    xnat_emulator_factory: a callable starting extra emulators (e.g. on a given data dir),
        all stopped at the end of the test.

Example:
    ```python
    def test_login(xnat_emulator):
        import httpx
        r = httpx.post(f"{xnat_emulator.url}/data/JSESSION", auth=("admin", "admin"))
        assert r.status_code == 200
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xnat_prefect.testing.config import Timing
from xnat_prefect.testing.server import XNATEmulator

FAST_TIMING: dict[str, float] = {
    "rebuild_quiet_seconds": 0.3,
    "sweep_interval_seconds": 0.05,
    "job_run_seconds": 0.3,
}


def _fast_timing() -> Timing:
    return Timing(
        rebuild_quiet_seconds=FAST_TIMING["rebuild_quiet_seconds"],
        sweep_interval_seconds=FAST_TIMING["sweep_interval_seconds"],
        job_run_seconds=FAST_TIMING["job_run_seconds"],
    )


@pytest.fixture
def xnat_emulator_factory() -> Iterator[Callable[..., XNATEmulator]]:
    """Start emulators on demand; every one is stopped when the test ends.

    Yields:
        ``factory(**kwargs) -> XNATEmulator`` (kwargs as for :class:`XNATEmulator`).
    """
    started: list[XNATEmulator] = []

    def factory(**kwargs: Any) -> XNATEmulator:
        kwargs.setdefault("timing", _fast_timing())
        emulator = XNATEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def xnat_emulator() -> Iterator[XNATEmulator]:
    """A fresh emulator with fast asynchronous timings, stopped after the test.

    Yields:
        The running emulator.
    """
    with XNATEmulator(timing=_fast_timing()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def xnat_emulator_shared() -> Iterator[XNATEmulator]:
    """One emulator shared by the whole test session (tests must not assume empty state).

    Yields:
        The running emulator.
    """
    with XNATEmulator(timing=_fast_timing()) as emulator:
        yield emulator
