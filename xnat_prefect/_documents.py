"""Typed readers of XNAT's documents (JSON, text, ``ResultSet`` tables, item documents).

A mixin of :class:`xnat_prefect.client.XNATClient`: every reader is one ``GET`` through the
client's ``_execute`` (session cookie, re-login, retries) plus the parsing and a typed
:class:`~xnat_prefect.errors.UnexpectedResponseError` when XNAT answered something else.
"""

from __future__ import annotations

import abc
from typing import Any

import httpx
from typing_extensions import Unpack

from xnat_prefect._transport import Params, RequestOptions, with_param
from xnat_prefect.errors import UnexpectedResponseError, clean_message
from xnat_prefect.models._resultset import parse_result_set


class DocumentReaders(abc.ABC):
    """``get_json``, ``get_text``, ``get_result_set`` and ``get_item`` over ``_execute``."""

    @abc.abstractmethod
    def _execute(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        expect_json: bool = False,
        **options: Unpack[RequestOptions],
    ) -> httpx.Response:
        """Send one request with the client's session handling (implemented by the client)."""

    def get_json(self, path: str, params: Params | None = None) -> Any:
        """``GET`` a JSON document.

        Args:
            path: Path under ``base_url``.
            params: Query parameters.

        Returns:
            The decoded JSON.

        Raises:
            UnexpectedResponseError: The body is not JSON.
        """
        response = self._execute("GET", path, params=params, expect_json=True)
        try:
            return response.json()
        except ValueError as exc:
            raise UnexpectedResponseError(
                f"expected JSON from GET {response.request.url.path}, got "
                f"{response.headers.get('content-type', 'no content type')}: "
                f"{clean_message(response.text)[:200]!r}",
                status_code=response.status_code,
                method="GET",
                path=response.request.url.path,
            ) from exc

    def get_text(self, path: str, params: Params | None = None) -> str:
        """``GET`` a text body (``/xapi/users/username``, ``prearchive_code``...).

        Args:
            path: Path under ``base_url``.
            params: Query parameters.

        Returns:
            The body text, unchanged.
        """
        return self._execute("GET", path, params=params).text

    def get_result_set(self, path: str, params: Params | None = None) -> list[dict[str, str]]:
        """``GET`` an XNAT table and return its rows (``format=json`` added for ``/data``).

        Accepts ``{"ResultSet": {"Result": [...]}}`` and a bare JSON array.

        Args:
            path: Path under ``base_url``.
            params: Query parameters (filters, ``columns``...).

        Returns:
            Rows of string cells (``""`` for null).

        Raises:
            UnexpectedResponseError: Not a table.
        """
        if path.lstrip("/").startswith(("data/", "REST/")):
            params = with_param(params, "format", "json", replace=False)
        payload = self.get_json(path, params)
        try:
            return parse_result_set(payload)
        except ValueError as exc:
            raise UnexpectedResponseError(
                f"GET {path.split('?')[0]} did not return an XNAT table: {exc}",
                method="GET",
                path=path.split("?")[0],
            ) from exc

    def get_item(self, path: str, params: Params | None = None) -> dict[str, Any]:
        """``GET`` a single-item document (``format=json`` is sent).

        Args:
            path: Item path (project, subject, experiment, scan, workflow).
            params: Extra query parameters.

        Returns:
            The raw ``{"items": [...]}`` document (see
            :func:`xnat_prefect.models.parse_item_document` to flatten it).

        Raises:
            UnexpectedResponseError: Not an item document.
        """
        payload = self.get_json(path, with_param(params, "format", "json", replace=True))
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            raise UnexpectedResponseError(
                f"GET {path.split('?')[0]} did not return an item document",
                method="GET",
                path=path.split("?")[0],
            )
        return payload
