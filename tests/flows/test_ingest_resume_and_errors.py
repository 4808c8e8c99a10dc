"""``ingest_dicom``: the transfer ledger on re-runs (BUG-3) and typed errors (BUG-6, BUG-7)."""

from __future__ import annotations

from typing import Any

import pytest

from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.dicom.store_scu import DicomNetworkError
from xnat_prefect.errors import InvalidInputError, TransferError
from xnat_prefect.flows.ingest import ingest_dicom

IMPORT_KEY = "POST /data/services/import"
LABELS = {"project": "P1", "subject": "SUBJ01", "session": "SUBJ01_MR1"}


def _accepted(lab: Any) -> int:
    return int(lab.emulator.metrics()["statuses"].get(IMPORT_KEY, {}).get("200", 0))


@pytest.mark.parametrize("transport", ["gradual", "parallel-zip"])
def test_a_rerun_sends_nothing_xnat_already_accepted_unless_replacing(
    creds: XNATCredentials, lab: Any, fast: dict[str, float], transport: str
) -> None:
    lab.project("P1")
    folder, manifest = lab.study()
    first = ingest_dicom(creds, str(folder), transport=transport, batches=2, **LABELS, **fast)
    assert first.files_sent == len(manifest.files) == 6
    lab.emulator.reset_metrics()
    again = ingest_dicom(
        creds, str(folder), transport=transport, batches=2, overwrite="append", **LABELS, **fast
    )
    assert again.files_sent == 0 and _accepted(lab) == 0
    assert again.verified and again.experiment_id == first.experiment_id
    # a replacement does not trust the ledger: everything goes again
    lab.emulator.reset_metrics()
    replaced = ingest_dicom(
        creds, str(folder), transport=transport, batches=2, overwrite="delete", **LABELS, **fast
    )
    assert replaced.files_sent == 6 and _accepted(lab) > 0
    assert replaced.verified and [e["ID"] for e in lab.experiments("P1")] == [first.experiment_id]


def test_a_changed_file_is_sent_again(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, manifest = lab.study()
    ingest_dicom(creds, str(folder), transport="gradual", batches=1, **LABELS, **fast)
    touched = manifest.files[0]
    touched.write_bytes(touched.read_bytes())  # same bytes, new mtime: no longer "unchanged"
    lab.emulator.reset_metrics()
    again = ingest_dicom(
        creds, str(folder), transport="gradual", batches=1, overwrite="append", **LABELS, **fast
    )
    assert again.files_sent == 1 and _accepted(lab) == 1 and again.verified


def test_a_bad_label_is_refused_before_any_batch_runs(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study()
    with pytest.raises(InvalidInputError) as caught:
        ingest_dicom(
            creds, str(folder), transport="gradual", **{**LABELS, "session": "MR 1"}, **fast
        )
    assert type(caught.value) is InvalidInputError
    assert "session='MR 1'" in str(caught.value) and "'MR_1'" in str(caught.value)
    assert IMPORT_KEY not in lab.emulator.metrics()["requests"]


def test_the_same_permanent_error_in_every_batch_keeps_its_type(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, _ = lab.study()
    node = DicomNode(
        host="127.0.0.1", port=lab.emulator.dicom_port, called_ae_title="NOTXNAT", timeout_seconds=3
    )
    with pytest.raises(DicomNetworkError) as caught:
        ingest_dicom(creds, str(folder), transport="cstore", dicom_node=node, batches=2, **fast)
    assert "NOTXNAT" in caught.value.message and not caught.value.transient


def test_a_refused_file_is_named_in_the_transfer_error(
    creds: XNATCredentials, lab: Any, fast: dict[str, float]
) -> None:
    lab.project("P1")
    folder, manifest = lab.study()
    victim = manifest.files[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 200])  # pixel data cut short: XNAT cannot parse it
    with pytest.raises(TransferError) as caught:
        ingest_dicom(creds, str(folder), transport="gradual", batches=1, **LABELS, **fast)
    assert str(victim) in caught.value.message
    assert "1 of 6 file(s)" in caught.value.message
