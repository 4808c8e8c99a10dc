"""Catalog refresh: ``POST /data/services/refresh/catalog``.

Reconciles resource catalogs (the ``files`` table) with the bytes on disk, the way XNAT's
``RefreshCatalog`` service does after files were put into the archive behind its back:

* ``resource=`` (repeatable) archive paths: ``/archive/projects/P[/subjects/S[/experiments/E]]``,
  ``/archive/experiments/ID[/scans/1]``, each optionally ending ``/resources/{label}``; a
  leading ``/data`` or ``/REST`` is dropped and the rest must start with ``/archive`` (400);
  unknown items or resources → 404. An experiment path covers its scan resources too.
* ``options=append,checksum,delete,populateStats`` (comma list) or the same names as boolean
  parameters; none given means all of them (``checksum`` only when site checksums are on).
  ``append`` catalogs files found on disk, ``delete`` drops entries whose file is gone,
  ``checksum`` fills missing MD5 digests, ``populateStats`` recomputes file count and size.

The refresh is synchronous: 200 with an empty body; 403 without edit permission.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route
from xnat_prefect.testing.routes._cascade import resource_dir
from xnat_prefect.testing.routes._catalogs import refresh_stats
from xnat_prefect.testing.routes._resources import (
    ResourceInfo,
    candidates,
    require_parent_right,
    resolve_parent,
    select_resources,
)
from xnat_prefect.testing.routes._upload import checksums_on, md5_of
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import now_text

OPERATIONS = {
    "append": "append",
    "checksum": "checksum",
    "delete": "delete",
    "populatestats": "populateStats",
}
_LEVELS = {
    "projects": "project",
    "subjects": "subject",
    "experiments": "experiment",
    "scans": "scan",
    "resources": "resource",
}
_ORDER = ("project", "subject", "experiment", "scan", "resource")


def parse_archive_uri(value: str) -> dict[str, str]:
    """Split an archive data URI into its item parts.

    Args:
        value: e.g. ``/data/archive/experiments/XNAT_E00001/scans/1/resources/DICOM``.

    Returns:
        ``project``/``subject``/``experiment``/``scan``/``resource`` parts present in the URI.

    Raises:
        HTTPError: 400 when the URI is not an archive path XNAT can parse.
    """
    text = value.strip()
    for prefix in ("/data", "/REST"):
        if text == prefix or text.startswith(prefix + "/"):
            text = text[len(prefix) :]
            break
    if text != "/archive" and not text.startswith("/archive/"):
        raise HTTPError(
            400,
            f"Invalid data URI {value!r}: it must start with /archive "
            "(e.g. /archive/experiments/ID).",
        )
    segments = [s for s in text[len("/archive") :].split("/") if s]
    if not segments or len(segments) % 2:
        raise HTTPError(400, f"Invalid data URI {value!r}: expected /archive/<level>/<id>/...")
    parts: dict[str, str] = {}
    last = -1
    for level, ident in zip(segments[::2], segments[1::2], strict=True):
        key = _LEVELS.get(level)
        if key is None or _ORDER.index(key) <= last:
            raise HTTPError(400, f"Invalid data URI {value!r}: unexpected segment {level!r}.")
        last = _ORDER.index(key)
        parts[key] = ident
    if "scan" in parts and "experiment" not in parts:
        raise HTTPError(400, f"Invalid data URI {value!r}: scans live below an experiment.")
    if parts.keys() <= {"resource"}:
        raise HTTPError(400, f"Invalid data URI {value!r}: no project, subject or experiment.")
    return parts


def _operations(req: EmuRequest) -> set[str]:
    chosen: set[str] = set()
    for value in req.args("options"):
        for token in (t.strip() for t in value.split(",")):
            if not token:
                continue
            name = OPERATIONS.get(token.lower())
            if name is None:
                raise HTTPError(
                    400,
                    f"Unknown catalog refresh option {token!r}; "
                    "use append, checksum, delete, populateStats.",
                )
            chosen.add(name)
    chosen.update(name for name in OPERATIONS.values() if req.flag(name))
    if not chosen:
        chosen = set(OPERATIONS.values())
        if not checksums_on(req.state):
            chosen.discard("checksum")
    return chosen


def _targets(req: EmuRequest, value: str) -> list[ResourceInfo]:
    parts = parse_archive_uri(value)
    parent = resolve_parent(req, parts, write=False)
    require_parent_right(req, "edit", parent)
    parent.include_scans = parent.kind == "experiment"
    label = parts.get("resource")
    if label is None:
        return candidates(req.state, parent)
    found = select_resources(req, parent, label, anywhere=False)
    if not found:
        raise HTTPError(404, f"Unable to find resource {label} at {value}")
    return found


def refresh_resource(state: EmulatorState, resource_id: int, operations: set[str]) -> None:
    """Apply catalog refresh operations to one resource.

    Args:
        state: Emulator state.
        resource_id: The resource.
        operations: Any of ``append``, ``checksum``, ``delete``, ``populateStats``.
    """
    store = state.store
    root = resource_dir(state, resource_id)
    known = {
        str(r["path"]): str(r["digest"])
        for r in store.query("SELECT path, digest FROM files WHERE resource_id=?", (resource_id,))
    }

    def disk(relpath: str) -> Path:
        return root.joinpath(*relpath.split("/"))

    if "delete" in operations:
        gone = [p for p in known if not disk(p).is_file()]
        with store.tx():
            for path in gone:
                store.execute(
                    "DELETE FROM files WHERE resource_id=? AND path=?", (resource_id, path)
                )
        for path in gone:
            known.pop(path)
    if "append" in operations and root.is_dir():
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in sorted(n for n in names if not n.startswith(".")):  # XNAT skips hidden
                relpath = (Path(folder) / name).relative_to(root).as_posix()
                if relpath in known:
                    continue
                store.execute(
                    "INSERT OR IGNORE INTO files(resource_id, path, size, modified) "
                    "VALUES(?,?,?,?)",
                    (resource_id, relpath, (Path(folder) / name).stat().st_size, now_text()),
                )
                known[relpath] = ""
    if "checksum" in operations:
        for path, digest in known.items():
            if not digest and disk(path).is_file():
                store.execute(
                    "UPDATE files SET digest=? WHERE resource_id=? AND path=?",
                    (md5_of(disk(path)), resource_id, path),
                )
    if "populateStats" in operations:
        refresh_stats(state, resource_id)


@route("POST", "/data/services/refresh/catalog")
def refresh_catalog(req: EmuRequest) -> Response:
    """``POST /data/services/refresh/catalog?resource=/archive/...&options=...``.

    Args:
        req: The request.

    Returns:
        200 with an empty body once every catalog is refreshed.

    Raises:
        HTTPError: 400 for missing/unparseable resource paths or options, 403 without edit
            permission, 404 for unknown items.
    """
    values = [v for v in req.args("resource") if v.strip()]
    if not values:
        raise HTTPError(400, "Specify at least one resource=/archive/... path to refresh.")
    operations = _operations(req)
    targets: dict[int, ResourceInfo] = {}
    for value in values:  # resolve (and authorize) everything before changing anything
        for info in _targets(req, value):
            targets.setdefault(info.id, info)
    for resource_id in targets:
        refresh_resource(req.state, resource_id, operations)
    return wire.text_response("")


ROUTES = [refresh_catalog]
