"""Fixtures of the emulator route tests (helpers live in ``_support.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.testing._support import logged_in
from xnat_prefect.testing import XNATEmulator


@pytest.fixture
def client(xnat_emulator: XNATEmulator) -> Iterator[httpx.Client]:
    """An admin client on the test's emulator."""
    with logged_in(xnat_emulator, timeout=30) as c:
        yield c
