"""Helpers shared by the emulator's route tests (real sockets, plain httpx)."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from xnat_prefect.testing import XNATEmulator

IMPORT = "/data/services/import"
ZIP = {"Content-Type": "application/zip"}


@contextmanager
def logged_in(
    emu: XNATEmulator, login: str = "admin", password: str = "admin", *, timeout: float = 10
) -> Iterator[httpx.Client]:
    """A Basic-auth client on the emulator."""
    with httpx.Client(base_url=emu.url, auth=(login, password), timeout=timeout) as client:
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


def create_projects(client: httpx.Client, *names: str) -> None:
    """Create each named project (each PUT must answer 200)."""
    for name in names:
        assert client.put(f"/data/projects/{name}").status_code == 200


def coded_project(client: httpx.Client, project: str, *, code: int) -> None:
    """Create ``project`` with prearchive code ``code`` (0 prearchive, 4 auto-archive)."""
    assert client.put(f"/data/projects/{project}").status_code == 200
    assert client.put(f"/data/projects/{project}/prearchive_code/{code}").status_code == 200


def add_member(emu: XNATEmulator, client: httpx.Client, project: str, role: str = "member") -> None:
    """Create site user bob (password ``pw``) and add him to ``project`` in ``role``."""
    emu.add_user("bob", "pw")
    assert client.put(f"/data/projects/{project}/users/{role}/bob").status_code == 200


def result_rows(reply: httpx.Response) -> list[dict[str, str]]:
    """The ``ResultSet.Result`` rows of a 200 JSON listing."""
    assert reply.status_code == 200, reply.text
    found: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
    return found


def h3(reply: httpx.Response) -> str:
    """The ``<h3>`` message of an XNAT HTML error page."""
    found = re.search(r"<h3>(.*)</h3>", reply.text)
    assert found, reply.text
    return found.group(1)


def first_item(client: httpx.Client, url: str) -> dict[str, Any]:
    """The first item of a 200 ``format=json`` document."""
    reply = client.get(url, params={"format": "json"})
    assert reply.status_code == 200, reply.text
    item: dict[str, Any] = reply.json()["items"][0]
    return item


def workflow_fields(client: httpx.Client, wf_id: str) -> dict[str, Any]:
    """The ``data_fields`` of workflow ``wf_id``'s own document."""
    doc = client.get(f"/data/workflows/{wf_id}", params={"format": "json"}).json()
    fields: dict[str, Any] = doc["items"][0]["data_fields"]
    return fields


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``check`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def zip_files(files: Iterable[Path], root: Path) -> bytes:
    """A zip of ``files`` named by their paths below ``root``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def import_zip(emu: XNATEmulator, client: httpx.Client, files: Iterable[Path], root: Path) -> str:
    """POST ``files`` as one zip to the import service, wait until idle; the reply's URI."""
    reply = client.post(IMPORT, content=zip_files(files, root), headers=ZIP)
    assert reply.status_code == 200, reply.text
    assert emu.wait_idle(10)
    return reply.text.strip()
