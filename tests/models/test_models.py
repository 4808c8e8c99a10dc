"""Unit tests of model parsing from XNAT's real JSON (all strings, "" for null)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from xnat_prefect.models import (
    AuditEntry,
    BatchSummary,
    Container,
    DICOMStoreSummary,
    DownloadSummary,
    LaunchReport,
    MergeSummary,
    Pipeline,
    PipelineJob,
    PrearchiveScan,
    PrearchiveSession,
    PrearchiveStatus,
    Project,
    RenameSummary,
    Resource,
    ResourceFile,
    Scan,
    ServerInfo,
    Session,
    Subject,
    UploadProgress,
    UploadSummary,
    User,
    Workflow,
    modality_from_xsi_type,
    parse_item_document,
    parse_result_set,
    result_set_total,
    xsi_type_for_modality,
)


def table(rows: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"ResultSet": {"Result": rows, "totalRecords": str(len(rows)), **extra}}


# --- envelopes ----------------------------------------------------------------------------------


def test_parse_result_set_envelope_and_bare_array() -> None:
    rows = [{"ID": "P1", "name": ""}]
    assert parse_result_set(table(rows)) == rows
    assert parse_result_set(rows) == rows
    assert parse_result_set({"ResultSet": {"Result": []}}) == []
    assert result_set_total(table(rows)) == 1
    assert result_set_total(rows) is None


def test_parse_result_set_stringifies_cells() -> None:
    rows = parse_result_set([{"n": 3, "ok": True, "none": None, "f": 1.5}])
    assert rows == [{"n": "3", "ok": "true", "none": "", "f": "1.5"}]


@pytest.mark.parametrize("payload", [{"items": []}, "text", [1, 2], {"ResultSet": "x"}])
def test_parse_result_set_rejects_non_tables(payload: Any) -> None:
    with pytest.raises(ValueError):
        parse_result_set(payload)


def test_parse_item_document_flattens_children() -> None:
    doc = {
        "items": [
            {
                "meta": {"isHistory": False, "xsi:type": "xnat:mrSessionData"},
                "data_fields": {
                    "ID": "XNAT_E00001",
                    "label": "S1_MR1",
                    "project": "P1",
                    "subject_ID": "XNAT_S00001",
                    "date": "2024-01-31",
                    "time": "14:05:09",
                    "scanner": "Prisma",
                },
                "children": [
                    {
                        "field": "scans/scan",
                        "items": [
                            {
                                "meta": {"xsi:type": "xnat:mrScanData"},
                                "data_fields": {"ID": "1", "type": "T1w", "frames": 176},
                                "children": [],
                            },
                            {
                                "meta": {"xsi:type": "xnat:mrScanData"},
                                "data_fields": {"ID": "2", "type": "T2w"},
                                "children": [],
                            },
                        ],
                    },
                    {
                        "field": "fields/field",
                        "items": [{"data_fields": {"name": "site", "field": "Paris"}}],
                    },
                ],
            }
        ]
    }
    flat = parse_item_document(doc)
    assert flat["xsiType"] == "xnat:mrSessionData"
    assert flat["fields"] == {"site": "Paris"}
    assert [s["ID"] for s in flat["scans/scan"]] == ["1", "2"]
    assert flat["scans/scan"][0]["frames"] == "176"
    session = Session.model_validate(flat)
    assert session.scan_count == 2
    assert session.modality == "MR"
    assert session.session_date == date(2024, 1, 31)
    assert session.uri == "/data/experiments/XNAT_E00001"
    scan = Scan.model_validate(flat["scans/scan"][0])
    assert (scan.scan_id, scan.type, scan.frames, scan.xsi_type) == (
        "1",
        "T1w",
        176,
        "xnat:mrScanData",
    )


@pytest.mark.parametrize("payload", [{"items": []}, {"ResultSet": {}}, []])
def test_parse_item_document_rejects(payload: Any) -> None:
    with pytest.raises(ValueError):
        parse_item_document(payload)


# --- resources ----------------------------------------------------------------------------------


def test_project_row_and_mapping_access() -> None:
    payload = table(
        [
            {
                "ID": "P1",
                "secondary_ID": "Study 1",
                "name": "Study one",
                "description": "",
                "pi_firstname": "Jane",
                "pi_lastname": "Smith",
                "URI": "/data/projects/P1",
            },
            {
                "ID": "P2",
                "secondary_ID": "",
                "name": "P2",
                "description": "",
                "pi_firstname": "",
                "pi_lastname": "",
                "URI": "/data/projects/P2",
            },
        ],
        title="Projects",
    )
    p1, p2 = Project.from_rows(parse_result_set(payload))
    assert p1.pi == "Jane Smith" and p2.pi is None
    assert p1.description is None and p2.secondary_id is None
    assert p1["id"] == "P1" and p1["ID"] == "P1" and p1.get("secondary_ID") == "Study 1"
    assert p1.get("nope", 5) == 5 and "name" in p1 and "nope" not in p1
    with pytest.raises(KeyError):
        p1["nope"]
    assert p1.to_dict()["uri"] == "/data/projects/P1"
    assert p1.to_dict(by_alias=True)["URI"] == "/data/projects/P1"
    assert dict(p1)["name"] == "Study one"
    assert p1.subject_count is None


def test_project_filtered_listing_and_item() -> None:
    row = {
        "id": "P3",
        "secondary_id": "S3",
        "name": "N",
        "pi": "Doe, John",
        "project_access": "public",
    }
    project = Project.model_validate(row)
    assert (project.id, project.accessibility, project.pi) == ("P3", "public", "Doe, John")
    assert project.uri == "/data/projects/P3"
    item = parse_item_document(
        {
            "items": [
                {
                    "meta": {"xsi:type": "xnat:projectData"},
                    "data_fields": {"ID": "P4", "name": "Four"},
                    "children": [
                        {
                            "field": "PI",
                            "items": [{"data_fields": {"firstname": "A", "lastname": "B"}}],
                        }
                    ],
                }
            ]
        }
    )
    assert Project.model_validate(item).pi == "A B"


def test_subject_row_and_demographics() -> None:
    rows = parse_result_set(
        table(
            [
                {
                    "ID": "XNAT_S00001",
                    "project": "P1",
                    "label": "SUB001",
                    "insert_date": "2024-01-31 14:05:09.123",
                    "insert_user": "admin",
                    "URI": "/data/subjects/XNAT_S00001",
                    "gender": "",
                    "yob": "1980",
                    "group": "",
                }
            ]
        )
    )
    subject = Subject.model_validate(rows[0])
    assert subject.insert_date == datetime(2024, 1, 31, 14, 5, 9, 123000)
    assert subject.yob == 1980 and subject.gender is None and subject.group is None
    item = {
        "ID": "XNAT_S00002",
        "label": "S2",
        "demographics": [{"gender": "female", "yob": "1990"}],
    }
    s2 = Subject.model_validate(item)
    assert (s2.gender, s2.yob, s2.uri) == ("female", 1990, "/data/subjects/XNAT_S00002")


def test_session_row_modality_and_blank_cells() -> None:
    row = {
        "ID": "XNAT_E00002",
        "project": "P1",
        "date": "",
        "xsiType": "xnat:petSessionData",
        "label": "S1_PET",
        "insert_date": "",
        "subject_ID": "XNAT_S00001",
        "subject_label": "SUB001",
        "URI": "/data/experiments/XNAT_E00002",
    }
    session = Session.model_validate(row)
    assert session.modality == "PET"
    assert session.session_date is None and session.insert_date is None
    assert session.subject_label == "SUB001" and session.scan_count is None
    assert Session.model_validate({**row, "modality": "PT"}).modality == "PT"


@pytest.mark.parametrize(
    ("xsi", "modality"),
    [
        ("xnat:mrSessionData", "MR"),
        ("xnat:petSessionData", "PET"),
        ("xnat:ctSessionData", "CT"),
        ("xnat:petmrSessionData", "PETMR"),
        ("xnat:otherDicomSessionData", "OT"),
        ("xnat:xa3DSessionData", "XA3D"),
        ("xnat:qcManualAssessorData", None),
        (None, None),
    ],
)
def test_modality_from_xsi_type(xsi: str | None, modality: str | None) -> None:
    assert modality_from_xsi_type(xsi) == modality


def test_xsi_type_for_modality() -> None:
    assert xsi_type_for_modality("mr") == "xnat:mrSessionData"
    assert xsi_type_for_modality("OT") == "xnat:otherDicomSessionData"
    assert xsi_type_for_modality("US") == "xnat:usSessionData"


def test_scan_rows_from_bare_array() -> None:
    rows = parse_result_set(
        [
            {
                "xnat_imagescandata_id": "12",
                "ID": "1",
                "type": "T1w",
                "quality": "usable",
                "xsiType": "xnat:mrScanData",
                "note": "",
                "series_description": "t1_mprage",
                "URI": "/data/experiments/XNAT_E00001/scans/1",
            }
        ]
    )
    scan = Scan.model_validate(rows[0])
    assert scan.scan_id == "1" and scan.xnat_imagescandata_id == 12
    assert scan.note is None and scan.frames is None and scan.file_count is None


def test_resource_rows_have_no_uri_and_blank_stats() -> None:
    payload = table(
        [
            {
                "xnat_abstractresource_id": "57",
                "label": "DICOM",
                "element_name": "xnat:resourceCatalog",
                "category": "scans",
                "cat_id": "1",
                "cat_desc": "T1w",
                "file_count": "",
                "file_size": "",
                "tags": "",
                "content": "RAW",
                "format": "DICOM",
            },
            {
                "xnat_abstractresource_id": "58",
                "label": "NIFTI",
                "element_name": "xnat:resourceCatalog",
                "category": "resources",
                "cat_id": "",
                "cat_desc": "",
                "file_count": "2",
                "file_size": "1048576",
                "tags": "qc,derived",
                "content": "",
                "format": "NIFTI",
            },
        ],
        title="Resources",
    )
    dicom, nifti = Resource.from_rows(parse_result_set(payload))
    assert dicom.resource_id == 57 and dicom.file_count is None and dicom.tags == []
    assert nifti.file_size == 1048576 and nifti.tags == ["qc", "derived"] and nifti.cat_id is None


def test_resource_files_both_uri_forms() -> None:
    payload = {
        "ResultSet": {
            "Result": [
                {
                    "Name": "0001.dcm",
                    "Size": "526",
                    "URI": "/data/experiments/XNAT_E00001/scans/1/resources/57/files/0001.dcm",
                    "collection": "DICOM",
                    "file_tags": "",
                    "file_format": "DICOM",
                    "file_content": "",
                    "cat_ID": "57",
                    "digest": "0cc175b9c0f1b6a831c399e269772661",
                },
                {
                    "Name": "sub/0002.dcm",
                    "Size": "",
                    "URI": "/experiments/XNAT_E00001/scans/2/resources/59/files/sub/0002.dcm",
                    "collection": "DICOM",
                    "file_tags": "",
                    "file_format": "",
                    "file_content": "",
                    "cat_ID": "59",
                    "digest": "",
                },
            ],
            "Columns": [{"key": "URI", "serverRoot": ""}],
            "title": "Files",
        }
    }
    first, second = ResourceFile.from_rows(parse_result_set(payload))
    assert first.size == 526 and first.digest == "0cc175b9c0f1b6a831c399e269772661"
    assert second.uri == "/data/experiments/XNAT_E00001/scans/2/resources/59/files/sub/0002.dcm"
    assert second.size is None and second.digest is None and second.cat_id == "59"
    assert second.relative_path == "sub/0002.dcm"


def test_prearchive_session_row() -> None:
    row = {
        "project": "P1",
        "timestamp": "20240131_140509123",
        "lastmod": "2024-01-31 14:06:00.0",
        "uploaded": "",
        "scan_date": "2024-01-30",
        "scan_time": "10:00:00",
        "subject": "SUB001",
        "folderName": "S1_MR1",
        "name": "S1_MR1",
        "tag": "1.2.3.4",
        "status": "READY",
        "url": "/prearchive/projects/P1/20240131_140509123/S1_MR1",
        "autoarchive": "Manual",
        "prevent_anon": "false",
        "prevent_auto_commit": "",
        "SOURCE": "",
        "VISIT": "",
        "PROTOCOL": "",
        "TIMEZONE": "",
    }
    session = PrearchiveSession.model_validate(row)
    assert session.status is PrearchiveStatus.READY and session.is_ready and session.is_settled
    assert not session.is_failed and session.scan_count is None
    assert session.upload_date == datetime(2024, 1, 31, 14, 5, 9, 123000)
    assert session.scan_date == date(2024, 1, 30) and session.prevent_anon is False
    assert session.prevent_auto_commit is None and session.source is None
    assert session.src == "/prearchive/projects/P1/20240131_140509123/S1_MR1"
    assert session.uri == "/data/prearchive/projects/P1/20240131_140509123/S1_MR1"
    assert session.folder_name == "S1_MR1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("_BUILDING", PrearchiveStatus.LOCKED_BUILDING),
        ("QUEUED_ARCHIVING", PrearchiveStatus.QUEUED_ARCHIVING),
        ("error", PrearchiveStatus.ERROR),
        ("SOMETHING_NEW", "SOMETHING_NEW"),
        ("", None),
    ],
)
def test_prearchive_status_values_never_crash(raw: str, expected: object) -> None:
    session = PrearchiveSession.model_validate({"status": raw})
    assert session.status == expected
    assert type(session.status) is type(expected)


def test_prearchive_failed_and_scan() -> None:
    assert PrearchiveSession.model_validate({"status": "ERROR"}).is_failed
    assert PrearchiveSession.model_validate({"status": "CONFLICT"}).is_conflict
    scan = PrearchiveScan.model_validate(
        {"ID": "3", "xsiType": "xnat:mrScanData", "series_description": ""}
    )
    assert scan.scan_id == "3" and scan.series_description is None


def test_workflow_item() -> None:
    flat = parse_item_document(
        {
            "items": [
                {
                    "meta": {"xsi:type": "wrk:workflowData"},
                    "data_fields": {
                        "wrk_workflowData_id": 123,
                        "ID": "XNAT_E00001",
                        "data_type": "xnat:mrSessionData",
                        "pipeline_name": "dcm2niix",
                        "launch_time": "2024-01-31 14:05:09.089",
                        "status": "Failed (Staging)",
                        "percentageComplete": "40.0",
                        "externalID": "P1",
                        "comments": "c0ffee",
                    },
                    "children": [],
                }
            ]
        }
    )
    workflow = Workflow.model_validate(flat)
    assert workflow.workflow_id == "123" and workflow.data_id == "XNAT_E00001"
    assert workflow.is_terminal and workflow.is_failed and not workflow.is_complete
    assert workflow.percentage_complete == 40.0 and workflow.job_id is None
    job = PipelineJob.from_workflow(workflow)
    assert (job.job_id, job.kind, job.container_id, job.project) == (
        "123",
        "workflow",
        "c0ffee",
        "P1",
    )
    assert not Workflow.model_validate({"status": "Running"}).is_terminal
    assert Workflow.model_validate({"status": "Complete"}).is_complete


def test_container_and_launch_report() -> None:
    container = Container.model_validate(
        {
            "id": 7,
            "command-id": 3,
            "wrapper-id": 9,
            "container-id": "abc123",
            "workflow-id": "123",
            "status": "Complete",
            "status-time": 1706709909000,
            "project": "P1",
            "user-id": "admin",
            "history": [{"status": "Created"}, {"status": "Complete", "message": "done"}],
            "docker-image": "xnat/dcm2niix:latest",
            "inputs": [{"type": "wrapper-external", "name": "session", "value": "/archive/x"}],
            "outputs": [],
        }
    )
    assert container.id == "7" and container.command_id == 3 and container.is_terminal
    assert container.status_time == datetime(2024, 1, 31, 14, 5, 9, tzinfo=UTC)
    job = PipelineJob.from_container(container, pipeline="dcm2niix")
    assert job.kind == "container" and job.details == "done" and job.is_terminal
    report = LaunchReport.model_validate(
        {
            "status": "success",
            "params": {"session": "XNAT_E00001"},
            "id": None,
            "command-id": 3,
            "wrapper-id": 9,
            "workflow-id": "To be assigned",
        }
    )
    assert report.succeeded and not report.workflow_assigned and report.container_id is None
    failure = LaunchReport.model_validate({"status": "failure", "message": "no such wrapper"})
    assert not failure.succeeded and failure.message == "no such wrapper"


def test_pipeline_user_audit_server() -> None:
    pipeline = Pipeline.model_validate({"name": "dcm2niix", "kind": "container", "wrapper-id": "9"})
    assert pipeline.wrapper_id == 9 and pipeline.path is None
    with pytest.raises(ValidationError):
        Pipeline.model_validate({"name": "x", "kind": "weird"})
    row_user = User.model_validate(
        {"xdat_user_id": "2", "login": "jdoe", "firstname": "J", "lastname": "D", "email": ""}
    )
    assert row_user.id == 2 and row_user.username == "jdoe" and row_user.email is None
    assert row_user["username"] == "jdoe" and row_user["xdat_user_id"] == 2
    api_user = User.model_validate(
        {
            "id": 3,
            "username": "ann",
            "firstName": "Ann",
            "enabled": True,
            "verified": "false",
            "groups": ["P1_owner"],
        }
    )
    assert (api_user.login, api_user.firstname, api_user.enabled, api_user.verified) == (
        "ann",
        "Ann",
        True,
        False,
    )
    assert api_user.groups == ["P1_owner"] and api_user.roles == []
    entry = AuditEntry.model_validate(
        {
            "launch_time": "2024-01-31 14:05:09.0",
            "pipeline_name": "Transferred",
            "ID": "XNAT_E1",
            "data_type": "xnat:mrSessionData",
            "externalID": "P1",
            "status": "Complete",
        }
    )
    assert entry.action == "Transferred" and entry.item_id == "XNAT_E1" and entry.project == "P1"
    assert entry.timestamp == datetime(2024, 1, 31, 14, 5, 9)
    info = ServerInfo.model_validate({"version": "1.9.2.1", "buildNumber": "42", "siteId": "XNAT"})
    assert (info.version, info.build_number, info.site_id, info.site_url) == (
        "1.9.2.1",
        "42",
        "XNAT",
        None,
    )


def test_garbage_numbers_and_dates_become_none() -> None:
    scan = Scan.model_validate({"ID": "1", "frames": "n/a", "xnat_imagescandata_id": "null"})
    assert scan.frames is None and scan.xnat_imagescandata_id is None
    assert Session.model_validate({"ID": "E", "date": "not a date"}).session_date is None


def test_missing_identity_is_an_error() -> None:
    with pytest.raises(ValidationError):
        Project.model_validate({"name": "no id"})


# --- summaries ----------------------------------------------------------------------------------


def test_batch_summary_reads_like_the_seed_dict() -> None:
    summary = BatchSummary(operation="delete", total=3, succeeded=["1", "2"])
    summary.record_failure("3", "403 members cannot delete")
    assert summary["deleted"] == ["1", "2"] and summary["refreshed"] == ["1", "2"]
    assert summary["failed"] == {"3": "403 members cannot delete"}
    assert summary["errors"] == ["3: 403 members cannot delete"]
    assert summary["success"] is False and not summary.success
    with pytest.raises(ValidationError):
        BatchSummary(totl=1)  # type: ignore[call-arg]


def test_rename_and_merge_summaries() -> None:
    rename = RenameSummary(renamed={"a": "b"}, skipped={"c": "no match"}, dry_run=True)
    assert rename.success and rename["renamed"] == {"a": "b"} and rename.dry_run
    merge = MergeSummary(source="S1", target="S2", experiments_moved=2, experiments=["E1", "E2"])
    assert merge["experiments_moved"] == 2 and not merge.source_deleted


def test_transfer_summaries_compute_success() -> None:
    assert UploadSummary(total_files=2, uploaded=2).success
    failed = UploadSummary(total_files=2, uploaded=1, failed=1, errors=[("a.dcm", "503")])
    assert not failed.success and failed.errors == [("a.dcm", "503")]
    assert not UploadSummary(success=False).success
    download = DownloadSummary(output_dir=Path("/tmp/out"), paths=[Path("/tmp/out/a")])
    assert download.success and download.to_dict(json_safe=True)["output_dir"] == "/tmp/out"
    store = DICOMStoreSummary(
        total_files=3, sent=2, failed=1, log_dir=Path("l"), workspace=Path("w")
    )
    assert not store.success
    assert UploadProgress(current=1, total=4).fraction == 0.25
    assert UploadProgress(total=0).fraction == 1.0
