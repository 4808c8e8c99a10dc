"""Audit trail helpers of :class:`AdminService` (XNAT has no ``/data/audit``).

The source is XNAT's audit service ``GET /data/services/audit/{xsiType}/{id}?format=json``
(``AuditRestlet``). On XNAT it is workflow based: one event per workflow of the item (uploads,
archiving, edits, pipeline and container runs, sharing...) merged with the item's XFT change
history, as ``{"events": [{"event_id", "event_action", "event_date" (epoch ms), "event_user",
"event_type", "event_reason", "event_category", "event_status", "changesets"}]}``. A
``ResultSet`` table (``timestamp, user, action, xsiType, item_id, project, details``) is read
too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import InvalidInputError, PermissionDeniedError, ResourceNotFoundError
from xnat_prefect.models._base import to_datetime
from xnat_prefect.models._resultset import parse_result_set
from xnat_prefect.models.audit import AuditEntry

__all__ = ["as_utc", "item_audit", "parse_since"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def as_utc(value: Any) -> datetime | None:
    """Read an XNAT time as an aware UTC datetime.

    Naive times (``2024-01-31 14:05:09.123``) are XNAT server-local time and are read as this
    machine's local time; epoch milliseconds are UTC.

    Args:
        value: Text, epoch milliseconds or a datetime.

    Returns:
        The time, or None when blank or unreadable.
    """
    moment = to_datetime(value)
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)


def parse_since(since: Any, *, now: datetime | None = None) -> datetime | None:
    """Parse ``since``: ``"7d"``, ``"12h"``, ``"30m"``, ``"2w"``, a date or an ISO time.

    Args:
        since: The value (a datetime is accepted too), or None.
        now: The reference time for relative values (default: now).

    Returns:
        An aware UTC datetime, or None when ``since`` is None.

    Raises:
        InvalidInputError: Unreadable value.

    Example:
        ```python
        parse_since("7d")  # one week ago
        ```
    """
    if since is None:
        return None
    if isinstance(since, datetime):
        return as_utc(since)
    if isinstance(since, str):
        match = _RELATIVE.match(since)
        if match:
            amount = float(match.group(1))
            delta = timedelta(**{_UNITS[match.group(2).lower()]: amount})
            return (now or datetime.now(UTC)) - delta
        moment = as_utc(since.strip()) if since.strip() else None
        if moment is not None:
            return moment
    raise InvalidInputError(
        f"since={since!r} is not valid; pass a duration such as '7d', '12h', '30m', a date "
        "'2024-01-01' or an ISO time '2024-01-01T08:00:00'"
    )


def _event_entry(
    event: Mapping[str, Any], xsi_type: str, item_id: str, project: str | None
) -> AuditEntry:
    return AuditEntry.model_validate(
        {
            "timestamp": as_utc(event.get("event_date")),
            "username": event.get("event_user"),
            "action": event.get("event_action") or event.get("event_type"),
            "project": project,
            "item_id": item_id,
            "xsi_type": xsi_type,
            "details": event.get("event_status") or event.get("event_reason"),
            "event_id": event.get("event_id"),
            "category": event.get("event_category"),
            "reason": event.get("event_reason"),
            "source": "audit",
        }
    )


def _row_entry(
    row: Mapping[str, str], xsi_type: str, item_id: str, project: str | None
) -> AuditEntry:
    entry = AuditEntry.model_validate({**row, "source": "audit"})
    return entry.model_copy(
        update={
            "timestamp": as_utc(row.get("timestamp") or row.get("date")),
            "project": entry.project or project,
            "item_id": entry.item_id or item_id,
            "xsi_type": entry.xsi_type or xsi_type,
        }
    )


def item_audit(
    client: XNATClient, xsi_type: str, item_id: str, project: str | None
) -> list[AuditEntry]:
    """The audit trail of one item (empty when it is unknown or not readable).

    Args:
        client: The client.
        xsi_type: Item type (``xnat:projectData``, ``xnat:mrSessionData``...).
        item_id: Its ID.
        project: Project to record on entries that do not name one.

    Returns:
        The entries (timestamps as aware UTC datetimes).
    """
    path = f"/data/services/audit/{quote(xsi_type, safe=':')}/{quote(item_id, safe='')}"
    try:
        payload = client.get_json(path, {"format": "json"})
    except (ResourceNotFoundError, PermissionDeniedError):
        return []
    if isinstance(payload, Mapping) and isinstance(payload.get("events"), list):
        return [
            _event_entry(e, xsi_type, item_id, project)
            for e in payload["events"]
            if isinstance(e, Mapping)
        ]
    return [_row_entry(r, xsi_type, item_id, project) for r in parse_result_set(payload)]
