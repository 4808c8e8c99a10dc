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


def delete_experiment(state: EmulatorState, experiment_id: str, *, remove_files: bool) -> None:
    """Delete an experiment with its scans, resources and shares.

    Args:
        state: Emulator state.
        experiment_id: Accession ID.
        remove_files: Also delete the bytes on disk.
    """
    store = state.store
    with store.tx():
        for scan in store.query(
            "SELECT xnat_imagescandata_id AS pk FROM scans WHERE experiment_id=?", (experiment_id,)
        ):
            delete_scan(state, int(scan["pk"]), remove_files=remove_files)
        delete_resources(state, "experiment", experiment_id, remove_files=remove_files)
        store.execute("DELETE FROM experiment_shares WHERE experiment_id=?", (experiment_id,))
        store.execute("DELETE FROM experiments WHERE id=?", (experiment_id,))


def delete_subject(state: EmulatorState, subject_id: str, *, remove_files: bool) -> None:
    """Delete a subject with all its experiments, resources and shares.

    Args:
        state: Emulator state.
        subject_id: Accession ID.
        remove_files: Also delete the bytes on disk.
    """
    store = state.store
    with store.tx():
        for exp in store.query("SELECT id FROM experiments WHERE subject_id=?", (subject_id,)):
            delete_experiment(state, str(exp["id"]), remove_files=remove_files)
        delete_resources(state, "subject", subject_id, remove_files=remove_files)
        store.execute("DELETE FROM subject_shares WHERE subject_id=?", (subject_id,))
        store.execute("DELETE FROM subjects WHERE id=?", (subject_id,))


def delete_project(state: EmulatorState, project_id: str, *, remove_files: bool) -> None:
    """Delete a project and everything it owns; its ID can never be reused.

    Args:
        state: Emulator state.
        project_id: Project ID.
        remove_files: Also delete the bytes on disk.
    """
    store = state.store
    with store.tx():
        for subj in store.query("SELECT id FROM subjects WHERE project=?", (project_id,)):
            delete_subject(state, str(subj["id"]), remove_files=remove_files)
        for exp in store.query("SELECT id FROM experiments WHERE project=?", (project_id,)):
            delete_experiment(state, str(exp["id"]), remove_files=remove_files)
        delete_resources(state, "project", project_id, remove_files=remove_files)
        for table in ("subject_shares", "experiment_shares"):
            store.execute(f"DELETE FROM {table} WHERE project=?", (project_id,))
        store.execute("DELETE FROM project_members WHERE project=?", (project_id,))
        store.execute("DELETE FROM project_aliases WHERE project=?", (project_id,))
        store.execute("DELETE FROM projects WHERE id=?", (project_id,))
        store.execute("INSERT OR IGNORE INTO deleted_projects(id) VALUES(?)", (project_id,))
