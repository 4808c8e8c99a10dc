"""Base model and the value converters every XNAT model uses.

XNAT prints every table cell as a string and SQL NULL as ``""``. The annotated types below turn
those strings into ``int``/``float``/``date``/``datetime``/``bool``/``None`` and never raise on
``""`` or on a value they cannot read (it becomes None; the raw row is still available through
the model's extra fields when the column was not mapped).

:class:`XNATModel` also behaves like a read-only mapping (``m["label"]``, ``m.get("x")``,
``m.keys()``, ``m.to_dict()``), because several seed methods are declared to return
``dict[str, Any]`` and we return models that can be used like those dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "OptBool",
    "OptDate",
    "OptDateTime",
    "OptFloat",
    "OptInt",
    "OptStr",
    "StrList",
    "XNATModel",
    "column",
    "to_bool",
    "to_date",
    "to_datetime",
    "to_float",
    "to_int",
    "to_opt_str",
    "to_str_list",
]

_MISSING = object()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "null", "NULL"))


def to_opt_str(value: Any) -> str | None:
    """``""``/None to None; other scalars to ``str``.

    Args:
        value: Raw value.

    Returns:
        The string or None.
    """
    if _blank(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def to_int(value: Any) -> int | None:
    """Read an integer (``"12"``, ``12``, ``"12.0"``); None when blank or unreadable.

    Args:
        value: Raw value.

    Returns:
        The integer or None.
    """
    if _blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError, OverflowError):
        return None


def to_float(value: Any) -> float | None:
    """Read a float; None when blank or unreadable.

    Args:
        value: Raw value.

    Returns:
        The float or None.
    """
    if _blank(value) or isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def to_bool(value: Any) -> bool | None:
    """Read XNAT booleans (``true``/``false``, ``1``/``0``, ``yes``/``no``); None when blank.

    Args:
        value: Raw value.

    Returns:
        The boolean or None.
    """
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t", "on"):
        return True
    if text in ("false", "0", "no", "n", "f", "off"):
        return False
    return None


_EPOCH_MS_RE = re.compile(r"^\d{12,14}$")
_COMPACT_TS_RE = re.compile(r"^(\d{8})_(\d{6})(\d{0,6})$")


def to_datetime(value: Any) -> datetime | None:
    """Read an XNAT timestamp; None when blank or unreadable.

    Accepted: ``2024-01-31 14:05:09.123``, ISO 8601, epoch milliseconds, prearchive
    ``20240131_140509123`` and ``20240131``.

    Args:
        value: Raw value.

    Returns:
        The datetime (naive unless the text carried a zone) or None.
    """
    if _blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) or _EPOCH_MS_RE.match(str(value).strip()):
        try:
            return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    compact = _COMPACT_TS_RE.match(text)
    if compact:
        text = f"{compact.group(1)}T{compact.group(2)}"
        fraction = compact.group(3)
        if fraction:
            text += "." + fraction
    elif re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return datetime.fromisoformat(text.replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        return None


def to_date(value: Any) -> date | None:
    """Read a date (``2024-01-31``, ``20240131``, or the date part of a timestamp).

    Args:
        value: Raw value.

    Returns:
        The date or None.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    moment = to_datetime(value)
    return moment.date() if moment else None


def to_str_list(value: Any) -> list[str]:
    """A list from a JSON list or a comma-separated string (blanks dropped).

    Args:
        value: Raw value.

    Returns:
        The list (empty when blank).
    """
    if _blank(value):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable):
        return [str(part) for part in value if not _blank(part)]
    return [str(value)]


OptStr = Annotated[str | None, BeforeValidator(to_opt_str)]
OptInt = Annotated[int | None, BeforeValidator(to_int)]
OptFloat = Annotated[float | None, BeforeValidator(to_float)]
OptBool = Annotated[bool | None, BeforeValidator(to_bool)]
OptDate = Annotated[date | None, BeforeValidator(to_date)]
OptDateTime = Annotated[datetime | None, BeforeValidator(to_datetime)]
StrList = Annotated[list[str], BeforeValidator(to_str_list)]


def column(*names: str, default: Any = None) -> Any:
    """A model field read from any of XNAT's spellings of a column (first one wins on output).

    The Python field name is accepted too (``populate_by_name``).

    Args:
        *names: Column names, e.g. ``"ID"``, ``"id"``.
        default: Value when no spelling is present.

    Returns:
        A pydantic ``Field``.

    Example:
        ```python
        class Thing(XNATModel):
            thing_id: OptStr = column("ID", "id")
        ```
    """
    return Field(
        default=default,
        validation_alias=AliasChoices(*names),
        serialization_alias=names[0],
    )


class XNATModel(BaseModel):
    """Base of every model: tolerant parsing, extra columns kept, read-only mapping access.

    Fields are named for Python users and populated from XNAT's column names (aliases) or from
    the field names. Unmapped columns are kept in ``model_extra``. Mapping access looks up field
    names, then XNAT column names, then extra columns, then the class's ``_mapping_aliases``.
    Iterating a model yields ``(name, value)`` pairs as pydantic does; use :meth:`keys`.

    Example:
        ```python
        project = Project.model_validate({"ID": "P1", "name": "Study", "URI": "/data/projects/P1"})
        project["id"], project.get("name"), project.to_dict()["uri"]
        ```
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    _mapping_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> list[Self]:
        """Validate many table rows.

        Args:
            rows: Rows from :func:`parse_result_set`.

        Returns:
            One model per row.
        """
        return [cls.model_validate(row) for row in rows]

    def _lookup(self, key: str) -> Any:
        fields = type(self).model_fields
        if key in fields:
            return getattr(self, key)
        for name, info in fields.items():
            if info.alias == key:
                return getattr(self, name)
            choices = getattr(info.validation_alias, "choices", None)
            if key == info.validation_alias or (choices and key in choices):
                return getattr(self, name)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        target = self._mapping_aliases.get(key)
        if target is not None:
            return getattr(self, target)
        return _MISSING

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not _MISSING

    def __len__(self) -> int:
        return len(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style lookup.

        Args:
            key: Field name, XNAT column name or extra column.
            default: Returned when absent.

        Returns:
            The value or ``default``.
        """
        value = self._lookup(key)
        return default if value is _MISSING else value

    def keys(self) -> list[str]:
        """Field names followed by extra column names.

        Returns:
            The keys.
        """
        return [*type(self).model_fields, *(self.model_extra or {})]

    def values(self) -> list[Any]:
        """Values in :meth:`keys` order.

        Returns:
            The values.
        """
        return [self[key] for key in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs in :meth:`keys` order.

        Returns:
            The pairs.
        """
        return [(key, self[key]) for key in self.keys()]

    def to_dict(self, *, by_alias: bool = False, json_safe: bool = False) -> dict[str, Any]:
        """A plain dict copy (fields, computed fields and extra columns).

        Args:
            by_alias: Use XNAT column names where a field has one.
            json_safe: Convert dates, paths and enums to JSON-friendly values.

        Returns:
            The dict.
        """
        return self.model_dump(by_alias=by_alias, mode="json" if json_safe else "python")
