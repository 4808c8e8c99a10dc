"""``User``: ``/data/users`` rows, ``/xapi/users/{u}`` objects and project member rows."""

from __future__ import annotations

from typing import ClassVar

from xnat_prefect.models._base import OptBool, OptInt, OptStr, StrList, XNATModel, column

__all__ = ["User"]


class User(XNATModel):
    """An XNAT user account.

    Attributes:
        id: Numeric user id (``xdat_user_id`` / ``id``).
        login: Login name (``login`` / ``username``).
        firstname: First name.
        lastname: Last name.
        email: E-mail.
        enabled: Account enabled.
        verified: E-mail verified.
        groups: Group ids (``P1_owner``...).
        roles: Site roles (``Administrator``...).
    """

    id: OptInt = column("xdat_user_id", "id", "userId")
    login: str = column("login", "username", default=...)
    firstname: OptStr = column("firstname", "firstName")
    lastname: OptStr = column("lastname", "lastName")
    email: OptStr = column("email")
    enabled: OptBool = column("enabled")
    verified: OptBool = column("verified")
    groups: StrList = column("groups", default=[])
    roles: StrList = column("roles", default=[])

    _mapping_aliases: ClassVar[dict[str, str]] = {"username": "login", "xdat_user_id": "id"}

    @property
    def username(self) -> str:
        """Same as :attr:`login`."""
        return self.login

    @property
    def xdat_user_id(self) -> int | None:
        """Same as :attr:`id`."""
        return self.id
