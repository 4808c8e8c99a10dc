"""Shared plumbing of the resource, file and catalog routes.

* **Parents**: every resource route hangs below a project, subject, experiment or scan, in
  project-scoped and flat URL forms (:data:`PARENT_TEMPLATES`). :func:`resolve_parent` applies
  XNAT's lookup rules and returns a :class:`Parent`.
* **Scan selectors** (``.../scans/{SEL}/...``): an ID, a comma list, ``ALL``/``*``, or a scan type
  (``NULL`` = empty type; ``[SLASH]`` and ``[COMMA]`` escape ``/`` and ``,``).
* **Resource selectors** (``.../resources/{RES}``): a label, a numeric
  ``xnat_abstractresource_id`` or a comma list of both.
* **Paths** inside a resource: :func:`clean_relpath` refuses anything escaping the resource.

Creating resources and catalog entries lives in ``_catalogs``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.routes._lookup import (
    experiment_or_404,
    has_right,
    project_or_404,
    readable_project,
    subject_or_404,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row

PARENT_TEMPLATES: tuple[str, ...] = (
    "/data/projects/{project}",
    "/data/projects/{project}/subjects/{subject}",
    "/data/subjects/{subject}",
    "/data/experiments/{experiment}",
    "/data/projects/{project}/experiments/{experiment}",
    "/data/projects/{project}/subjects/{subject}/experiments/{experiment}",
    "/data/experiments/{experiment}/scans/{scan}",
    "/data/projects/{project}/subjects/{subject}/experiments/{experiment}/scans/{scan}",
)
"""Every URL prefix that owns resources (scan routes only in XNAT's two routable forms)."""

RESOURCE_COLUMNS = (
    "xnat_abstractresource_id",
    "label",
    "element_name",
    "category",
    "cat_id",
    "cat_desc",
    "file_count",
    "file_size",
    "tags",
    "content",
    "format",
)


@dataclass
class Parent:
    """The item a resource URL hangs below.

    Attributes:
        kind: ``project``, ``subject``, ``experiment`` or ``scan``.
        project_id: Project whose permissions govern writes (the item's primary project).
        owner_type: ``resources.parent_type`` of resources created here.
        owner_ids: ``resources.parent_id`` values this URL addresses (several for scan selectors).
        label: XNAT's archive directory name: session/subject label or project ID (archive
            top folder and download file name).
        single_base: ``/data/...`` base of file URIs when exactly one resource is selected.
        experiment_id: The session's accession ID for experiment and scan parents.
        include_scans: ``all=true`` on an experiment: scan resources are included too.
    """

    kind: str
    project_id: str
    owner_type: str
    owner_ids: list[str]
    label: str
    single_base: str
    experiment_id: str | None = None
    include_scans: bool = False


@dataclass(frozen=True)
class ResourceInfo:
    """One resource with the context its listings, URIs and archive paths need.

    Attributes:
        id: ``xnat_abstractresource_id``.
        label: Resource label.
        row: The ``resources`` row.
        category: ``resources`` or ``scans``.
        cat_id: Scan ID (empty for non-scan resources).
        cat_desc: Scan type (empty for non-scan resources).
        stored_base: Base of multi-resource file URIs (no ``/data``), ending ``/resources/{id}``.
        owner_label: Top folder of archive downloads (session/subject label, project ID).
        project_id: Project owning the data.
    """

    id: int
    label: str
    row: Row
    category: str
    cat_id: str
    cat_desc: str
    stored_base: str
    owner_label: str
    project_id: str

    def listing_row(self) -> dict[str, Any]:
        """The row of this resource in ``GET <parent>/resources``.

        Returns:
            Column name to value.
        """
        row = self.row
        return {
            "xnat_abstractresource_id": self.id,
            "label": self.label,
            "element_name": row["element_name"],
            "category": self.category,
            "cat_id": self.cat_id,
            "cat_desc": self.cat_desc,
            "file_count": row["file_count"],
            "file_size": row["file_size"],
            "tags": row["tags"],
            "content": row["content"],
            "format": row["format"],
        }


def is_read(req: EmuRequest) -> bool:
    """Whether the request only reads (GET/HEAD).

    Args:
        req: The request.

    Returns:
        True for GET and HEAD.
    """
    return req.method in ("GET", "HEAD")


def select_scans(state: EmulatorState, experiment_id: str, selector: str) -> list[Row]:
    """Scans of a session matching a URL scan selector.

    Args:
        state: Emulator state.
        experiment_id: Session accession ID.
        selector: ID, comma list, ``ALL``/``*``, scan type, ``NULL`` (empty type).

    Returns:
        Matching scans in creation order.
    """
    scans = state.store.query(
        "SELECT * FROM scans WHERE experiment_id=? ORDER BY xnat_imagescandata_id",
        (experiment_id,),
    )
    wanted = selector.replace("[SLASH]", "/")
    if wanted in ("*", "ALL"):
        return scans
    tokens = [t for t in wanted.split(",") if t] if "," in wanted else [wanted]
    types = {"" if t == "NULL" else t.replace("[COMMA]", ",") for t in tokens}
    return [s for s in scans if s["id"] in tokens or (s["type"] or "") in types]


def resolve_parent(req: EmuRequest, params: Mapping[str, str], *, write: bool) -> Parent:
    """Find the item a resource URL addresses, with XNAT's ID/label and visibility rules.

    Args:
        req: The request (user, state, ``all`` flag).
        params: ``project``, ``subject``, ``experiment``, ``scan`` parts of the URL.
        write: Whether the request modifies data (a scan selector must then match one scan).

    Returns:
        The parent.

    Raises:
        HTTPError: 404 for unknown or invisible items, 403 for unreadable project data.
    """
    project = params.get("project")
    subject = params.get("subject")
    experiment = params.get("experiment")
    if experiment is not None:
        exp = experiment_or_404(req, experiment, project, subject)
        exp_id = str(exp["id"])
        base = "/data"
        if project is not None and subject is not None:
            project_id = str(project_or_404(req, project)["id"])
            subj = subject_or_404(req, subject, project)
            base += f"/projects/{project_id}/subjects/{subj['id']}"
        base += f"/experiments/{exp_id}"
        scan_selector = params.get("scan")
        if scan_selector is None:
            return Parent(
                kind="experiment",
                project_id=str(exp["project"]),
                owner_type="experiment",
                owner_ids=[exp_id],
                label=str(exp["label"]),
                single_base=base,
                experiment_id=exp_id,
                include_scans=req.flag("all"),
            )
        scans = select_scans(req.state, exp_id, scan_selector)
        if write and len(scans) != 1:
            raise HTTPError(404, "Unable to identify scan")
        if not scans:
            raise HTTPError(404, "Unable to find the specified scan.")
        return Parent(
            kind="scan",
            project_id=str(exp["project"]),
            owner_type="scan",
            owner_ids=[str(s["xnat_imagescandata_id"]) for s in scans],
            label=str(exp["label"]),
            single_base=f"{base}/scans/{','.join(str(s['id']) for s in scans)}",
            experiment_id=exp_id,
        )
    if subject is not None:
        subj = subject_or_404(req, subject, project)
        return Parent(
            kind="subject",
            project_id=str(subj["project"]),
            owner_type="subject",
            owner_ids=[str(subj["id"])],
            label=str(subj["label"]),
            single_base=f"/data/projects/{subj['project']}/subjects/{subj['id']}"
            if project is None
            else f"/data/projects/{project_or_404(req, project)['id']}/subjects/{subj['id']}",
        )
    if project is None:
        raise HTTPError(404, "No parent item in the URL.")
    project_id = readable_project(req, project)
    return Parent(
        kind="project",
        project_id=project_id,
        owner_type="project",
        owner_ids=[project_id],
        label=project_id,
        single_base=f"/data/projects/{project_id}",
    )


def require_parent_right(req: EmuRequest, right: Literal["edit", "delete"], parent: Parent) -> None:
    """403 unless the caller may edit (owners, members) or delete (owners) data under the parent.

    Args:
        req: The request.
        right: ``edit`` or ``delete``.
        parent: The parent item.

    Raises:
        HTTPError: 403.
    """
    if not has_right(req, right, parent.project_id):
        verb = "modify" if right == "edit" else "delete"
        raise HTTPError(
            403, f"User {req.login} cannot {verb} the {parent.kind} {parent.label} resources."
        )


def describe(state: EmulatorState, row: Row) -> ResourceInfo:
    """Attach listing/URI/archive context to a ``resources`` row.

    Args:
        state: Emulator state.
        row: The resource row.

    Returns:
        The resource info.
    """
    store = state.store
    rid = int(row["xnat_abstractresource_id"])
    kind, key = str(row["parent_type"]), str(row["parent_id"])
    category, cat_id, cat_desc = "resources", "", ""
    if kind == "scan":
        scan = store.one("SELECT * FROM scans WHERE xnat_imagescandata_id=?", (int(key),))
        exp_id = str(scan["experiment_id"]) if scan else ""
        exp = store.one("SELECT label, project FROM experiments WHERE id=?", (exp_id,))
        category = "scans"
        cat_id = str(scan["id"]) if scan else ""
        cat_desc = str(scan["type"] or "") if scan else ""
        base = f"/experiments/{exp_id}/scans/{cat_id}"
        owner, project = (str(exp["label"]), str(exp["project"])) if exp else (exp_id, "")
    elif kind == "experiment":
        exp = store.one("SELECT label, project FROM experiments WHERE id=?", (key,))
        base = f"/experiments/{key}"
        owner, project = (str(exp["label"]), str(exp["project"])) if exp else (key, "")
    elif kind == "subject":
        subj = store.one("SELECT label, project FROM subjects WHERE id=?", (key,))
        project = str(subj["project"]) if subj else ""
        base = f"/projects/{project}/subjects/{key}"
        owner = str(subj["label"]) if subj else key
    else:
        base, owner, project = f"/projects/{key}", key, key
    return ResourceInfo(
        id=rid,
        label=str(row["label"]),
        row=row,
        category=category,
        cat_id=cat_id,
        cat_desc=cat_desc,
        stored_base=f"{base}/resources/{rid}",
        owner_label=owner,
        project_id=project,
    )


def candidates(state: EmulatorState, parent: Parent) -> list[ResourceInfo]:
    """Every resource directly under the parent (plus scan resources with ``all=true``).

    Args:
        state: Emulator state.
        parent: The parent item.

    Returns:
        Resources in a stable order (owner, then creation).
    """
    owners = [(parent.owner_type, key) for key in parent.owner_ids]
    if parent.include_scans and parent.experiment_id:
        scans = state.store.query(
            "SELECT xnat_imagescandata_id AS pk FROM scans WHERE experiment_id=? "
            "ORDER BY xnat_imagescandata_id",
            (parent.experiment_id,),
        )
        owners.extend(("scan", str(s["pk"])) for s in scans)
    found: list[ResourceInfo] = []
    for owner_type, key in owners:
        rows = state.store.query(
            "SELECT * FROM resources WHERE parent_type=? AND parent_id=? "
            "ORDER BY xnat_abstractresource_id",
            (owner_type, key),
        )
        found.extend(describe(state, r) for r in rows)
    return found


def select_resources(
    req: EmuRequest, parent: Parent, selector: str | None, *, anywhere: bool = True
) -> list[ResourceInfo]:
    """Resources matching a URL resource selector (all candidates when None).

    A numeric token that matches no candidate is looked up by primary key anywhere the caller
    can read, as XNAT does for ``.../resources/{id}/files`` (reads only: ``anywhere``).

    Args:
        req: The request.
        parent: The parent item.
        selector: Label, numeric ID, or comma list; None for "every resource".
        anywhere: Allow the primary-key lookup outside the parent.

    Returns:
        The matching resources, without duplicates.
    """
    pool = candidates(req.state, parent)
    if selector is None:
        return pool
    chosen: list[ResourceInfo] = []
    seen: set[int] = set()
    for token in (t.strip() for t in selector.split(",")):
        if not token:
            continue
        matches = [
            r
            for r in pool
            if r.label == token
            or (token.isdigit() and r.id == int(token))
            or (token.upper() == "NULL" and r.label == "")
        ]
        if not matches and anywhere and token.isdigit():
            row = req.state.store.one(
                "SELECT * FROM resources WHERE xnat_abstractresource_id=?", (int(token),)
            )
            if row is not None:
                info = describe(req.state, row)
                if info.project_id and req.state.can_read(req.user, info.project_id):
                    matches = [info]
        for match in matches:
            if match.id not in seen:
                seen.add(match.id)
                chosen.append(match)
    return chosen


def clean_relpath(text: str, *, allow_empty: bool = True) -> str:
    """Normalize a file path inside a resource; refuse paths escaping it.

    Args:
        text: Path from the URL or an archive entry.
        allow_empty: Whether an empty path is acceptable.

    Returns:
        A relative POSIX path without ``.``/``..`` segments ("" for the resource root).

    Raises:
        HTTPError: 400 for absolute paths or paths leaving the resource folder.
    """
    raw = text.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise HTTPError(400, f"Invalid file path {text!r}: paths must be relative to the resource.")
    norm = posixpath.normpath(raw) if raw else ""
    if norm == ".":
        norm = ""
    if norm == ".." or norm.startswith("../"):
        raise HTTPError(400, f"Invalid file path {text!r}: it leaves the resource folder.")
    if not norm and not allow_empty:
        raise HTTPError(400, "A file path is required.")
    return norm
