"""Prefect tasks for XNAT subjects (SubjectService).

Each task takes an ``XNATCredentials`` block (or an open ``XNATClient``) first, then the
service method's own parameters.

Example:
    ```python
    from prefect import flow

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.tasks.subjects import list_subjects

    @flow
    def my_flow() -> None:
        credentials = XNATCredentials.load("BLOCK_NAME")
        list_subjects(credentials, ...)
    ```
"""

from __future__ import annotations

from xnat_prefect.services import SubjectService
from xnat_prefect.tasks._common import service_task

list_subjects = service_task(
    SubjectService, "list", name="List XNAT subjects", run_name="list-subjects"
)
get_subject = service_task(
    SubjectService, "get", name="Get an XNAT subject", run_name="get-subject-{subject_id}"
)
create_subject = service_task(
    SubjectService,
    "create",
    name="Create an XNAT subject",
    run_name="create-subject-{project}-{label}",
    idempotent=False,
)
delete_subject = service_task(
    SubjectService,
    "delete",
    name="Delete an XNAT subject",
    run_name="delete-subject-{subject_id}",
    idempotent=False,
)
rename_subject = service_task(
    SubjectService,
    "rename",
    name="Rename an XNAT subject",
    run_name="rename-subject-{subject_id}",
    idempotent=False,
)
rename_subjects = service_task(
    SubjectService,
    "rename_batch",
    name="Rename subjects from a mapping",
    run_name="rename-subjects-{project}",
    idempotent=False,
)
rename_subjects_by_pattern = service_task(
    SubjectService,
    "rename_pattern",
    name="Rename subjects matching a pattern",
    run_name="rename-subjects-by-pattern-{project}",
    idempotent=False,
)
get_subject_sessions = service_task(
    SubjectService,
    "get_sessions",
    name="List the sessions of a subject",
    run_name="subject-sessions-{subject_id}",
)
merge_subjects = service_task(
    SubjectService,
    "merge_subjects",
    name="Merge one subject into another",
    run_name="merge-subjects-{project}",
    idempotent=False,
)

__all__ = [
    "create_subject",
    "delete_subject",
    "get_subject",
    "get_subject_sessions",
    "list_subjects",
    "merge_subjects",
    "rename_subject",
    "rename_subjects",
    "rename_subjects_by_pattern",
]
