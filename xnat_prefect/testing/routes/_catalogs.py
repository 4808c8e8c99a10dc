"""The ``files`` table as XNAT's resource catalogs: creating resources, entries and stats.

Resources are created empty (``PUT .../resources/{RES}``) or on the first upload; each catalog
entry is one ``files`` row (path, size, MD5 digest, format/content/tags). The cached
``file_count``/``file_size`` columns of ``resources`` are refreshed from those rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.routes._resources import Parent
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text


def find_owned(state: EmulatorState, owner_type: str, owner_id: str, label: str) -> Row | None:
    """The resource with this label directly under one owner.

    Args:
        state: Emulator state.
        owner_type: ``resources.parent_type``.
        owner_id: ``resources.parent_id``.
        label: Resource label.

    Returns:
        The row or None.
    """
    return state.store.one(
        "SELECT * FROM resources WHERE parent_type=? AND parent_id=? AND label=?",
        (owner_type, owner_id, label),
    )


def create_resource(
    state: EmulatorState,
    parent: Parent,
    label: str,
    *,
    attributes: Mapping[str, str],
    login: str,
    exist_ok: bool,
) -> int:
    """Create a catalog resource under a single-owner parent.

    Args:
        state: Emulator state.
        parent: The parent item (exactly one owner).
        label: Resource label.
        attributes: ``format``, ``content``, ``description``, ``tags`` values to set.
        login: Acting user (history).
        exist_ok: Return the existing resource instead of answering 409.

    Returns:
        The ``xnat_abstractresource_id``.

    Raises:
        HTTPError: 409 "Specified resource already exists." when it exists and not exist_ok.
    """
    store = state.store
    owner_id = parent.owner_ids[0]
    with store.tx():
        existing = find_owned(state, parent.owner_type, owner_id, label)
        if existing is not None:
            if exist_ok:
                return int(existing["xnat_abstractresource_id"])
            raise HTTPError(409, "Specified resource already exists.")
        values = {k: v for k, v in attributes.items() if k in ("format", "content", "description")}
        values["tags"] = attributes.get("tags", "")
        columns = ["parent_type", "parent_id", "label", "file_count", "file_size", "insert_date"]
        params: list[Any] = [parent.owner_type, owner_id, label, 0, 0, now_text()]
        columns.extend(values)
        params.extend(values.values())
        rid = store.execute(
            f"INSERT INTO resources({', '.join(columns)}) VALUES({', '.join('?' * len(columns))})",
            params,
        )
        store.record_history(
            login, "created", "xnat:resourceCatalog", str(rid), parent.project_id, label
        )
    return rid


def resource_attributes(req: EmuRequest) -> dict[str, str]:
    """The ``format``/``content``/``description``/``tags`` parameters of a write request.

    Args:
        req: The request.

    Returns:
        The given attributes (``tags`` comma-joined; repeatable).
    """
    values: dict[str, str] = {}
    for name in ("format", "content", "description"):
        given = req.arg(name)
        if given is not None:
            values[name] = given
    tags = [t for t in req.args("tags") if t]
    if tags:
        values["tags"] = ",".join(tags)
    return values


def refresh_stats(state: EmulatorState, resource_id: int) -> None:
    """Recompute a resource's cached ``file_count`` and ``file_size`` from its catalog.

    Args:
        state: Emulator state.
        resource_id: The resource.
    """
    state.store.execute(
        "UPDATE resources SET file_count=(SELECT COUNT(*) FROM files WHERE resource_id=?), "
        "file_size=(SELECT COALESCE(SUM(size), 0) FROM files WHERE resource_id=?) "
        "WHERE xnat_abstractresource_id=?",
        (resource_id, resource_id, resource_id),
    )


def catalog_rows(state: EmulatorState, resource_ids: Sequence[int]) -> dict[int, list[Row]]:
    """The catalog entries of several resources, by resource, in path order.

    Args:
        state: Emulator state.
        resource_ids: Resources.

    Returns:
        Resource id to its ``files`` rows.
    """
    result: dict[int, list[Row]] = {rid: [] for rid in resource_ids}
    for rid in resource_ids:
        result[rid] = state.store.query(
            "SELECT * FROM files WHERE resource_id=? ORDER BY path", (rid,)
        )
    return result


def upsert_file(
    state: EmulatorState,
    resource_id: int,
    relpath: str,
    *,
    size: int,
    digest: str,
    attributes: Mapping[str, str],
) -> None:
    """Insert or replace one catalog entry (attributes not given keep their old values).

    Args:
        state: Emulator state.
        resource_id: The resource.
        relpath: Path inside the resource.
        size: Bytes.
        digest: MD5 hex ("" when checksums are off).
        attributes: ``format``/``content``/``tags`` of the entry.
    """
    store = state.store
    with store.tx():
        old = store.one(
            "SELECT format, content, tags FROM files WHERE resource_id=? AND path=?",
            (resource_id, relpath),
        )
        merged = {
            k: (str(old[k]) if old is not None else "") for k in ("format", "content", "tags")
        }
        merged.update({k: v for k, v in attributes.items() if k in merged})
        store.execute(
            "INSERT OR REPLACE INTO files(resource_id, path, size, digest, format, content, tags, "
            "modified) VALUES(?,?,?,?,?,?,?,?)",
            (
                resource_id,
                relpath,
                size,
                digest,
                merged["format"],
                merged["content"],
                merged["tags"],
                now_text(),
            ),
        )
