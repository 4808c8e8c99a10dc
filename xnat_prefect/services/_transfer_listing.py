"""File listings read row by row, so a listing of many files is never decoded all at once.

``XNATClient.get_result_set`` holds a whole table at once (the body, its text, every row as a
dict, then a copy of every row) before the first row can be used: for a session of 10,000
files that is ~18 MB of Python heap. :func:`read_listing` streams the body instead and
decodes the row objects of ``{"ResultSet": {"Result": [...]}}`` one at a time; each row
becomes what the caller keeps (a compact
:class:`~xnat_prefect.services._transfer_plan.RemoteFile`) and is dropped.

Anything the streaming reader does not expect (a bare JSON array, other keys before
``Result``, an HTML page, invalid or truncated JSON, a connection lost while reading) is read
again with ``get_result_set``, which keeps its retries, re-login and error messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from xnat_prefect._redact import get_logger
from xnat_prefect.client import XNATClient
from xnat_prefect.models import cell_text
from xnat_prefect.models.resource import ResourceFile

__all__ = ["NotStreamableError", "iter_table_rows", "read_listing"]

logger = get_logger(__name__)

T = TypeVar("T")
_START = re.compile(r'\s*\{\s*"ResultSet"\s*:\s*\{\s*"Result"\s*:\s*\[')
_SPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()
_HEAD_MAX = 4096
"""Characters read at most while looking for the start of the ``Result`` array."""


class NotStreamableError(Exception):
    """The body is not a table :func:`iter_table_rows` reads (read it the ordinary way)."""


def iter_table_rows(chunks: Iterable[str]) -> Iterator[dict[str, str]]:
    """Decode the rows of a ``{"ResultSet": {"Result": [...], ...}}`` text one at a time.

    Only the text of the row being decoded (and the rest of the current chunk) is held.
    Whatever follows the ``Result`` array (``totalRecords``, ``title``...) is not read. Cells
    are rendered as :func:`~xnat_prefect.models.parse_result_set` renders them.

    Args:
        chunks: The body's text, in pieces of any size.

    Yields:
        One dict of string cells per row.

    Raises:
        NotStreamableError: The text does not start with ``{"ResultSet": {"Result": [``, or
            a row is not a JSON object, or the text is invalid or ends early.

    Example:
        ```python
        list(iter_table_rows(['{"ResultSet": {"Result": [{"ID": 1}', "]}}"]))  # [{'ID': '1'}]
        ```
    """
    source = iter(chunks)
    text, pos = "", 0

    def more() -> bool:
        nonlocal text, pos
        for chunk in source:
            if chunk:
                text, pos = text[pos:] + chunk, 0
                return True
        return False

    while (head := _START.match(text)) is None:
        if len(text) > _HEAD_MAX or not more():
            raise NotStreamableError("not a ResultSet table")
    pos = head.end()
    rows = 0
    separated = False  # a comma since the last row
    while True:
        found = _SPACE.match(text, pos)
        pos = found.end() if found is not None else pos
        if pos == len(text):
            if not more():
                raise NotStreamableError("the table ends early")
            continue
        char = text[pos]
        if char == "]" and (rows == 0 or not separated):
            return
        if rows and not separated:
            if char != ",":
                raise NotStreamableError(f"expected ',' between rows, got {char!r}")
            pos, separated = pos + 1, True
            continue
        if char != "{":
            raise NotStreamableError(f"a table row is not an object (starts with {char!r})")
        try:
            row, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if more():  # the row goes on in the next chunk
                continue
            raise NotStreamableError(f"invalid table row: {exc.msg}") from exc
        rows, separated = rows + 1, False
        yield {str(key): cell_text(value) for key, value in row.items()}


def read_listing(
    client: XNATClient, path: str, convert: Callable[[ResourceFile], T | None]
) -> list[T]:
    """``GET`` a file listing and convert its rows one at a time (None: leave the row out).

    Args:
        client: Client.
        path: ``/data/...`` listing path (``format=json`` is added).
        convert: Turns one row into what is kept (it may raise; the error propagates).

    Returns:
        The converted rows, in listing order.

    Raises:
        XNATError: As ``XNATClient.get_result_set`` raises (404 for a missing listing...).

    Example:
        ```python
        names = read_listing(client, f"{session}/scans/ALL/files", lambda row: row.name)
        ```
    """
    with client.stream("GET", path, params={"format": "json"}) as response:
        found: list[T] = []
        try:
            for row in iter_table_rows(response.iter_text()):
                item = convert(ResourceFile.model_validate(row))
                if item is not None:
                    found.append(item)
            return found
        except (NotStreamableError, httpx.HTTPError) as exc:
            logger.debug("Reading %s again as one document: %s", path, exc)
    return _read_whole(client, path, convert)


def _read_whole(
    client: XNATClient, path: str, convert: Callable[[ResourceFile], T | None]
) -> list[T]:
    rows: list[Any] = client.get_result_set(path)
    rows.reverse()  # popped from the end: each decoded row is dropped once converted
    found: list[T] = []
    while rows:
        item = convert(ResourceFile.model_validate(rows.pop()))
        if item is not None:
            found.append(item)
    return found
