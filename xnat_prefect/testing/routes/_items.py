"""Helpers shared by the subject, experiment and scan routes.

Storage conventions (modules writing the ``subjects``/``experiments``/``scans`` tables follow them):

* ``fields`` JSON is a flat object of extra shortcut values that have no column of their own
  (``gender``, ``yob``, ``fieldStrength``, ``dcmPatientName``...) plus ``"custom"``: an object
  ``{name: value}`` of custom variables (XNAT's ``fields/field``).
* A share's ``label`` is ``""`` when the item was shared without ``label=``: listings of the
  target project then show the primary label and ``/projects`` shows the accession ID.

Write parameters come from the query string, form fields and an XML body; :func:`write_params`
folds them into one ``{name-or-xpath: value}`` map (query wins), and :func:`split_params` sorts
it into shortcuts, xpath tails of the item's own types, and custom variables.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from xnat_prefect.testing import wire
from xnat_prefect.testing.http import EmuRequest, HTTPError

VALID_LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")
XSI_NS = "{http://www.w3.org/2001/XMLSchema-instance}"
CUSTOM_XPATH = re.compile(
    r"^(?P<root>[A-Za-z]+:[A-Za-z]+)/fields/field\[name=(?P<q>['\"]?)(?P<name>[^'\"\]]+)(?P=q)\]"
    r"/field$"
)
_TYPE_QUALIFIER = re.compile(r"\[@xsi:type=[^\]]*\]")
# fmt: off
CONTROL_PARAMS = frozenset((
    "format", "xsiType", "inbody", "req_format", "XNAT_CSRF",
    "removeFiles", "primary", "triggerPipelines", "pullDataFromHeaders", "fixScanTypes",
    "allowDataDeletion", "event_reason", "event_type", "event_action", "event_comment",
    "event_id",
))
# fmt: on
XML_ATTRS = ("ID", "project", "label", "type", "name", "format", "content")
_SKIPPED_XML = {"sharing", "scans", "resources", "experiments", "assessors", "out", "in", "file"}

#: Item xsi type → XFT root element name (XML documents).
ROOT_ELEMENTS: dict[str, str] = {
    "xnat:subjectData": "xnat:Subject",
    "xnat:mrSessionData": "xnat:MRSession",
    "xnat:ctSessionData": "xnat:CTSession",
    "xnat:petSessionData": "xnat:PETSession",
    "xnat:petmrSessionData": "xnat:PETMRSession",
    "xnat:crSessionData": "xnat:CRSession",
    "xnat:otherDicomSessionData": "xnat:OtherDicomSession",
    "xnat:qcManualAssessorData": "xnat:QCManualAssessment",
}


@dataclass
class Node:
    """One child item of an item document (a scan, a resource, a share, a custom field...).

    Attributes:
        xsi_type: Its type.
        data_fields: Scalar fields (empty values are dropped on output).
        kids: Nested ``(field, nodes)`` groups.
    """

    xsi_type: str
    data_fields: dict[str, Any]
    kids: list[tuple[str, list[Node]]] = field(default_factory=list)


def load_fields(text: str | None) -> dict[str, Any]:
    """Parse a ``fields`` JSON column.

    Args:
        text: The column value.

    Returns:
        The object (``{}`` when empty or not an object).
    """
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def custom_vars(fields: Mapping[str, Any]) -> dict[str, str]:
    """The custom variables inside a parsed ``fields`` object.

    Args:
        fields: Parsed ``fields`` column.

    Returns:
        ``{name: value}``.
    """
    custom = fields.get("custom")
    return {str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else {}


def merged_fields(text: str | None, values: Mapping[str, str], custom: Mapping[str, str]) -> str:
    """Merge new extra values and custom variables into a ``fields`` column.

    Args:
        text: Current column value.
        values: Extra shortcut values to set.
        custom: Custom variables to set.

    Returns:
        The new JSON text.
    """
    data = load_fields(text)
    data.update(values)
    if custom:
        data["custom"] = {**custom_vars(data), **custom}
    return json.dumps(data, sort_keys=True)


def root_type(tag: str) -> str | None:
    """Map an XML root element name (``MRSession``, ``xnat:Subject``) to its xsi type.

    Args:
        tag: Element local name, with or without prefix.

    Returns:
        The xsi type, or None when unknown.
    """
    local = tag.split("}")[-1].split(":")[-1]
    for xsi, root in ROOT_ELEMENTS.items():
        if root.split(":")[1] == local:
            return xsi
    if local.endswith("Scan"):
        stem = local[: -len("Scan")]
        stem = stem.lower() if stem.isupper() else stem[:1].lower() + stem[1:]
        return f"xnat:{stem}ScanData"
    return None


def root_element(xsi_type: str) -> str:
    """The XFT root element of an item type (``xnat:mrScanData`` → ``xnat:MRScan``).

    Args:
        xsi_type: The item's type.

    Returns:
        The prefixed element name.
    """
    if xsi_type in ROOT_ELEMENTS:
        return ROOT_ELEMENTS[xsi_type]
    local = xsi_type.split(":")[-1]
    if local.endswith("ScanData"):
        stem = local[: -len("ScanData")]
        return f"xnat:{stem.upper() if stem.islower() else stem[:1].upper() + stem[1:]}Scan"
    return f"xnat:{local}"


def _xml_body(req: EmuRequest) -> tuple[str | None, dict[str, str]]:
    wants_xml = req.content_type in ("text/xml", "application/xml") or req.flag("inbody")
    if req.body_path is None or not (wants_xml or (req.arg("req_format") or "") == "xml"):
        return None, {}
    try:
        root = ET.fromstring(req.body_bytes())
    except ET.ParseError as exc:
        raise HTTPError(422, f"Unable to parse the XML document: {exc}") from exc
    xsi = root.get(f"{XSI_NS}type") or root_type(root.tag)
    if xsi is None:
        raise HTTPError(422, f"Unknown document type {root.tag.split('}')[-1]}")
    params: dict[str, str] = {}
    for name, value in root.attrib.items():
        if not name.startswith("{"):
            params[f"{xsi}/{name}"] = value
    for child in root:
        tag = child.tag.split("}")[-1]
        if tag in _SKIPPED_XML:
            continue
        if tag == "fields":
            for item in child:
                params[f"{xsi}/fields/field[name={item.get('name', '')}]/field"] = item.text or ""
        elif len(child):
            for grand in child:
                params[f"{xsi}/{tag}/{grand.tag.split('}')[-1]}"] = grand.text or ""
        else:
            params[f"{xsi}/{tag}"] = child.text or ""
    return xsi, params


def write_params(req: EmuRequest) -> tuple[str | None, dict[str, str]]:
    """Collect an item write's ``xsiType`` and field parameters.

    Sources in increasing priority: XML body, form fields, query string. Control parameters
    (``format``, ``event_reason``, ``removeFiles``...) are left out.

    Args:
        req: The request.

    Returns:
        ``(xsiType or None, {name-or-xpath: value})``.

    Raises:
        HTTPError: 422 for an unparseable XML body.
    """
    body_type, params = _xml_body(req)
    params.update(req.form)
    params.update(req.query.items())
    xsi = req.arg("xsiType") or body_type
    return xsi, {k: v for k, v in params.items() if k not in CONTROL_PARAMS}


@dataclass
class ParamSplit:
    """Write parameters sorted by kind.

    Attributes:
        shortcuts: Plain names (``gender``, ``date``, ``quality``).
        tails: Xpaths rooted at one of the item's own types, without the root
            (``demographics/gender``, ``note``, ``fields`` excluded).
        custom: Custom variables ``{name: value}``.
        foreign: Xpaths of other types (silently ignored, as XNAT does).
    """

    shortcuts: dict[str, str] = field(default_factory=dict)
    tails: dict[str, str] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)


def split_params(
    params: Mapping[str, str], own_types: Iterable[str], custom_types: Iterable[str]
) -> ParamSplit:
    """Sort write parameters into shortcuts, own-type xpath tails and custom variables.

    Args:
        params: From :func:`write_params`.
        own_types: Xpath roots that address this item (its type and its base types).
        custom_types: Roots under which ``fields/field[name=X]/field`` sets a custom variable.

    Returns:
        The split.
    """
    own, customs = set(own_types), set(custom_types)
    split = ParamSplit()
    for key, value in params.items():
        custom = CUSTOM_XPATH.match(key)
        if custom is not None:
            if custom["root"] in customs:
                split.custom[custom["name"]] = value
            else:
                split.foreign.append(key)
        elif "/" in key:
            root, _, tail = key.partition("/")
            if root in own:
                split.tails[_TYPE_QUALIFIER.sub("", tail)] = value
            else:
                split.foreign.append(key)
        else:
            split.shortcuts[key] = value
    return split


def field_changes(
    split: ParamSplit, columns: Mapping[str, str], extras: Iterable[str], *, shortcuts: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """Map shortcuts (optionally) and xpath tails to column updates and ``fields`` JSON extras.

    Args:
        split: Sorted write parameters.
        columns: Known name → table column.
        extras: Known names stored in the ``fields`` JSON.
        shortcuts: Whether plain shortcut names count (False: xpaths only).

    Returns:
        ``({column: value}, {extra: value})``; unknown names are dropped, as XNAT ignores them.
    """
    wanted = set(extras)
    changed: dict[str, str] = {}
    extra: dict[str, str] = {}
    for source in (split.shortcuts, split.tails) if shortcuts else (split.tails,):
        for name, value in source.items():
            if name in columns:
                changed[columns[name]] = value
            elif name in wanted:
                extra[name] = value
    return changed, extra


def resource_nodes(req: EmuRequest, parent_type: str, parent_id: str) -> list[Node]:
    """The resources of one parent as document child nodes.

    Args:
        req: The request.
        parent_type: ``subject``, ``experiment`` or ``scan``.
        parent_id: The parent's key.

    Returns:
        One node per resource.
    """
    rows = req.state.store.query(
        "SELECT * FROM resources WHERE parent_type=? AND parent_id=? "
        "ORDER BY xnat_abstractresource_id",
        (parent_type, parent_id),
    )
    return [
        Node(
            str(r["element_name"]),
            {
                "xnat_abstractresource_id": str(r["xnat_abstractresource_id"]),
                "label": r["label"],
                "format": r["format"],
                "content": r["content"],
                "description": r["description"],
                "tags": r["tags"],
                "file_count": None if r["file_count"] is None else str(r["file_count"]),
                "file_size": None if r["file_size"] is None else str(r["file_size"]),
            },
        )
        for r in rows
    ]


def custom_nodes(xsi_type: str, custom: Mapping[str, str]) -> list[Node]:
    """Custom variables as ``fields/field`` nodes (``name`` and ``field``).

    Args:
        xsi_type: The owning item's type (the field type is ``{type}_field``).
        custom: ``{name: value}``.

    Returns:
        The nodes.
    """
    return [Node(f"{xsi_type}_field", {"name": k, "field": v}) for k, v in custom.items()]


def _json_node(node: Node) -> dict[str, Any]:
    data = {k: v for k, v in node.data_fields.items() if v not in (None, "")}
    return {"xsi_type": node.xsi_type, "data_fields": data, "children": _json_kids(node.kids)}


def _json_kids(kids: Sequence[tuple[str, list[Node]]]) -> list[dict[str, Any]]:
    if not kids:
        return []
    doc = wire.item_document("", {}, [(f, [_json_node(n) for n in nodes]) for f, nodes in kids])
    children: list[dict[str, Any]] = doc["items"][0]["children"]
    return children


def _xml_node(tag: str, node: Node) -> str:
    data = {k: wire.cell(v) for k, v in node.data_fields.items() if v not in (None, "")}
    if tag == "field" and "name" in data:
        value = escape(data.get("field", ""))
        return f"<xnat:field name={quoteattr(data['name'])}>{value}</xnat:field>"
    attrs = "".join(f" {k}={quoteattr(data[k])}" for k in XML_ATTRS if k in data)
    body = "".join(
        f"<xnat:{k}>{escape(v)}</xnat:{k}>" for k, v in data.items() if k not in XML_ATTRS
    )
    return (
        f'<xnat:{tag}{attrs} xsi:type="{escape(node.xsi_type)}">'
        f"{body}{_xml_kids(node.kids)}</xnat:{tag}>"
    )


def _xml_kids(kids: Sequence[tuple[str, list[Node]]]) -> str:
    out = []
    for path, nodes in kids:
        if not nodes:
            continue
        outer, _, inner = path.rpartition("/")
        rendered = "".join(_xml_node(inner, n) for n in nodes)
        out.append(f"<xnat:{outer}>{rendered}</xnat:{outer}>" if outer else rendered)
    return "".join(out)


def item_response(
    req: EmuRequest,
    xsi_type: str,
    data_fields: Mapping[str, Any],
    kids: list[tuple[str, list[Node]]],
) -> Response:
    """Answer an item GET: JSON document, XFT XML, or (without ``format``) an HTML page.

    Args:
        req: The request.
        xsi_type: The item's type.
        data_fields: Its scalar fields.
        kids: Child groups (``scans/scan``, ``fields/field``...).

    Returns:
        The response.
    """
    if req.fmt == "json":
        children = [(f, [_json_node(n) for n in nodes]) for f, nodes in kids]
        return wire.json_response(wire.item_document(xsi_type, data_fields, children))
    if req.fmt == "xml":
        text = wire.item_xml(root_element(xsi_type), xsi_type, data_fields, _xml_kids(kids))
        return wire.text_response(text, media_type="text/xml")
    title = escape(f"{data_fields.get('label') or data_fields.get('ID', '')}")
    page = f"<html><head><title>{title}</title></head><body><h2>{title}</h2></body></html>"
    return wire.text_response(page, media_type="text/html")


def history_table(req: EmuRequest, item_id: str) -> Response:
    """``GET .../history``: the item's change rows from the history table.

    Args:
        req: The request.
        item_id: Accession ID.

    Returns:
        A table ``change_date, user, action, xsiType, ID, project, details`` (oldest first).
    """
    rows = [
        {
            "change_date": r["timestamp"],
            "user": r["login"],
            "action": r["action"],
            "xsiType": r["xsi_type"],
            "ID": r["item_id"],
            "project": r["project"],
            "details": r["details"],
        }
        for r in req.state.store.query(
            "SELECT * FROM history WHERE item_id=? ORDER BY id", (item_id,)
        )
    ]
    columns = ["change_date", "user", "action", "xsiType", "ID", "project", "details"]
    return wire.result_set(rows, columns, fmt=req.fmt, title="History")
