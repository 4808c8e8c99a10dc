"""XNAT's wire formats, written independently of the client's parsers.

ResultSet tables (JSON/XML/CSV), item documents, Restlet status pages, ``text/uri-list`` bodies
and XAPI JSON. Every table cell is a string and SQL NULL is ``""``, as XNAT prints them.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

STATUS_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    412: "Precondition Failed",
    417: "Expectation Failed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def cell(value: Any) -> str:
    """Render one table cell as XNAT does: strings everywhere, ``""`` for null.

    Args:
        value: Any database value.

    Returns:
        The string form.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, str]]:
    """Project rows onto columns, turning every value into a string cell.

    Args:
        rows: Source rows (dict-like).
        columns: Output columns, in order.

    Returns:
        A list of string-only dicts.
    """
    return [{col: cell(row.get(col)) for col in columns} for row in rows]


def result_set(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    fmt: str | None = "json",
    total_records: bool = True,
    title: str | None = None,
    column_meta: list[dict[str, str]] | None = None,
    sort_by: str | None = None,
    sort_desc: bool = False,
    status_code: int = 200,
) -> Response:
    """Build an XNAT ResultSet response in the requested format.

    Args:
        rows: Rows to print.
        columns: Column names, in order.
        fmt: ``json`` (default), ``xml``, ``csv`` or ``html``.
        total_records: Whether to include ``totalRecords`` (a string).
        title: Optional ``title``.
        column_meta: Optional ``Columns`` array (file listings).
        sort_by: Optional comma list of columns to sort by (``sortBy``).
        sort_desc: Sort descending (``sortOrder=DESC``).
        status_code: HTTP status.

    Returns:
        The response.
    """
    data = table_rows(rows, columns)
    if sort_by:
        keys = [k for k in sort_by.split(",") if k in columns]
        if keys:
            data.sort(key=lambda r: tuple(r[k] for k in keys), reverse=sort_desc)
    fmt = (fmt or "json").lower()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in data:
            writer.writerow([row[c] for c in columns])
        return Response(buf.getvalue(), status_code=status_code, media_type="text/csv")
    if fmt == "xml":
        attrs = f' totalRecords="{len(data)}"' if total_records else ""
        if title:
            attrs += f' title="{escape(title)}"'
        parts = [f"<ResultSet{attrs}><results><columns>"]
        parts.extend(f"<column>{escape(c)}</column>" for c in columns)
        parts.append("</columns><rows>")
        for row in data:
            parts.append("<row>")
            parts.extend(f"<cell>{escape(row[c])}</cell>" for c in columns)
            parts.append("</row>")
        parts.append("</rows></results></ResultSet>")
        return Response("".join(parts), status_code=status_code, media_type="text/xml")
    if fmt == "html":
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in columns) + "</tr>"
            for r in data
        )
        page = f"<html><body><table><tr>{head}</tr>{body}</table></body></html>"
        return Response(page, status_code=status_code, media_type="text/html")
    envelope: dict[str, Any] = {"Result": data}
    if total_records:
        envelope["totalRecords"] = str(len(data))
    if title:
        envelope["title"] = title
    if column_meta is not None:
        envelope["Columns"] = column_meta
    return json_response({"ResultSet": envelope}, status_code=status_code)


def json_response(payload: Any, *, status_code: int = 200) -> Response:
    """Serialize a JSON payload.

    Args:
        payload: Anything ``json.dumps`` accepts.
        status_code: HTTP status.

    Returns:
        An ``application/json`` response.
    """
    return Response(json.dumps(payload), status_code=status_code, media_type="application/json")


def text_response(text: str, *, status_code: int = 200, media_type: str = "text/plain") -> Response:
    """A plain text response.

    Args:
        text: The body.
        status_code: HTTP status.
        media_type: The content type.

    Returns:
        The response.
    """
    return Response(text, status_code=status_code, media_type=media_type)


def uri_list(uris: Iterable[str], *, status_code: int = 200) -> Response:
    """A ``text/uri-list`` body: one URI per line, each ended with CRLF.

    Args:
        uris: The URIs.
        status_code: HTTP status (301/303 for XNAT's redirect-style replies).

    Returns:
        The response.
    """
    body = "".join(f"{u}\r\n" for u in uris)
    return Response(body, status_code=status_code, media_type="text/uri-list")


def status_page(status_code: int, message: str | None = None) -> str:
    """Render Restlet 1.1's HTML status page, the body of every ``/data`` error.

    Args:
        status_code: HTTP status.
        message: The reason shown inside ``<h3>``; Restlet's stock text when None.

    Returns:
        The HTML page.
    """
    reason = STATUS_REASONS.get(status_code, "Error")
    text = html.escape(message if message else reason)
    return (
        "<html>\n<head>\n   <title>Status page</title>\n</head>\n"
        '<body style="font-family: sans-serif;">\n'
        '<p style="font-size: 1.2em;font-weight: bold;margin: 1em 0px;">'
        f"{html.escape(reason)}</p>\n"
        f"<h3>{text}</h3>\n"
        "<p>You can get technical details <a "
        f'href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.{status_code // 100}">'
        'here</a>.<br>\nPlease continue your visit at our <a href="/">home page</a>.\n</p>\n'
        "</body>\n</html>\n"
    )


def item_document(
    xsi_type: str,
    data_fields: Mapping[str, Any],
    children: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
    *,
    child_types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build XNAT's single-item JSON document (``ItemJSONBuilder`` shape).

    Args:
        xsi_type: The item's type, e.g. ``xnat:mrSessionData``.
        data_fields: Scalar fields of the item (None values are dropped, as XNAT omits nulls).
        children: ``(field, items)`` pairs such as ``("scans/scan", [...])``; each child item is a
            mapping with a ``data_fields`` dict and optionally ``xsi_type``.
        child_types: Default xsi types per child field.

    Returns:
        The ``{"items": [...]}`` document.
    """
    kids = []
    for field, items in children:
        if not items:
            continue
        kid_items = []
        for item in items:
            kid_type = str(item.get("xsi_type") or (child_types or {}).get(field, ""))
            kid_items.append(
                {
                    "meta": {"isHistory": False, "xsi:type": kid_type},
                    "data_fields": {
                        k: v for k, v in dict(item.get("data_fields", {})).items() if v is not None
                    },
                    "children": list(item.get("children", [])),
                }
            )
        kids.append({"field": field, "items": kid_items})
    return {
        "items": [
            {
                "meta": {"isHistory": False, "xsi:type": xsi_type, "start_date": ""},
                "data_fields": {k: v for k, v in data_fields.items() if v not in (None, "")},
                "children": kids,
            }
        ]
    }


def item_xml(root: str, xsi_type: str, fields: Mapping[str, Any], inner: str = "") -> str:
    """Render a minimal XFT XML document for an item (``format=xml``).

    Args:
        root: Element name, e.g. ``xnat:MRSession``.
        xsi_type: The item's xsi type.
        fields: Attributes (ID, project, label) and simple child elements.
        inner: Pre-rendered inner XML.

    Returns:
        The XML text.
    """
    attr_names = {"ID", "project", "label", "type", "secondary_ID"}
    attrs = " ".join(
        f'{k}="{escape(cell(v), {chr(34): "&quot;"})}"'
        for k, v in fields.items()
        if k in attr_names and v not in (None, "")
    )
    elements = "".join(
        f"<xnat:{k}>{escape(cell(v))}</xnat:{k}>"
        for k, v in fields.items()
        if k not in attr_names and v not in (None, "")
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{root} {attrs} xmlns:xnat="http://nrg.wustl.edu/xnat" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:type="{escape(xsi_type)}">{elements}{inner}</{root}>'
    )
