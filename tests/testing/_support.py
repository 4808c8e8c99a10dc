"""Helpers shared by the emulator's workflow, pipeline and container tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from xnat_prefect.testing import XNATEmulator


@contextmanager
def logged_in(
    emu: XNATEmulator, login: str = "admin", password: str = "admin"
) -> Iterator[httpx.Client]:
    """A Basic-auth client on the emulator."""
    with httpx.Client(base_url=emu.url, auth=(login, password), timeout=10) as client:
        yield client


def make_experiment(client: httpx.Client, project: str = "P1") -> str:
    """Create project, subject S1 and MR session E1 over REST; return the session's ID."""
    client.put(f"/data/projects/{project}")
    reply = client.put(
        f"/data/projects/{project}/subjects/S1/experiments/E1",
        params={"xsiType": "xnat:mrSessionData"},
    )
    assert reply.status_code in (200, 201) and reply.text.strip(), reply.text
    return reply.text.strip()
