"""The one place that reads XNAT's JSON envelopes.

* Tables: ``{"ResultSet": {"Result": [{...}], "totalRecords": "N", ...}}`` — or, on some
  deployments, a bare JSON array of row objects.
* Items: ``{"items": [{"meta": {"xsi:type": ...}, "data_fields": {...}, "children": [...]}]}``.

Cells come back as strings (``""`` for null) whatever the JSON carried, so models convert in one
way only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["cell_text", "parse_item_document", "parse_result_set", "result_set_total"]


def cell_text(value: Any) -> str:
    """Render one cell as XNAT prints it: ``""`` for null, ``true``/``false``, else ``str``.

    Args:
        value: A JSON value.

    Returns:
        The string.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _rows(payload: Any) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        envelope = payload.get("ResultSet", payload)
        if isinstance(envelope, Mapping):
            rows = envelope.get("Result")
            if isinstance(rows, list):
                return rows
            if rows is None and "ResultSet" in payload:
                return []
    raise ValueError(
        "expected {'ResultSet': {'Result': [...]}} or a JSON array, got "
        f"{type(payload).__name__} {str(payload)[:80]!r}"
    )


def parse_result_set(payload: Any) -> list[dict[str, str]]:
    """Rows of an XNAT table as string-only dicts.

    Args:
        payload: Decoded JSON of a listing.

    Returns:
        One dict per row; every value a string (``""`` for null).

    Raises:
        ValueError: The payload is not a table.

    Example:
        ```python
        parse_result_set({"ResultSet": {"Result": [{"ID": "P1", "name": ""}]}})
        # [{'ID': 'P1', 'name': ''}]
        ```
    """
    rows = _rows(payload)
    parsed: list[dict[str, str]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"table row is not an object: {str(row)[:80]!r}")
        parsed.append({str(key): cell_text(value) for key, value in row.items()})
    return parsed


def result_set_total(payload: Any) -> int | None:
    """The ``totalRecords`` of a table (a string in XNAT's JSON), when present.

    Args:
        payload: Decoded JSON of a listing.

    Returns:
        The count, or None when absent or unreadable.
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("ResultSet"), Mapping):
        return None
    try:
        return int(str(payload["ResultSet"].get("totalRecords", "")))
    except ValueError:
        return None


def _flatten_item(item: Mapping[str, Any]) -> dict[str, Any]:
    data = item.get("data_fields") or {}
    flat: dict[str, Any] = {
        str(k): cell_text(v) for k, v in data.items() if not isinstance(v, (dict, list))
    }
    meta = item.get("meta") or {}
    xsi_type = meta.get("xsi:type") if isinstance(meta, Mapping) else None
    if xsi_type:
        flat.setdefault("xsiType", str(xsi_type))
    for child in item.get("children") or []:
        if not isinstance(child, Mapping) or "field" not in child:
            continue
        kids = [_flatten_item(k) for k in child.get("items") or [] if isinstance(k, Mapping)]
        flat.setdefault(str(child["field"]), []).extend(kids)
    fields = flat.get("fields/field")
    if isinstance(fields, list):
        flat["fields"] = {
            str(f.get("name", "")): str(f.get("field", "")) for f in fields if f.get("name")
        }
    return flat


def parse_item_document(payload: Any) -> dict[str, Any]:
    """Flatten an XNAT item document (``format=json`` on a single item).

    The first item's ``data_fields`` become string values; ``meta["xsi:type"]`` becomes
    ``xsiType``; each child list (``"scans/scan"``, ``"resources/resource"``, ``"PI"``...) becomes
    a list of flattened child dicts under its ``field`` name; custom variables (``fields/field``)
    are also collected as ``fields: {name: value}``.

    Args:
        payload: Decoded JSON.

    Returns:
        The flattened item.

    Raises:
        ValueError: Not an item document, or it holds no item.

    Example:
        ```python
        doc = {"items": [{"meta": {"xsi:type": "xnat:mrSessionData"},
                          "data_fields": {"ID": "XNAT_E00001", "label": "S1"}, "children": []}]}
        parse_item_document(doc)["xsiType"]  # 'xnat:mrSessionData'
        ```
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("items"), list):
        raise ValueError(f"expected {{'items': [...]}}, got {str(payload)[:80]!r}")
    items = payload["items"]
    if not items or not isinstance(items[0], Mapping):
        raise ValueError("the item document holds no item")
    return _flatten_item(items[0])
