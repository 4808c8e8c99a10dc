"""Where resource files live on disk, and cascading deletes of archive items."""

from __future__ import annotations

import shutil
from pathlib import Path

from xnat_prefect.testing.state import EmulatorState


def resource_dir(state: EmulatorState, resource_id: int) -> Path:
    """The folder holding a resource's files (``archive/resources/{id}``).

    Args:
        state: Emulator state.
        resource_id: ``xnat_abstractresource_id``.

    Returns:
        The folder (not created).
    """
    return state.store.archive_dir / "resources" / str(resource_id)


def delete_resources(
    state: EmulatorState, parent_type: str, parent_id: str, *, remove_files: bool
) -> None:
    """Delete every resource of one parent (rows, and files when asked).

    Args:
        state: Emulator state.
        parent_type: ``project``, ``subject``, ``experiment`` or ``scan``.
        parent_id: The parent's key.
        remove_files: Also delete the bytes on disk.
    """
    store = state.store
    with store.tx():
        rows = store.query(
            "SELECT xnat_abstractresource_id AS rid FROM resources "
            "WHERE parent_type=? AND parent_id=?",
            (parent_type, parent_id),
        )
        for row in rows:
            store.execute("DELETE FROM files WHERE resource_id=?", (row["rid"],))
            store.execute("DELETE FROM resources WHERE xnat_abstractresource_id=?", (row["rid"],))
            if remove_files:
                shutil.rmtree(resource_dir(state, int(row["rid"])), ignore_errors=True)


def delete_scan(state: EmulatorState, scan_pk: int, *, remove_files: bool) -> None:
    """Delete one scan and its resources.

    Args:
        state: Emulator state.
        scan_pk: ``xnat_imagescandata_id``.
        remove_files: Also delete the bytes on disk.
    """
    with state.store.tx():
        delete_resources(state, "scan", str(scan_pk), remove_files=remove_files)
        state.store.execute("DELETE FROM scans WHERE xnat_imagescandata_id=?", (scan_pk,))


def delete_item(state: EmulatorState, kind: str, item_id: str, *, remove_files: bool) -> None:
    """Delete a subject or experiment with its children, resources and shares.

    A subject takes its experiments with it, an experiment its scans.

    Args:
        state: Emulator state.
        kind: ``subject`` or ``experiment``.
        item_id: Accession ID.
        remove_files: Also delete the bytes on disk.

    Raises:
        ValueError: For another kind.
    """
    if kind not in ("subject", "experiment"):
        raise ValueError(f"Cannot delete a {kind!r}: use 'subject' or 'experiment'.")
    store = state.store
    with store.tx():
        if kind == "subject":
            for exp in store.query("SELECT id FROM experiments WHERE subject_id=?", (item_id,)):
                delete_item(state, "experiment", str(exp["id"]), remove_files=remove_files)
        else:
            scans = store.query(
                "SELECT xnat_imagescandata_id AS pk FROM scans WHERE experiment_id=?", (item_id,)
            )
            for scan in scans:
                delete_scan(state, int(scan["pk"]), remove_files=remove_files)
        delete_resources(state, kind, item_id, remove_files=remove_files)
        store.execute(f"DELETE FROM {kind}_shares WHERE {kind}_id=?", (item_id,))
        store.execute(f"DELETE FROM {kind}s WHERE id=?", (item_id,))


def delete_project(state: EmulatorState, project_id: str, *, remove_files: bool) -> None:
    """Delete a project and everything it owns; its ID can never be reused.

    Args:
        state: Emulator state.
        project_id: Project ID.
        remove_files: Also delete the bytes on disk.
    """
    store = state.store
    with store.tx():
        for kind in ("subject", "experiment"):
            for row in store.query(f"SELECT id FROM {kind}s WHERE project=?", (project_id,)):
                delete_item(state, kind, str(row["id"]), remove_files=remove_files)
        delete_resources(state, "project", project_id, remove_files=remove_files)
        for table in ("subject_shares", "experiment_shares"):
            store.execute(f"DELETE FROM {table} WHERE project=?", (project_id,))
        store.execute("DELETE FROM project_members WHERE project=?", (project_id,))
        store.execute("DELETE FROM project_aliases WHERE project=?", (project_id,))
        store.execute("DELETE FROM projects WHERE id=?", (project_id,))
        store.execute("INSERT OR IGNORE INTO deleted_projects(id) VALUES(?)", (project_id,))
