"""XNAT's listing query parameters, shared by every QueryOrganizer-style table.

``columns=`` picks columns (``URI`` always last when the table has one), shortcut-named
parameters filter (comma = OR, ``*``/``%`` = LIKE, ``a-b`` ranges on dates/numbers),
``limit``/``offset`` page (only where XNAT honours them), ``sortBy``/``sortOrder`` sort.
Misspelled filter names are silently ignored, as in XNAT.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest

RESERVED = {
    "format",
    "columns",
    "limit",
    "offset",
    "sortBy",
    "sortOrder",
    "xsiType",
    "accept-not-found",
    "all",
}
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?)-(\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?)$")


def _matches(value: str, wanted: str) -> bool:
    for option in wanted.split(","):
        option = option.strip()
        if "*" in option or "%" in option:
            pattern = option.replace("%", "*")
            if fnmatch.fnmatchcase(value.lower(), pattern.lower()):
                return True
            continue
        ranged = _RANGE.match(option)
        if ranged and value:
            low, high = ranged.groups()
            try:
                if low[:4].isdigit() and "-" in low:
                    if low <= value[: len(low)] <= high:
                        return True
                elif float(low) <= float(value) <= float(high):
                    return True
            except ValueError:
                pass
            continue
        if value == option:
            return True
    return False


def filter_rows(
    req: EmuRequest, rows: Sequence[Mapping[str, Any]], filterable: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Apply shortcut filters from the query string.

    Args:
        req: The request.
        rows: Candidate rows (keys are column names).
        filterable: Column names that may be used as filters.

    Returns:
        The rows that pass every filter.
    """
    filters = {
        name: value
        for name, value in req.query.items()
        if name not in RESERVED and name in filterable
    }
    if not filters:
        return list(rows)
    return [
        row
        for row in rows
        if all(_matches(wire.cell(row.get(name)), value) for name, value in filters.items())
    ]


def pick_columns(
    req: EmuRequest,
    default: Sequence[str],
    available: Sequence[str],
    *,
    uri: bool = True,
) -> list[str]:
    """Resolve ``columns=``.

    Args:
        req: The request.
        default: Default columns (without URI).
        available: Every column the table knows.
        uri: Whether ``URI`` is appended last.

    Returns:
        The output columns.
    """
    asked = req.query.get("columns")
    if not asked or asked == "DEFAULT":
        columns = list(default)
    else:
        columns = []
        for name in asked.split(","):
            name = name.strip()
            if name and name != "URI" and name not in columns:
                columns.append(name)
        columns = [c for c in columns if c in available or "/" in c]
    if uri:
        columns.append("URI")
    return columns


def page(req: EmuRequest, rows: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], bool]:
    """Apply ``limit``/``offset`` (subject and experiment listings only).

    Args:
        req: The request.
        rows: Rows.

    Returns:
        The page and whether paging was requested (XNAT then drops ``totalRecords``).
    """
    limit = req.query.get("limit")
    offset = req.query.get("offset")
    if limit is None and offset is None:
        return rows, False
    start = int(offset) if offset and offset.isdigit() else 0
    if limit == "*":
        return rows[start:], True
    count = int(limit) if limit and limit.isdigit() else 100
    return rows[start : start + count], True


def listing(
    req: EmuRequest,
    rows: Sequence[Mapping[str, Any]],
    *,
    default: Sequence[str],
    available: Sequence[str],
    uri: bool = True,
    paging: bool = False,
    title: str | None = None,
    total_records: bool = True,
) -> Response:
    """Answer a listing request with XNAT's table conventions.

    Args:
        req: The request.
        rows: Every row the caller may see (keys are column names, plus ``URI``).
        default: Default columns.
        available: All known columns (also the filterable ones).
        uri: Whether the table has a ``URI`` column.
        paging: Whether ``limit``/``offset`` apply.
        title: Optional table title.
        total_records: Whether ``totalRecords`` is printed (when not paging).

    Returns:
        The response.
    """
    selected = filter_rows(req, rows, available)
    paged = False
    if paging:
        selected, paged = page(req, selected)
    columns = pick_columns(req, default, available, uri=uri)
    return wire.result_set(
        selected,
        columns,
        fmt=req.fmt,
        total_records=total_records and not paged,
        title=title,
        sort_by=req.query.get("sortBy"),
        sort_desc=(req.query.get("sortOrder") or "").upper() == "DESC",
    )
