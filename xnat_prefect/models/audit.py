"""``AuditEntry``: one history/audit record (workflow rows or item change history)."""

from __future__ import annotations

from xnat_prefect.models._base import OptDateTime, OptStr, XNATModel, column

__all__ = ["AuditEntry"]


class AuditEntry(XNATModel):
    """An audit record.

    XNAT has no single audit table: entries come from workflows (``launch_time``,
    ``pipeline_name``, ``ID``, ``data_type``...) or from item history.

    Attributes:
        timestamp: When it happened.
        username: Who did it.
        action: What was done (pipeline / event name).
        project: Project.
        item_id: Item the action was about.
        xsi_type: Item type.
        details: Free text (status, comments).
    """

    timestamp: OptDateTime = column("timestamp", "launch_time", "change_date", "date")
    username: OptStr = column("username", "user", "insert_user", "login", "create_user")
    action: OptStr = column("action", "pipeline_name", "event_action")
    project: OptStr = column("project", "externalID", "external_id")
    item_id: OptStr = column("item_id", "ID", "id", "data_id")
    xsi_type: OptStr = column("xsi_type", "data_type", "xsiType", "element_name")
    details: OptStr = column("details", "comments", "message", "status")
