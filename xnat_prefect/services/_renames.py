"""Pure helpers of the subject rename operations: pattern compilation and template expansion."""

from __future__ import annotations

import re
from collections.abc import Mapping

from xnat_prefect.errors import InvalidInputError
from xnat_prefect.services.base import VALID_LABEL, check_new_label, check_ref

__all__ = ["check_mapping", "compile_pattern", "expand_template", "is_valid_label"]

_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def compile_pattern(match_pattern: str, to_template: str) -> re.Pattern[str]:
    r"""Compile a rename pattern and check the template's ``{N}`` placeholders against it.

    Args:
        match_pattern: Regex with capture groups (matched against the whole label).
        to_template: Template using ``{1}``, ``{2}``... (``{0}`` = the whole label).

    Returns:
        The compiled regex.

    Raises:
        InvalidInputError: Invalid regex, empty template, or a placeholder the regex lacks.

    Example:
        ```python
        compile_pattern(r"SUB(\d+)", "PARTICIPANT{1}")
        ```
    """
    if not isinstance(match_pattern, str) or not match_pattern:
        raise InvalidInputError("match_pattern is empty; pass a regex such as r'SUB(\\d+)'")
    try:
        regex = re.compile(match_pattern)
    except re.error as exc:
        raise InvalidInputError(
            f"match_pattern={match_pattern!r} is not a valid regular expression ({exc}); fix "
            "the regex (escape literal characters with '\\')"
        ) from exc
    if not isinstance(to_template, str) or not to_template.strip():
        raise InvalidInputError("to_template is empty; pass a template such as 'NEW_{1}'")
    for number in _PLACEHOLDER.findall(to_template):
        if int(number) > regex.groups:
            raise InvalidInputError(
                f"to_template={to_template!r} uses {{{number}}} but match_pattern has only "
                f"{regex.groups} capture group(s); add groups or fix the placeholder"
            )
    return regex


def expand_template(match: re.Match[str], to_template: str) -> str:
    r"""Fill ``{N}`` placeholders with the match's groups (unmatched optional groups give "").

    Args:
        match: A match of the compiled pattern.
        to_template: The template.

    Returns:
        The new label (not yet validated).

    Example:
        ```python
        expand_template(re.fullmatch(r"S(\d+)", "S01"), "P{1}")  # 'P01'
        ```
    """
    return _PLACEHOLDER.sub(lambda m: match.group(int(m.group(1))) or "", to_template)


def is_valid_label(label: str) -> bool:
    """Whether XNAT accepts ``label`` as a subject label.

    Args:
        label: Candidate label.

    Returns:
        True for letters, digits, ``_`` and ``-`` only.
    """
    return bool(VALID_LABEL.match(label))


def check_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    """Validate a rename mapping before anything is changed.

    Args:
        mapping: ``old_label -> new_label``.

    Returns:
        A plain dict copy.

    Raises:
        InvalidInputError: Not a mapping, or an old label / new label is unusable (the message
            names the entry).

    Example:
        ```python
        check_mapping({"SUB001": "P001"})
        ```
    """
    if not isinstance(mapping, Mapping):
        raise InvalidInputError(
            f"mapping must be a dict of old_label -> new_label, got {type(mapping).__name__}"
        )
    checked: dict[str, str] = {}
    for old, new in mapping.items():
        check_ref(old, f"mapping key {old!r}")
        check_new_label(new, f"mapping[{old!r}]")
        checked[old] = new
    return checked
