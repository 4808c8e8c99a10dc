"""Route modules of the emulator, one per area of XNAT's REST API.

Each module defines ``ROUTES`` (a list of :class:`~xnat_prefect.testing.http.Route`) and may define
``SCHEMA`` (extra ``CREATE TABLE IF NOT EXISTS`` statements) and ``tick(state) -> bool``
(background work run by the sweeper; returns True while work is pending).
Order matters: earlier modules' routes win when two templates match the same path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from xnat_prefect.testing.http import Route
from xnat_prefect.testing.state import Tick

MODULE_NAMES: tuple[str, ...] = (
    "control",
    "auth",
    "subjects",
    "experiments",
    "scans",
    "resources",
    "files",
    "catalog",
    "imports",
    "prearchive",
    "users",
    "siteconfig",
    "workflows",
    "pipelines",
    "containers",
    "dicomscp",
    "audit",
    "schemas",
    "projects",
)

MODULES: tuple[ModuleType, ...] = tuple(
    importlib.import_module(f"{__name__}.{name}") for name in MODULE_NAMES
)


def all_routes() -> list[Route]:
    """Every route of every module, in order.

    Returns:
        The routes.
    """
    return [r for module in MODULES for r in getattr(module, "ROUTES", [])]


def all_schemas() -> list[str]:
    """Every module's extra table definitions.

    Returns:
        The SQL scripts.
    """
    return [str(getattr(module, "SCHEMA", "")) for module in MODULES]


def all_ticks() -> list[Tick]:
    """Every module's background work function.

    Returns:
        The functions.
    """
    return [module.tick for module in MODULES if hasattr(module, "tick")]
