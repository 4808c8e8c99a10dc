"""Finding projects, subjects, experiments and scans from URL parts, with XNAT's rules.

* ``/data/projects/{P}``: project ID or alias.
* Flat ``/data/subjects/{ID}`` and ``/data/experiments/{ID}``: accession ID only.
* Inside a project: the label in that project (including a shared item's label there) first,
  then the accession ID.
* Private data the caller has no role in answers 404, never 403.
"""

from __future__ import annotations

from typing import Literal

from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.store import Row


def project_or_404(req: EmuRequest, project: str) -> Row:
    """The project row, if it exists and the caller may see it.

    Args:
        req: The request.
        project: ID or alias.

    Returns:
        The row.

    Raises:
        HTTPError: 404 when unknown or invisible.
    """
    state = req.state
    project_id = state.resolve_project(project)
    if project_id is None or not state.can_see_project(req.user, project_id):
        raise HTTPError(404, f"Unable to identify project {project}")
    row = state.store.one("SELECT * FROM projects WHERE id=?", (project_id,))
    assert row is not None
    return row


def item_projects(req: EmuRequest, kind: str, item_id: str) -> list[str]:
    """Primary project then the projects an item is shared into.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item_id: Accession ID.

    Returns:
        Project IDs, primary first.
    """
    table = "subjects" if kind == "subject" else "experiments"
    shares = "subject_shares" if kind == "subject" else "experiment_shares"
    row = req.state.store.one(f"SELECT project FROM {table} WHERE id=?", (item_id,))
    if row is None:
        return []
    others = req.state.store.query(
        f"SELECT project FROM {shares} WHERE {kind}_id=? ORDER BY rowid", (item_id,)
    )
    return [str(row["project"]), *(str(r["project"]) for r in others)]


def can_read_item(req: EmuRequest, kind: str, item_id: str) -> bool:
    """Whether the caller may read an item through any of its projects.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item_id: Accession ID.

    Returns:
        The permission.
    """
    return any(req.state.can_read(req.user, p) for p in item_projects(req, kind, item_id))


def _by_label(req: EmuRequest, kind: str, project_id: str, label: str) -> Row | None:
    table = "subjects" if kind == "subject" else "experiments"
    shares = "subject_shares" if kind == "subject" else "experiment_shares"
    store = req.state.store
    row = store.one(f"SELECT * FROM {table} WHERE project=? AND label=?", (project_id, label))
    if row is None:
        shared = store.one(
            f"SELECT {kind}_id AS id FROM {shares} WHERE project=? AND label=?", (project_id, label)
        )
        if shared is not None:
            row = store.one(f"SELECT * FROM {table} WHERE id=?", (shared["id"],))
    return row


def find_item(req: EmuRequest, kind: str, ref: str, project_id: str | None) -> Row | None:
    """Find a subject or experiment by label-in-project or accession ID.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        ref: Label or accession ID.
        project_id: Project context (None: flat URL, accession ID only).

    Returns:
        The row, or None.
    """
    table = "subjects" if kind == "subject" else "experiments"
    if project_id is not None:
        row = _by_label(req, kind, project_id, ref)
        if row is not None:
            return row
        row = req.state.store.one(f"SELECT * FROM {table} WHERE id=?", (ref,))
        if row is not None and project_id in item_projects(req, kind, ref):
            return row
        return None
    return req.state.store.one(f"SELECT * FROM {table} WHERE id=?", (ref,))


def subject_or_404(req: EmuRequest, subject: str, project: str | None = None) -> Row:
    """A readable subject.

    Args:
        req: The request.
        subject: Label (with a project) or accession ID.
        project: Project ID or alias from the URL.

    Returns:
        The subject row.

    Raises:
        HTTPError: 404 when not found or not readable.
    """
    project_id = project_or_404(req, project)["id"] if project is not None else None
    row = find_item(req, "subject", subject, project_id)
    if row is None or not can_read_item(req, "subject", row["id"]):
        where = f" in project {project}" if project else ""
        raise HTTPError(
            404,
            f"Unable to identify subject {subject}{where}. Flat /data/subjects URLs take the "
            "accession ID; labels work inside /data/projects/{project}/subjects.",
        )
    return row


def experiment_or_404(
    req: EmuRequest, experiment: str, project: str | None = None, subject: str | None = None
) -> Row:
    """A readable experiment.

    Args:
        req: The request.
        experiment: Label (with a project) or accession ID.
        project: Project ID or alias from the URL.
        subject: Subject label or ID from the URL (must own the experiment).

    Returns:
        The experiment row.

    Raises:
        HTTPError: 404 when not found or not readable.
    """
    project_id = project_or_404(req, project)["id"] if project is not None else None
    row = find_item(req, "experiment", experiment, project_id)
    if row is not None and subject is not None and project is not None:
        subj = subject_or_404(req, subject, project)
        if subj["id"] != row["subject_id"]:
            row = None
    if row is None or not can_read_item(req, "experiment", row["id"]):
        raise HTTPError(404, "Unable to find the specified experiment.")
    return row


def scan_or_404(req: EmuRequest, experiment_id: str, scan_id: str) -> Row:
    """A scan of an experiment.

    Args:
        req: The request.
        experiment_id: Accession ID of the session.
        scan_id: Scan ID.

    Returns:
        The scan row.

    Raises:
        HTTPError: 404 when the scan does not exist.
    """
    row = req.state.store.one(
        "SELECT * FROM scans WHERE experiment_id=? AND id=?", (experiment_id, scan_id)
    )
    if row is None:
        raise HTTPError(404, "Unable to find the specified scan.")
    return row


#: A caller's right in a project: read its data, create/edit, delete (owners and admins).
Right = Literal["read", "edit", "delete"]


def has_right(req: EmuRequest, right: Right, project_id: str) -> bool:
    """Whether the caller holds a right in a project.

    Args:
        req: The request.
        right: ``read``, ``edit`` or ``delete``.
        project_id: Project ID.

    Returns:
        The permission.
    """
    state = req.state
    check = {"read": state.can_read, "edit": state.can_edit, "delete": state.can_delete}[right]
    return check(req.user, project_id)


def require_right(req: EmuRequest, right: Right, project_id: str, what: str = "data") -> None:
    """403 unless the caller holds a right in the project.

    Args:
        req: The request.
        right: ``read``, ``edit`` or ``delete``.
        project_id: Project ID.
        what: Thing being read or changed, for the message.

    Raises:
        HTTPError: 403.
    """
    if not has_right(req, right, project_id):
        prep = "of" if right == "read" else "in"
        raise HTTPError(403, f"User {req.login} cannot {right} {what} {prep} project {project_id}.")


def readable_project(req: EmuRequest, project: str, what: str = "the data") -> str:
    """The ID of a project the caller may see and read.

    Args:
        req: The request.
        project: ID or alias from the URL.
        what: Thing being read, for the 403 message.

    Returns:
        The project ID.

    Raises:
        HTTPError: 404 when unknown or invisible, 403 when not readable.
    """
    project_id = str(project_or_404(req, project)["id"])
    require_right(req, "read", project_id, what)
    return project_id
