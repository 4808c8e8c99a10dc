"""``Subject``: a row of ``GET /data/projects/{P}/subjects`` or an ``xnat:subjectData`` item."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from xnat_prefect.models._base import OptDateTime, OptInt, OptStr, XNATModel, column

__all__ = ["Subject"]


class Subject(XNATModel):
    """An XNAT subject (participant).

    Default listing columns: ``ID, project, label, insert_date, insert_user, URI``; demographics
    (``gender``, ``yob``...) come with ``columns=`` or from the item document's
    ``demographics`` child.

    Attributes:
        id: Accession ID (``XNAT_S00001``).
        label: Label within the project.
        project: Owning project ID.
        insert_date: When it was created.
        insert_user: Who created it.
        group: Subject group.
        gender: Gender.
        yob: Year of birth.
        uri: ``/data/subjects/{ID}``.
    """

    id: str = column("ID", "id", "subject_ID", default=...)
    label: OptStr = column("label", "subject_label")
    project: OptStr = column("project", "subject_project")
    insert_date: OptDateTime = column("insert_date")
    insert_user: OptStr = column("insert_user")
    group: OptStr = column("group")
    gender: OptStr = column("gender")
    yob: OptInt = column("yob")
    uri: OptStr = column("URI", "uri")

    @model_validator(mode="before")
    @classmethod
    def _demographics(cls, data: Any) -> Any:
        if isinstance(data, dict):
            demo = data.get("demographics")
            if isinstance(demo, list) and demo and isinstance(demo[0], dict):
                data = {**{k: v for k, v in demo[0].items() if k != "xsiType"}, **data}
            if not data.get("URI") and not data.get("uri"):
                ident = data.get("ID") or data.get("id")
                if ident:
                    data = {**data, "URI": f"/data/subjects/{ident}"}
        return data
