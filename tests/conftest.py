"""Shared fixtures: one Prefect test harness per test session (it takes ~9 s to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (ephemeral server + SQLite) for the whole test session.

    Yields:
        Nothing; flows and tasks run against it while it is active.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
