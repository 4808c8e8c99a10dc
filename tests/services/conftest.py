"""Fixtures for the service tests: clients on a fresh emulator and raw-REST seeding helpers.

Seeding goes through XNAT's own REST API with plain client calls (not the services under test),
so a service bug cannot hide behind its own setup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.testing.server import XNATEmulator


@pytest.fixture
def client(xnat_emulator: XNATEmulator) -> Iterator[XNATClient]:
    with XNATClient(xnat_emulator.url, "admin", "admin", max_retries=0) as xnat:
        yield xnat


@pytest.fixture
def bob(xnat_emulator: XNATEmulator) -> Iterator[XNATClient]:
    """A site user who is a member of no project."""
    xnat_emulator.add_user("bob", "pw")
    with XNATClient(xnat_emulator.url, "bob", "pw", max_retries=0) as xnat:
        yield xnat


@dataclass
class Seeder:
    """Creates projects, subjects, sessions, scans and files with raw REST calls."""

    client: XNATClient

    def project(self, project_id: str = "P1", **params: str) -> str:
        self.client.put(f"/data/projects/{project_id}", params=params or None)
        return project_id

    def subject(self, project: str, label: str, **params: str) -> str:
        response = self.client.put(f"/data/projects/{project}/subjects/{label}", params=params)
        assert response.status_code == 201, response.text
        return response.text.strip()

    def session(
        self,
        project: str,
        subject: str,
        label: str,
        xsi_type: str = "xnat:mrSessionData",
        **params: str,
    ) -> str:
        response = self.client.put(
            f"/data/projects/{project}/subjects/{subject}/experiments/{label}",
            params={"xsiType": xsi_type, **params},
        )
        assert response.status_code == 201, response.text
        return response.text.strip()

    def scan(
        self,
        session_id: str,
        scan_id: str,
        scan_type: str = "T1w",
        xsi_type: str = "xnat:mrScanData",
    ) -> str:
        self.client.put(
            f"/data/experiments/{session_id}/scans/{scan_id}",
            params={"xsiType": xsi_type, "type": scan_type},
        )
        return scan_id

    def file(self, parent: str, resource: str, name: str, data: bytes = b"payload") -> None:
        self.client.put(
            f"{parent}/resources/{resource}/files/{name}",
            params={"inbody": "true"},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )


@pytest.fixture
def seed(client: XNATClient) -> Seeder:
    return Seeder(client)


@pytest.fixture
def mr_session(seed: Seeder) -> Callable[..., str]:
    """Project P1 with subject SUB1 and a session (label given) holding scans 1 and 2."""
    seed.project("P1")
    seed.subject("P1", "SUB1")

    def make(label: str = "SUB1_MR1", scans: tuple[str, ...] = ("1", "2")) -> str:
        session_id = seed.session("P1", "SUB1", label, date="2024-01-31")
        for scan_id in scans:
            seed.scan(session_id, scan_id)
        return session_id

    return make
