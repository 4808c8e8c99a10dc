"""High-level XNAT operations, one service class per resource type (the seed's services API).

Services take an :class:`~xnat_prefect.client.XNATClient`, return Pydantic models (which also
read like dicts) and raise the typed errors of :mod:`xnat_prefect.errors`. They know nothing of
Prefect.

Example:
    ```python
    from xnat_prefect.client import XNATClient
    from xnat_prefect.services import ProjectService, SessionService

    with XNATClient("https://xnat.example.org", "jdoe", "secret") as client:
        project = ProjectService(client).get("STUDY1")
        sessions = SessionService(client).list(project="STUDY1", modality="MR")
    ```
"""

from __future__ import annotations

from xnat_prefect.services.admin import AdminService
from xnat_prefect.services.base import BaseService, SessionRef
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.services.pipelines import JobState, PipelineService
from xnat_prefect.services.prearchive import ArchiveResult, PrearchiveService
from xnat_prefect.services.projects import ProjectNotEmptyError, ProjectService
from xnat_prefect.services.resources import ResourceService
from xnat_prefect.services.scans import ScanService, ScansWouldBeDeletedError
from xnat_prefect.services.sessions import SessionService
from xnat_prefect.services.subjects import SubjectHasExperimentsError, SubjectService
from xnat_prefect.services.uploads import UploadService

__all__ = [
    "AdminService",
    "ArchiveResult",
    "BaseService",
    "DownloadService",
    "JobState",
    "PipelineService",
    "PrearchiveService",
    "ProjectNotEmptyError",
    "ProjectService",
    "ResourceService",
    "ScanService",
    "ScansWouldBeDeletedError",
    "SessionRef",
    "SessionService",
    "SubjectHasExperimentsError",
    "SubjectService",
    "UploadService",
]
