"""Routes: subjects (to be implemented)."""

from __future__ import annotations

from xnat_prefect.testing.http import Route

ROUTES: list[Route] = []
