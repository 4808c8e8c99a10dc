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


@pytest.fixture(autouse=True)
def _private_ledger_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep upload ledgers of every test out of the user's ~/.cache."""
    monkeypatch.setenv("XNAT_PREFECT_LEDGER_DIR", str(tmp_path_factory.mktemp("ledger")))
