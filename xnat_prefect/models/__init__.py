"""Pydantic models of XNAT resources and of operation results.

Every model is parsed from XNAT's real column names (all-string cells, ``""`` for null) and
also reads like a read-only dict (``m["label"]``, ``m.get("x")``, ``m.keys()``, ``m.to_dict()``).

Example:
    ```python
    from xnat_prefect.models import Session, parse_result_set

    sessions = Session.from_rows(parse_result_set(payload))
    ```
"""

from __future__ import annotations

from xnat_prefect.models._base import XNATModel
from xnat_prefect.models._resultset import (
    cell_text,
    parse_item_document,
    parse_result_set,
    result_set_total,
)
from xnat_prefect.models.audit import AuditEntry
from xnat_prefect.models.container import UNASSIGNED_WORKFLOW, Container, LaunchReport
from xnat_prefect.models.pipeline import Pipeline, PipelineJob
from xnat_prefect.models.prearchive import (
    PrearchiveScan,
    PrearchiveSession,
    PrearchiveStatus,
    to_prearchive_status,
)
from xnat_prefect.models.project import Project
from xnat_prefect.models.resource import Resource, ResourceFile, data_uri
from xnat_prefect.models.scan import Scan
from xnat_prefect.models.server import ServerInfo
from xnat_prefect.models.session import (
    MODALITY_XSI_TYPES,
    Session,
    modality_from_xsi_type,
    xsi_type_for_modality,
)
from xnat_prefect.models.subject import Subject
from xnat_prefect.models.summaries import BatchSummary, MergeSummary, RenameSummary
from xnat_prefect.models.transfer import (
    DICOMStoreSummary,
    DownloadProgress,
    DownloadSummary,
    UploadProgress,
    UploadSummary,
)
from xnat_prefect.models.user import User
from xnat_prefect.models.workflow import TERMINAL_PREFIXES, Workflow, is_terminal_status

__all__ = [
    "MODALITY_XSI_TYPES",
    "TERMINAL_PREFIXES",
    "UNASSIGNED_WORKFLOW",
    "AuditEntry",
    "BatchSummary",
    "Container",
    "DICOMStoreSummary",
    "DownloadProgress",
    "DownloadSummary",
    "LaunchReport",
    "MergeSummary",
    "Pipeline",
    "PipelineJob",
    "PrearchiveScan",
    "PrearchiveSession",
    "PrearchiveStatus",
    "Project",
    "RenameSummary",
    "Resource",
    "ResourceFile",
    "Scan",
    "ServerInfo",
    "Session",
    "Subject",
    "UploadProgress",
    "UploadSummary",
    "User",
    "Workflow",
    "XNATModel",
    "cell_text",
    "data_uri",
    "is_terminal_status",
    "modality_from_xsi_type",
    "parse_item_document",
    "parse_result_set",
    "result_set_total",
    "to_prearchive_status",
    "xsi_type_for_modality",
]
