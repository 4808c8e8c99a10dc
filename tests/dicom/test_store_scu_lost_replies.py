"""C-STORE replies that never come (BUG-1): abort, resend on a new association, or give up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from xnat_prefect.dicom.store_scu import NOT_SENT, send_files
from xnat_prefect.testing.scp import DicomReceiver, StoreContext
from xnat_prefect.testing.synthetic import StudyManifest, generate_study


class SlowInbox:
    """Stores files, but sits on the first ``stall`` attempts of one SOP instance."""

    def __init__(self) -> None:
        self.uids: list[str] = []
        self.lock = threading.Lock()
        self.slow_uid: str | None = None
        self.stall = 0
        self.release = threading.Event()

    def __call__(self, path: Path, context: StoreContext) -> None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        path.unlink()
        uid = str(ds.SOPInstanceUID)
        with self.lock:
            wait = uid == self.slow_uid and self.stall > 0
            if wait:
                self.stall -= 1
        if wait:
            self.release.wait(3)  # longer than the sender's timeout: no reply in time
        with self.lock:
            self.uids.append(uid)


@pytest.fixture
def inbox() -> Iterator[SlowInbox]:
    box = SlowInbox()
    yield box
    box.release.set()


@pytest.fixture
def receiver(tmp_path: Path, inbox: SlowInbox) -> Iterator[DicomReceiver]:
    with DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws") as rcv:
        yield rcv


@pytest.fixture
def study(tmp_path: Path) -> StudyManifest:
    return generate_study(tmp_path / "study", project="P1", series=1, instances_per_series=8)


def _uid(manifest: StudyManifest, index: int) -> str:
    return str(pydicom.dcmread(manifest.files[index], stop_before_pixels=True).SOPInstanceUID)


def test_a_lost_reply_aborts_and_resends_on_a_new_association(
    receiver: DicomReceiver, inbox: SlowInbox, study: StudyManifest
) -> None:
    inbox.slow_uid, inbox.stall = _uid(study, 3), 1
    results = send_files(study.files, "127.0.0.1", receiver.port, receiver.ae_title, timeout=1.0)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    expected = {_uid(study, n) for n in range(len(study.files))}
    assert set(inbox.uids) == expected  # everything arrived (the slow one possibly twice)


def test_lost_replies_in_a_row_give_up_with_transient_not_sent(
    receiver: DicomReceiver, inbox: SlowInbox, study: StudyManifest
) -> None:
    inbox.slow_uid, inbox.stall = _uid(study, 2), 5
    results = send_files(study.files, "127.0.0.1", receiver.port, receiver.ae_title, timeout=1.0)
    assert [r.ok for r in results[:2]] == [True, True]
    failed = results[2:]
    assert all(r.status == NOT_SENT and r.transient for r in failed)
    assert "lost twice in a row" in (failed[0].error or "")
