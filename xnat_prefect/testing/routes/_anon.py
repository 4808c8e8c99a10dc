"""Site and project anonymization on receipt: a small, documented subset of DicomEdit 6.

XNAT runs the enabled site-wide script, then the enabled project script, on every DICOM file
it receives (C-STORE, gradual-DICOM, DICOM-zip, SI), so archived bytes differ from uploads
while pixel data is kept. :func:`scripts_for` picks the scripts (the emulator ships the site
script DISABLED — XNAT enables it — so uploads stay byte-identical unless a test turns it on
with ``PUT /xapi/anonymize/site/enabled?enable=true``; a session uploaded with
``prevent_anon=true`` skips the project script). :func:`anonymize` applies them.

Statements understood (one per line):

* ``(gggg,eeee) := "text"`` — set the element (created with its dictionary VR if absent;
  private or unknown tags get ``LO``); the value may also be one of XNAT's variables
  ``project``, ``subject``, ``session``, ``modality``, or another element ``(hhhh,iiii)``;
* ``-(gggg,eeee)`` — delete the element;
* ``<variable or (tag)> = "text" ? <statement>`` and ``!=`` — a condition on one statement;
* ``//`` comments, blank lines, ``version "..."`` and ``describe ...`` lines are skipped.

Anything else (functions such as ``hashUID[...]``, ``new UID``, ranges, lookups) and changes
to file-meta group ``0002`` are NOT applied: each such line is reported back (the receiver
writes it to the prearchive session's log) and the rest of the script still runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from xnat_prefect.testing.routes.siteconfig import SITE_SCRIPT, SITE_SCRIPT_ENABLED, preference
from xnat_prefect.testing.state import EmulatorState

TAG = r"\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)"
VARIABLES = ("project", "subject", "session", "modality")
_ASSIGN = re.compile(rf"^{TAG}\s*:=\s*(.+)$")
_DELETE = re.compile(rf"^-\s*{TAG}$")
_CONDITION = re.compile(rf'^({TAG}|[A-Za-z]+)\s*(!=|=)\s*"((?:[^"\\]|\\.)*)"\s*\?\s*(.+)$')
_STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
_SKIPPED = re.compile(r"^(//.*|version\s+.*|describe\s+.*)?$")


@dataclass(frozen=True)
class Statement:
    """One understood script line: ``op`` is ``set`` or ``delete``."""

    op: str
    tag: int
    value: str = ""
    value_kind: str = "text"  # text | variable | tag
    condition: tuple[str, str, str] | None = None  # (operand, "=" or "!=", text)


def _tag(group: str, element: str) -> int:
    return int(Tag(int(group, 16), int(element, 16)))


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse(script: str) -> tuple[list[Statement], list[str]]:
    """Read a script into the statements the emulator applies.

    Args:
        script: DicomEdit text.

    Returns:
        ``(statements, unsupported lines)``.
    """
    statements: list[Statement] = []
    unsupported: list[str] = []
    for raw in script.splitlines():
        line = raw.strip()
        if _SKIPPED.match(line):
            continue
        statement = _statement(line)
        if statement is None:
            unsupported.append(line)
        else:
            statements.append(statement)
    return statements, unsupported


def _statement(line: str) -> Statement | None:
    condition = None
    match = _CONDITION.match(line)
    if match:
        operand = match.group(1)
        if match.group(2):
            operand = f"({match.group(2)},{match.group(3)})"
        elif operand not in VARIABLES:
            return None
        condition = (operand, match.group(4), _unescape(match.group(5)))
        line = match.group(6).strip()
    deleted = _DELETE.match(line)
    if deleted:
        tag = _tag(deleted.group(1), deleted.group(2))
        return None if tag >> 16 == 0x0002 else Statement("delete", tag, condition=condition)
    assigned = _ASSIGN.match(line)
    if not assigned:
        return None
    tag = _tag(assigned.group(1), assigned.group(2))
    value = assigned.group(3).strip()
    if tag >> 16 == 0x0002:
        return None
    text = _STRING.match(value)
    if text:
        return Statement("set", tag, _unescape(text.group(1)), "text", condition)
    if value in VARIABLES:
        return Statement("set", tag, value, "variable", condition)
    other = re.fullmatch(TAG, value)
    if other:
        return Statement("set", tag, f"({other.group(1)},{other.group(2)})", "tag", condition)
    return None


def _element_text(ds: Dataset, ref: str) -> str:
    match = re.fullmatch(TAG, ref)
    assert match is not None
    tag = _tag(match.group(1), match.group(2))
    element = ds.get(tag)
    return "" if element is None or element.value is None else str(element.value)


def _operand(ds: Dataset, operand: str, variables: dict[str, str]) -> str:
    return _element_text(ds, operand) if operand.startswith("(") else variables.get(operand, "")


def _set(ds: Dataset, tag: int, value: str) -> None:
    if tag in ds:
        ds[tag].value = value
        return
    try:
        vr = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        vr = "LO"
    ds.add_new(tag, vr, value)


def apply(ds: Dataset, statements: list[Statement], variables: dict[str, str]) -> list[str]:
    """Apply parsed statements to a dataset in memory.

    Args:
        ds: The dataset.
        statements: From :func:`parse`.
        variables: ``project``, ``subject``, ``session``, ``modality`` values.

    Returns:
        Problems met (values a VR refused), as text.
    """
    problems: list[str] = []
    for statement in statements:
        if statement.condition is not None:
            operand, comparison, text = statement.condition
            equal = _operand(ds, operand, variables) == text
            if equal != (comparison == "="):
                continue
        if statement.op == "delete":
            if statement.tag in ds:
                del ds[statement.tag]
            continue
        if statement.value_kind == "variable":
            value = variables.get(statement.value, "")
        elif statement.value_kind == "tag":
            value = _element_text(ds, statement.value)
        else:
            value = statement.value
        try:
            _set(ds, statement.tag, value)
        except (ValueError, TypeError, OverflowError) as exc:
            problems.append(f"{Tag(statement.tag)} := {value!r} refused: {exc}")
    return problems


def scripts_for(state: EmulatorState, project: str, *, prevent_anon: bool = False) -> list[str]:
    """The scripts XNAT would run on a file received for a project, in order.

    Args:
        state: Emulator state.
        project: Project ID (``Unassigned`` has no project script).
        prevent_anon: The upload asked to skip the project script.

    Returns:
        The enabled site-wide script then the enabled project script (possibly none).
    """
    scripts = []
    if preference(state, SITE_SCRIPT_ENABLED):
        site = str(preference(state, SITE_SCRIPT) or "")
        if site.strip():
            scripts.append(site)
    if not prevent_anon:
        row = state.store.one("SELECT * FROM anon_projects WHERE project=?", (project,))
        if row is not None and row["enabled"] and str(row["script"]).strip():
            scripts.append(str(row["script"]))
    return scripts


def anonymize(path: Path, scripts: list[str], variables: dict[str, str]) -> list[str]:
    """Rewrite one DICOM file with the scripts (temp file + rename; pixel data untouched).

    Args:
        path: The received file.
        scripts: From :func:`scripts_for`.
        variables: XNAT's script variables.

    Returns:
        Notes for the session log: unsupported lines and refused values.
    """
    notes: list[str] = []
    statements: list[Statement] = []
    for script in scripts:
        parsed, unsupported = parse(script)
        statements.extend(parsed)
        notes.extend(
            f"anonymization: statement not supported by the emulator: {u}" for u in unsupported
        )
    if not statements:
        return notes
    ds = dcmread(path, force=True)
    notes.extend(f"anonymization: {p}" for p in apply(ds, statements, variables))
    temp = path.with_name(f".{path.name}.anon")
    try:
        ds.save_as(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return notes
