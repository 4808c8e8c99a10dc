"""Item change history: ``GET /data/services/audit/{xsiType}/{id}``.

XNAT has no ``/data/audit`` route (it stays the dispatcher's loud 404 here too); the audit
service lists the change history of one item. The emulator answers a ResultSet built from the
store's ``history`` table (rows recorded by every module through ``Store.record_history``):
columns ``id, timestamp, user, action, xsiType, item_id, project, details``, oldest first.
The item must exist or have history (else 404) and be readable (private data → 404, as
elsewhere); user items (``xdat:user``) are visible to administrators only.
"""

from __future__ import annotations

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError, route

COLUMNS = ("id", "timestamp", "user", "action", "xsiType", "item_id", "project", "details")


def _item_project(req: EmuRequest, xsi_type: str, item_id: str) -> tuple[bool, str]:
    """(whether the item exists, its project)."""
    store = req.state.store
    lowered = xsi_type.lower()
    if lowered == "xnat:projectdata":
        project = req.state.resolve_project(item_id)
        return project is not None, project or ""
    if lowered == "xdat:user":
        return store.one("SELECT 1 FROM users WHERE login=?", (item_id,)) is not None, ""
    for table in ("subjects", "experiments"):
        row = store.one(f"SELECT project FROM {table} WHERE id=?", (item_id,))
        if row is not None:
            return True, str(row["project"])
    return False, ""


@route("GET", "/data/services/audit/{xsi_type}/{item_id}")
def item_history(req: EmuRequest) -> Response:
    """``GET /data/services/audit/{xsiType}/{id}``: the item's change history."""
    xsi_type, item_id = req.params["xsi_type"], req.params["item_id"]
    rows = req.state.store.query(
        "SELECT * FROM history WHERE item_id=? AND lower(xsi_type)=lower(?) ORDER BY id",
        (item_id, xsi_type),
    )
    exists, project = _item_project(req, xsi_type, item_id)
    if not project and rows:
        project = str(rows[-1]["project"])
    user = req.user
    is_admin = user is not None and user.is_admin
    if xsi_type.lower() == "xdat:user":
        readable = is_admin or (user is not None and user.login == item_id)
    else:
        readable = is_admin or bool(project and req.state.can_read(user, project))
    if not (exists or rows) or not readable:
        raise HTTPError(404, f"Unable to find {xsi_type} {item_id}")
    table = [
        {
            "id": r["id"],
            "timestamp": r["timestamp"],
            "user": r["login"],
            "action": r["action"],
            "xsiType": r["xsi_type"],
            "item_id": r["item_id"],
            "project": r["project"],
            "details": r["details"],
        }
        for r in rows
    ]
    return wire.result_set(table, COLUMNS, fmt=req.fmt, title="History")


ROUTES = [item_history]
