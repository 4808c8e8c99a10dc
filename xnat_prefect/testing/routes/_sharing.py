"""Labels per project, shares, moves and removals of subjects and experiments.

XNAT's rules: a label is unique per project across primary and shared labels; sharing into Q
needs create rights in Q (``primary=true`` moves ownership and needs delete rights); removing an
item from its owning project deletes it, from any other project removes the share.
"""

from __future__ import annotations

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError
from xnat_prefect.testing.routes._cascade import delete_item
from xnat_prefect.testing.routes._items import VALID_LABEL, Node
from xnat_prefect.testing.routes._lookup import require_right
from xnat_prefect.testing.store import Row, now_text


def check_label(label: str, kind: str) -> None:
    """417 for a label with characters XNAT refuses.

    Args:
        label: The label.
        kind: ``subject`` or ``experiment`` (for the message).

    Raises:
        HTTPError: 417.
    """
    if not VALID_LABEL.match(label):
        raise HTTPError(
            417, f"Invalid character in {kind} label {label!r}: use letters, digits, _ and -."
        )


def _xsi(kind: str, item: Row) -> str:
    return "xnat:subjectData" if kind == "subject" else str(item["xsi_type"])


def _tables(kind: str) -> tuple[str, str]:
    return (
        ("subjects", "subject_shares")
        if kind == "subject"
        else ("experiments", "experiment_shares")
    )


def share_label(req: EmuRequest, kind: str, item_id: str, project_id: str) -> str | None:
    """The label a share carries (None when the item is not shared into the project).

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item_id: Accession ID.
        project_id: Project ID.

    Returns:
        The share's label (``""`` when shared without one) or None.
    """
    _table, shares = _tables(kind)
    row = req.state.store.one(
        f"SELECT label FROM {shares} WHERE {kind}_id=? AND project=?", (item_id, project_id)
    )
    return None if row is None else str(row["label"])


def label_in_project(req: EmuRequest, kind: str, item: Row, project_id: str) -> str:
    """The label an item shows in a project (primary label, else its share label).

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item: The item row.
        project_id: Project ID.

    Returns:
        The label.
    """
    if item["project"] == project_id:
        return str(item["label"])
    return share_label(req, kind, item["id"], project_id) or str(item["label"])


def label_taken(req: EmuRequest, kind: str, project_id: str, label: str, item_id: str) -> bool:
    """Whether another item already uses a label in a project (primary or shared label).

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        project_id: Project ID.
        label: The label.
        item_id: The item that wants it (ignored in the check).

    Returns:
        True on a collision.
    """
    table, shares = _tables(kind)
    store = req.state.store
    return bool(label) and (
        store.one(
            f"SELECT 1 FROM {table} WHERE project=? AND label=? AND id<>?",
            (project_id, label, item_id),
        )
        is not None
        or store.one(
            f"SELECT 1 FROM {shares} WHERE project=? AND label=? AND {kind}_id<>?",
            (project_id, label, item_id),
        )
        is not None
    )


def readable_projects(req: EmuRequest) -> set[str]:
    """Every project whose data the caller may read.

    Args:
        req: The request.

    Returns:
        Project IDs.
    """
    rows = req.state.store.query("SELECT id FROM projects")
    return {str(r["id"]) for r in rows if req.state.can_read(req.user, r["id"])}


def share_nodes(req: EmuRequest, kind: str, item_id: str) -> list[Node]:
    """The ``sharing/share`` children of a subject or experiment document.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item_id: Accession ID.

    Returns:
        One node per share, in the order the shares were made.
    """
    _table, shares = _tables(kind)
    rows = req.state.store.query(
        f"SELECT project, label FROM {shares} WHERE {kind}_id=? ORDER BY rowid", (item_id,)
    )
    xsi = "xnat:projectParticipant" if kind == "subject" else "xnat:experimentData_share"
    return [Node(xsi, {"label": r["label"], "project": r["project"]}) for r in rows]


def owned_and_shared(req: EmuRequest, kind: str, project_id: str) -> list[Row]:
    """The subjects or experiments a project lists: its own, then those shared into it.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        project_id: Project ID.

    Returns:
        Item rows by accession ID, each with ``shown``: the label the item carries in the project.
    """
    table, shares = _tables(kind)
    return req.state.store.query(
        f"SELECT t.*, t.label AS shown FROM {table} t WHERE t.project=? UNION ALL "
        "SELECT t.*, CASE sh.label WHEN '' THEN t.label ELSE sh.label END AS shown "
        f"FROM {table} t JOIN {shares} sh ON sh.{kind}_id = t.id WHERE sh.project=? ORDER BY id",
        (project_id, project_id),
    )


def readable_items(req: EmuRequest, kind: str) -> list[Row]:
    """Every subject or experiment the caller may read through its project or a share.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.

    Returns:
        Item rows by accession ID.
    """
    table, shares = _tables(kind)
    store = req.state.store
    readable = readable_projects(req)
    shared: dict[str, set[str]] = {}
    for r in store.query(f"SELECT {kind}_id AS id, project FROM {shares}"):
        shared.setdefault(r["id"], set()).add(r["project"])
    return [
        r
        for r in store.query(f"SELECT * FROM {table} ORDER BY id")
        if r["project"] in readable or shared.get(r["id"], set()) & readable
    ]


def projects_table(req: EmuRequest, kind: str, item: Row) -> Response:
    """``GET .../projects`` of a subject or experiment: ``label, ID, Secondary_ID, Name``.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item: The item row.

    Returns:
        The table (primary project first, then shares; a label-less share shows the ID).
    """
    _table, shares = _tables(kind)
    store = req.state.store
    pairs = [(str(item["project"]), str(item["label"]))]
    pairs += [
        (str(r["project"]), str(r["label"]) or str(item["id"]))
        for r in store.query(
            f"SELECT project, label FROM {shares} WHERE {kind}_id=? ORDER BY rowid", (item["id"],)
        )
    ]
    rows = []
    for project_id, label in pairs:
        project = store.one("SELECT * FROM projects WHERE id=?", (project_id,))
        if project is not None and req.state.can_see_project(req.user, project_id):
            rows.append(
                {
                    "label": label,
                    "ID": project_id,
                    "Secondary_ID": project["secondary_id"],
                    "Name": project["name"],
                }
            )
    return wire.result_set(rows, ["label", "ID", "Secondary_ID", "Name"], fmt=req.fmt)


def share_item(req: EmuRequest, kind: str, item: Row, target: str) -> None:
    """``PUT .../projects/{Q}[?label=L][&primary=true]``: share into Q, or move ownership to Q.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item: The item row.
        target: Target project ID (resolved and visible).

    Raises:
        HTTPError: 403 without create rights in Q (or delete rights for a move), 409 when
            already in Q or the label is taken there, 417 for an invalid label.
    """
    store = req.state.store
    table, shares = _tables(kind)
    xsi = _xsi(kind, item)
    require_right(req, "edit", target, f"{kind}s")
    label = req.arg("label") or ""
    if label:
        check_label(label, kind)
    existing = share_label(req, kind, item["id"], target)
    if item["project"] == target:
        raise HTTPError(409, f"Already assigned to project:{target}")
    if req.flag("primary"):
        require_right(req, "delete", item["project"], f"{kind}s")
        new_label = label or existing or str(item["label"])
        if label_taken(req, kind, target, new_label, item["id"]):
            raise HTTPError(409, f"Label already in use:{new_label}")
        with store.tx():
            store.execute(
                f"DELETE FROM {shares} WHERE {kind}_id=? AND project=?", (item["id"], target)
            )
            store.execute(
                f"UPDATE {table} SET project=?, label=? WHERE id=?", (target, new_label, item["id"])
            )
            store.record_history(
                req.login, "moved", xsi, item["id"], target, f"from {item['project']}"
            )
        return
    if existing is not None and label in ("", existing):
        raise HTTPError(409, f"Already assigned to project:{target}")
    if label_taken(req, kind, target, label, item["id"]):
        raise HTTPError(409, f"Label already in use:{label}")
    with store.tx():
        if existing is not None:
            store.execute(
                f"UPDATE {shares} SET label=? WHERE {kind}_id=? AND project=?",
                (label, item["id"], target),
            )
        else:
            store.execute(
                f"INSERT INTO {shares}({kind}_id, project, label) VALUES(?,?,?)",
                (item["id"], target, label),
            )
        store.record_history(req.login, "shared", xsi, item["id"], target, label)


def remove_from_project(req: EmuRequest, kind: str, item: Row, project_id: str) -> bool:
    """DELETE of an item in a project: delete it from its owner, or remove the share.

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item: The item row.
        project_id: The project the DELETE names.

    Returns:
        False when the item was never in the project (nothing done).

    Raises:
        HTTPError: 403 when the caller may not delete in that project.
    """
    store = req.state.store
    _table, shares = _tables(kind)
    xsi = _xsi(kind, item)
    require_right(req, "delete", project_id, f"{kind}s")
    if item["project"] == project_id:
        remove = req.flag("removeFiles")
        with store.tx():
            delete_item(req.state, kind, item["id"], remove_files=remove)
            store.record_history(req.login, "deleted", xsi, item["id"], project_id)
        return True
    if share_label(req, kind, item["id"], project_id) is None:
        return False
    with store.tx():
        store.execute(
            f"DELETE FROM {shares} WHERE {kind}_id=? AND project=?", (item["id"], project_id)
        )
        store.record_history(req.login, "unshared", xsi, item["id"], project_id)
    return True


def rename_in_project(req: EmuRequest, kind: str, item: Row, project_id: str, label: str) -> None:
    """``PUT ...?label=NEW``: rename the item in a project (its primary or its share label).

    Args:
        req: The request.
        kind: ``subject`` or ``experiment``.
        item: The item row.
        project_id: The project of the URL.
        label: The new label.

    Raises:
        HTTPError: 417 for an invalid label, 409 "Specified label is already in use.".
    """
    store = req.state.store
    table, shares = _tables(kind)
    check_label(label, kind)
    if label_taken(req, kind, project_id, label, item["id"]):
        raise HTTPError(409, "Specified label is already in use.")
    with store.tx():
        if item["project"] == project_id:
            store.execute(
                f"UPDATE {table} SET label=?, last_modified=? WHERE id=?",
                (label, now_text(), item["id"]),
            )
        else:
            store.execute(
                f"UPDATE {shares} SET label=? WHERE {kind}_id=? AND project=?",
                (label, item["id"], project_id),
            )
        store.record_history(
            req.login, "modified", _xsi(kind, item), item["id"], project_id, f"label={label}"
        )


def ensure_subject_in(req: EmuRequest, subject_id: str, project_id: str) -> None:
    """Share a subject into a project unless it is already there (experiment shares/moves).

    The share carries the subject's label unless that label is taken in the project.

    Args:
        req: The request.
        subject_id: Accession ID.
        project_id: Target project ID.
    """
    store = req.state.store
    subject = store.one("SELECT * FROM subjects WHERE id=?", (subject_id,))
    if subject is None or subject["project"] == project_id:
        return
    if share_label(req, "subject", subject_id, project_id) is not None:
        return
    taken = label_taken(req, "subject", project_id, subject["label"], subject_id)
    with store.tx():
        store.execute(
            "INSERT INTO subject_shares(subject_id, project, label) VALUES(?,?,?)",
            (subject_id, project_id, "" if taken else subject["label"]),
        )
        store.record_history(req.login, "shared", "xnat:subjectData", subject_id, project_id)
