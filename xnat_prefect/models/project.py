"""``Project``: a row of ``GET /data/projects`` or the ``xnat:projectData`` item document."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from xnat_prefect.models._base import OptInt, OptStr, XNATModel, column

__all__ = ["Project"]


class Project(XNATModel):
    """An XNAT project.

    Default listing columns are ``ID, secondary_ID, name, description, pi_firstname,
    pi_lastname, URI``; the "filtered" listing uses lower-case ids (``id``, ``secondary_id``,
    ``project_access``); item documents carry the PI as a ``PI`` child.

    Attributes:
        id: Project ID.
        secondary_id: Running title.
        name: Project name.
        description: Description.
        keywords: Space/comma separated keywords.
        pi_firstname: PI first name.
        pi_lastname: PI last name.
        accessibility: ``private``, ``protected`` or ``public`` (when known).
        prearchive_code: 0 manual, 4 auto-archive, 5 auto-archive with overwrite (when known).
        subject_count: Number of subjects (when counted).
        session_count: Number of sessions (when counted).
        uri: ``/data/projects/{ID}``.
    """

    id: str = column("ID", "id", default=...)
    secondary_id: OptStr = column("secondary_ID", "secondary_id", "Secondary_ID")
    name: OptStr = column("name", "Name")
    description: OptStr = column("description")
    keywords: OptStr = column("keywords")
    pi_firstname: OptStr = column("pi_firstname", "PI_firstname")
    pi_lastname: OptStr = column("pi_lastname", "PI_lastname")
    accessibility: OptStr = column("accessibility", "project_access")
    prearchive_code: OptInt = column("prearchive_code", "proj_prearchive_code")
    subject_count: OptInt = column("subject_count", "subjects")
    session_count: OptInt = column("session_count", "experiments", "sessions")
    uri: OptStr = column("URI", "uri")

    @model_validator(mode="before")
    @classmethod
    def _pi_from_item(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("PI"), list) and data["PI"]:
            pi = data["PI"][0]
            if isinstance(pi, dict):
                data = dict(data)
                data.setdefault("pi_firstname", pi.get("firstname", ""))
                data.setdefault("pi_lastname", pi.get("lastname", ""))
        if isinstance(data, dict) and not data.get("URI") and not data.get("uri"):
            ident = data.get("ID") or data.get("id")
            if ident:
                data = {**data, "URI": f"/data/projects/{ident}"}
        return data

    @property
    def pi(self) -> str | None:
        """The PI as ``"First Last"`` (None when unknown)."""
        full = " ".join(p for p in (self.pi_firstname, self.pi_lastname) if p)
        if full:
            return full
        raw = (self.model_extra or {}).get("pi")
        return str(raw) if raw else None
