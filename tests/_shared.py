"""Helpers shared across test folders: raw-REST setup, Container Service commands, credentials.

Setup and checks here talk to the emulator with plain httpx and its control API, never through
the client or services under test, so a bug there cannot hide behind its own setup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from xnat_prefect.testing.server import XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

if TYPE_CHECKING:
    from xnat_prefect.blocks import XNATCredentials


def admin_credentials(emulator: XNATEmulator, *, max_retries: int) -> XNATCredentials:
    """Admin credentials on ``emulator`` with a 20 s timeout and ``max_retries`` retries."""
    from xnat_prefect.blocks import XNATCredentials  # Prefect: only the tests that need it

    return XNATCredentials(
        url=emulator.url,
        username="admin",
        password=SecretStr("admin"),
        timeout_seconds=20.0,
        max_retries=max_retries,
    )


def small_study(
    root: Path, *, project: str | None, subject: str, session: str, seed: int
) -> StudyManifest:
    """A synthetic study of 2 series with 2 instances each, routed to ``project``, in ``root``."""
    return generate_study(
        root,
        project=project,
        subject=subject,
        session=session,
        series=2,
        instances_per_series=2,
        seed=seed,
    )


def session_command(name: str, *, command_line: str | None = None) -> dict[str, Any]:
    """A Container Service command with one wrapper, ``<name>-session``, run on a session.

    Args:
        name: Command name; the image is ``xnat/<name>:1.0``.
        command_line: Its command line (default ``<name> #SESSION#``).

    Returns:
        The command's JSON body for ``POST /xapi/commands``.
    """
    return {
        "name": name,
        "version": "1.0",
        "image": f"xnat/{name}:1.0",
        "command-line": command_line or f"{name} #SESSION#",
        "inputs": [{"name": "session", "replacement-key": "#SESSION#"}],
        "xnat": [
            {
                "name": f"{name}-session",
                "contexts": ["xnat:imageSessionData"],
                "external-inputs": [{"name": "session", "type": "Session", "required": True}],
            }
        ],
    }


def install_command(
    rest: httpx.Client, command: dict[str, Any], project: str | None = "P1"
) -> tuple[int, int]:
    """Create ``command``, enable its first wrapper for the site (and ``project``).

    Returns:
        The command's ID and the wrapper's ID.
    """
    command_id = rest.post("/xapi/commands", json=command).json()
    wrapper_id = int(rest.get(f"/xapi/commands/{command_id}").json()["xnat"][0]["id"])
    assert rest.put(f"/xapi/wrappers/{wrapper_id}/enabled").status_code == 200
    if project:
        enabled = rest.put(f"/xapi/projects/{project}/wrappers/{wrapper_id}/enabled")
        assert enabled.status_code == 200
    return int(command_id), wrapper_id


def container_outcomes(emulator: XNATEmulator, table: dict[str, str]) -> None:
    """Set how the emulator's containers end (wrapper name or ``default`` -> outcome)."""
    reply = httpx.post(f"{emulator.url}/emulator/containers/outcomes", json=table)
    assert reply.status_code == 200, reply.text


@dataclass
class RestLab:
    """Raw-REST setup and checks against one emulator (no code under test)."""

    rest: httpx.Client
    emulator: XNATEmulator
    tmp_path: Path

    def project(self, project: str = "P1", *, code: int | None = None) -> str:
        """Create a project (and set its prearchive code when ``code`` is given)."""
        reply = self.rest.put(f"/data/projects/{project}")
        assert reply.status_code in (200, 201), reply.text
        if code is not None:
            reply = self.rest.put(f"/data/projects/{project}/prearchive_code/{code}")
            assert reply.status_code == 200, reply.text
        return project

    def rows(self, path: str, **params: str) -> list[dict[str, str]]:
        """The ``ResultSet.Result`` rows of a JSON listing that must answer 200."""
        reply = self.rest.get(path, params={"format": "json", **params})
        assert reply.status_code == 200, f"{path}: {reply.status_code} {reply.text[:200]}"
        rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
        return rows

    def prearchive(self, project: str | None = None) -> list[dict[str, str]]:
        """The prearchive rows of ``project`` (all projects when None)."""
        return self.rows(f"/data/prearchive/projects/{project}" if project else "/data/prearchive")

    def experiments(self, project: str = "P1") -> list[dict[str, str]]:
        """The experiment rows of ``project``."""
        return self.rows(f"/data/projects/{project}/experiments")

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``check`` until it returns something truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s")
