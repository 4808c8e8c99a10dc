"""``ingest_dicom(transport="cstore", verify_checksums=True)`` (BUG-2 in docs/reliability.md).

A C-STORE receiver writes its own Part-10 file meta, so no archived file can have the source
file's MD5. The flow skips the MD5 with one warning saying why and still verifies what is
comparable: the scans and the files per scan (and SOP Instance UIDs where the catalog has them).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.errors import VerificationError
from xnat_prefect.flows._ingest_verify import META_REWRITTEN_WARNING
from xnat_prefect.flows.ingest import ingest_dicom

ONE = {"batches": 1}


def _node(lab: Any) -> DicomNode:
    return DicomNode(
        host="127.0.0.1", port=lab.emulator.dicom_port, called_ae_title=lab.emulator.dicom_ae_title
    )


def test_cstore_with_verify_checksums_succeeds_and_says_why_md5_was_skipped(
    creds: XNATCredentials, lab: Any, fast: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    lab.project("P1")
    folder, manifest = lab.study()
    result = ingest_dicom(
        creds,
        str(folder),
        transport="cstore",
        dicom_node=_node(lab),
        verify_checksums=True,
        **ONE,
        **fast,
    )
    assert result.verified and result.experiment_id
    assert result.files_sent == len(manifest.files) == 6
    assert [s.scan_id for s in result.scans] == ["1", "2"]
    assert all(s.ok and s.archived_files == s.local_files == 3 for s in result.scans)
    assert not any(s.md5_checked for s in result.scans)
    assert result.warnings.count(META_REWRITTEN_WARNING) == 1
    logged = [r for r in caplog.records if "MD5 not checked" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING


def test_cstore_with_verify_checksums_still_catches_a_missing_file(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    folder = lab.study_with_a_repeated_instance()
    with pytest.raises(VerificationError) as caught:
        ingest_dicom(
            creds,
            str(folder),
            transport="cstore",
            dicom_node=_node(lab),
            verify_checksums=True,
            **ONE,
            **fast,
        )
    assert "scan 1: 3 of 4 file(s)" in caught.value.message


def test_http_transports_still_compare_md5s(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study()
    result = ingest_dicom(
        creds,
        str(folder),
        transport="parallel-zip",
        verify_checksums=True,
        project="P1",
        subject="SUBJ01",
        session="SUBJ01_MR1",
        **ONE,
        **fast,
    )
    assert result.verified and all(s.md5_checked and s.md5_mismatches == 0 for s in result.scans)
    assert META_REWRITTEN_WARNING not in result.warnings
