"""``ServerInfo``: ``/xapi/siteConfig/buildInfo`` plus the site id and URL."""

from __future__ import annotations

from xnat_prefect.models._base import OptStr, XNATModel, column

__all__ = ["ServerInfo"]


class ServerInfo(XNATModel):
    """What server we talk to.

    Attributes:
        version: XNAT version (``1.9.2.1``).
        build_number: ``buildNumber``.
        build_date: ``buildDate`` (as printed by the server).
        sha: Commit sha.
        site_id: Site id (``siteId``, default ``XNAT``).
        site_url: Site URL (``siteUrl``).
    """

    version: OptStr = column("version")
    build_number: OptStr = column("buildNumber", "build_number")
    build_date: OptStr = column("buildDate", "build_date")
    sha: OptStr = column("sha")
    site_id: OptStr = column("siteId", "site_id")
    site_url: OptStr = column("siteUrl", "site_url")
