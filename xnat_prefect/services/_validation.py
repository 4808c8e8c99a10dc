"""Input checks shared by the services: ids/labels that become URL segments, limits, columns.

Every id or label that goes into a URL is checked (:func:`check_ref`) and percent-quoted
(:func:`segment`); a bad one raises :class:`~xnat_prefect.errors.InvalidInputError` naming the
parameter and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from xnat_prefect.errors import InvalidInputError

__all__ = [
    "MAX_LABEL_LENGTH",
    "VALID_LABEL",
    "apply_limit",
    "check_choice",
    "check_limit",
    "check_new_label",
    "check_ref",
    "columns_param",
    "segment",
]

T = TypeVar("T")

VALID_LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")
"""What XNAT accepts for new project IDs and subject/experiment labels (else 417/400)."""
MAX_LABEL_LENGTH = 255
"""Longest label XNAT can store (database column, and a folder name in the archive)."""

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f/\\,*?#]")


def check_ref(value: Any, name: str) -> str:
    r"""Check an id or label that will become one URL path segment.

    Rejects empty values, surrounding whitespace, ``/``, ``\``, ``..``, ``,`` and ``*`` (XNAT
    reads the last two as "several items" / "all items" selectors), ``?``, ``#`` and control
    characters.

    Args:
        value: The id or label.
        name: The parameter name, for the error message.

    Returns:
        The value, unchanged.

    Raises:
        InvalidInputError: The value is not usable; the message names ``name`` and the fix.

    Example:
        ```python
        check_ref("SUBJ01", "subject_id")  # 'SUBJ01'
        ```
    """
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{name} must be a string id or label, got {type(value).__name__}; pass e.g. "
            f"{name}='XNAT_E00001'"
        )
    if not value.strip():
        raise InvalidInputError(f"{name} is empty; pass the XNAT id or label")
    if value != value.strip():
        raise InvalidInputError(
            f"{name}={value!r} has leading/trailing whitespace; pass {value.strip()!r}"
        )
    if ".." in value or _FORBIDDEN_CHARS.search(value):
        raise InvalidInputError(
            f"{name}={value!r} is not a single XNAT id or label: it must not contain '/', "
            "'\\', '..', ',', '*', '?', '#' or control characters; pass one id or label "
            "(for several items call the method once per item)"
        )
    return value


def check_new_label(value: Any, name: str) -> str:
    """Check a label (or project ID) about to be created or assigned.

    XNAT accepts letters, digits, ``_`` and ``-`` only (else 417 "Invalid character"), at most
    :data:`MAX_LABEL_LENGTH` of them.

    Args:
        value: The new label.
        name: The parameter name, for the error message.

    Returns:
        The label, unchanged.

    Raises:
        InvalidInputError: Empty, too long or with other characters; the message shows the fix.

    Example:
        ```python
        check_new_label("SUB_001", "label")
        ```
    """
    check_ref(value, name)
    if len(value) > MAX_LABEL_LENGTH:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long; XNAT stores labels in {MAX_LABEL_LENGTH}-"
            f"character columns and as folder names: shorten it (e.g. {value[:32]!r})"
        )
    if not VALID_LABEL.match(value):
        suggestion = re.sub(r"[^A-Za-z0-9_\-]", "_", value)
        raise InvalidInputError(
            f"{name}={value!r} has characters XNAT rejects; use only letters, digits, '_' and "
            f"'-' (e.g. {suggestion!r})"
        )
    return str(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Check a value against an XNAT vocabulary (case-insensitive; returns the canonical form).

    Args:
        value: The given value.
        name: The parameter name.
        choices: Allowed values (canonical spelling).

    Returns:
        The canonical choice.

    Raises:
        InvalidInputError: Not one of ``choices``.

    Example:
        ```python
        check_choice("Usable", "quality", ("usable", "questionable", "unusable"))  # 'usable'
        ```
    """
    if isinstance(value, str):
        for choice in choices:
            if value.strip().lower() == choice.lower():
                return choice
    raise InvalidInputError(f"{name}={value!r} is not valid; use one of: {', '.join(choices)}")


def check_limit(limit: Any) -> int | None:
    """Check a ``limit`` argument.

    Args:
        limit: None (no limit) or a positive integer.

    Returns:
        The limit.

    Raises:
        InvalidInputError: Zero, negative or not an integer.

    Example:
        ```python
        check_limit(10)  # 10
        ```
    """
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(
            f"limit={limit!r} is not valid; pass a positive integer, or None for all results"
        )
    return limit


def apply_limit(items: list[T], limit: int | None) -> list[T]:
    """Truncate a listing client-side (most XNAT listings ignore ``limit``).

    Args:
        items: The rows or models.
        limit: The checked limit (None keeps everything).

    Returns:
        At most ``limit`` items.

    Example:
        ```python
        apply_limit([1, 2, 3], 2)  # [1, 2]
        ```
    """
    return items if limit is None else items[:limit]


def columns_param(
    columns: Iterable[str] | None, *, required: Sequence[str] = ("ID",)
) -> str | None:
    """Build XNAT's ``columns=`` value, making sure the identifying columns are included.

    Args:
        columns: Requested columns (shortcut names or xpaths), or None for XNAT's defaults.
        required: Columns the models need (added first when missing).

    Returns:
        The comma-joined value, or None when ``columns`` is None.

    Raises:
        InvalidInputError: An empty list, or a column name with a comma or surrounding space.

    Example:
        ```python
        columns_param(["label", "gender"])  # 'ID,label,gender'
        ```
    """
    if columns is None:
        return None
    if isinstance(columns, str):
        raise InvalidInputError(
            f"columns must be a list of column names, not the string {columns!r}; pass "
            f"[{columns!r}]"
        )
    wanted = list(columns)
    if not wanted:
        raise InvalidInputError("columns is an empty list; pass None for the default columns")
    for name in wanted:
        if not isinstance(name, str) or not name.strip() or "," in name or name != name.strip():
            raise InvalidInputError(
                f"column {name!r} is not valid; pass names such as 'label' or "
                "'xnat:subjectData/group', one per list item"
            )
    missing = [c for c in required if c not in wanted]
    return ",".join([*missing, *wanted])


def segment(value: Any, name: str) -> str:
    """Check an id/label (:func:`check_ref`) and percent-quote it as one path segment.

    Args:
        value: The id or label.
        name: The parameter name, for the error message.

    Returns:
        The quoted segment.

    Example:
        ```python
        segment("T1 w", "scan_id")  # 'T1%20w'
        ```
    """
    return quote(check_ref(value, name), safe="")
