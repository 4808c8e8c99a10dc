"""C-ECHO / C-STORE sender against the emulator's receiver, over real sockets."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from xnat_prefect.dicom.batching import split_into_n_batches
from xnat_prefect.dicom.store_scu import (
    NOT_SENT,
    DicomNetworkError,
    StoreResult,
    echo,
    send_files,
    send_parallel,
)
from xnat_prefect.errors import InvalidInputError, XNATError
from xnat_prefect.testing.scp import DicomReceiver, StoreContext
from xnat_prefect.testing.synthetic import StudyManifest, generate_study, write_non_dicom


class Inbox:
    def __init__(self) -> None:
        self.uids: list[str] = []
        self.syntaxes: list[str] = []
        self.lock = threading.Lock()
        self.reject_uid: str | None = None

    def __call__(self, path: Path, context: StoreContext) -> None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        path.unlink()
        if ds.SOPInstanceUID == self.reject_uid:
            raise ValueError("refused by test")
        with self.lock:
            self.uids.append(str(ds.SOPInstanceUID))
            self.syntaxes.append(context.transfer_syntax_uid)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def receiver(tmp_path: Path, inbox: Inbox) -> Iterator[DicomReceiver]:
    with DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws") as rcv:
        yield rcv


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyManifest:
    return generate_study(
        tmp_path_factory.mktemp("study"), project="P1", series=3, instances_per_series=20
    )


def test_echo_ok(receiver: DicomReceiver) -> None:
    echo("127.0.0.1", receiver.port, "XNAT", timeout=5)


def test_echo_wrong_called_ae_names_the_fix(receiver: DicomReceiver) -> None:
    with pytest.raises(DicomNetworkError) as info:
        echo("127.0.0.1", receiver.port, "NOTXNAT", timeout=5)
    err = info.value
    assert isinstance(err, XNATError)
    assert "'NOTXNAT'" in str(err) and str(receiver.port) in str(err)
    assert "Called AE title not recognised" in str(err)
    assert "use the receiver's AE title" in str(err)
    assert (err.host, err.port, err.called_aet, err.transient) == (
        "127.0.0.1",
        receiver.port,
        "NOTXNAT",
        False,
    )


def test_echo_nothing_listening_is_transient(tmp_path: Path, inbox: Inbox) -> None:
    rcv = DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws").start()
    port = rcv.port
    rcv.stop()  # the port is now closed
    with pytest.raises(DicomNetworkError, match="could not connect") as info:
        echo("127.0.0.1", port, "XNAT", timeout=2)
    assert info.value.transient


def test_bad_calling_ae_is_invalid_input(receiver: DicomReceiver) -> None:
    with pytest.raises(InvalidInputError, match="calling AE title"):
        echo("127.0.0.1", receiver.port, "XNAT", calling_aet="X" * 17)


def test_send_files_one_association_every_uid_once(
    study: StudyManifest, receiver: DicomReceiver, inbox: Inbox
) -> None:
    seen: list[StoreResult] = []
    results = send_files(study.files, "127.0.0.1", receiver.port, "XNAT", on_result=seen.append)
    assert [r.path for r in results] == study.files
    assert all(r.ok and r.status == 0 and r.error is None for r in results)
    assert len(seen) == len(study.files)
    assert Counter(inbox.uids) == Counter(study.all_sop_uids)
    assert set(inbox.syntaxes) == {"1.2.840.10008.1.2.1"}  # sent as stored, not converted


def test_send_parallel_three_workers_every_uid_exactly_once(
    study: StudyManifest, receiver: DicomReceiver, inbox: Inbox
) -> None:
    before = set(threading.enumerate())
    batches = split_into_n_batches(study.files, 3)
    results = send_parallel(batches, "127.0.0.1", receiver.port, "XNAT", workers=3)
    assert len(results) == len(study.files) and all(r.ok for r in results)
    assert sorted(r.path for r in results) == sorted(study.files)
    assert Counter(inbox.uids) == Counter(study.all_sop_uids)
    assert max(Counter(inbox.uids).values()) == 1
    time.sleep(0.05)
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_mixed_transfer_syntaxes_keep_their_syntax(
    tmp_path: Path, receiver: DicomReceiver, inbox: Inbox
) -> None:
    files = []
    for syntax in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless):
        m = generate_study(
            tmp_path / syntax,
            series=1,
            instances_per_series=2,
            transfer_syntax=syntax,
            seed=len(files),
        )
        files += m.files
    results = send_files(files, "127.0.0.1", receiver.port, "XNAT")
    assert all(r.ok for r in results)
    assert Counter(inbox.syntaxes) == Counter(
        {ImplicitVRLittleEndian: 2, DeflatedExplicitVRLittleEndian: 2, RLELossless: 2}
    )


def test_bad_files_and_scp_failures_are_reported_not_raised(
    tmp_path: Path, study: StudyManifest, receiver: DicomReceiver, inbox: Inbox
) -> None:
    junk = write_non_dicom(tmp_path / "junk.dcm")
    files = [study.files[0], junk, study.files[1]]
    inbox.reject_uid = study.sop_uids[1][1]
    results = send_files(files, "127.0.0.1", receiver.port, "XNAT")
    ok, bad, refused = results
    assert ok.ok and ok.sop_instance_uid == study.sop_uids[1][0]
    assert not bad.ok and bad.status == NOT_SENT and bad.sop_instance_uid is None
    assert "not a readable DICOM" in (bad.error or "")
    assert not refused.ok and 0xC000 <= refused.status <= 0xCFFF
    assert "refused by test" in (refused.error or "")
    assert inbox.uids == [study.sop_uids[1][0]]


def test_send_to_closed_port_raises(tmp_path: Path, study: StudyManifest, inbox: Inbox) -> None:
    rcv = DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws").start()
    port = rcv.port
    rcv.stop()
    with pytest.raises(DicomNetworkError):
        send_files(study.files[:2], "127.0.0.1", port, "XNAT", timeout=2)
    with pytest.raises(DicomNetworkError):
        send_parallel([study.files[:1], study.files[1:2]], "127.0.0.1", port, "XNAT", timeout=2)
    other = DicomReceiver(on_stored=inbox, workspace=tmp_path / "w2").start()
    try:
        with pytest.raises(DicomNetworkError, match="rejected"):
            send_files(study.files[:1], "127.0.0.1", other.port, "WRONG")
    finally:
        other.stop()


def test_send_parallel_validates_workers_and_handles_empty(receiver: DicomReceiver) -> None:
    with pytest.raises(InvalidInputError, match="workers"):
        send_parallel([], "127.0.0.1", receiver.port, "XNAT", workers=0)
    assert send_parallel([[], []], "127.0.0.1", receiver.port, "XNAT") == []
    assert send_files([], "127.0.0.1", receiver.port, "XNAT") == []


def test_bad_called_ae_is_invalid_input(receiver: DicomReceiver) -> None:
    with pytest.raises(InvalidInputError, match="1-16 ASCII"):
        echo("127.0.0.1", receiver.port, "X" * 17)


def test_sop_class_the_scp_refuses_is_not_sent(
    tmp_path: Path, study: StudyManifest, inbox: Inbox
) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    ct = generate_study(tmp_path / "ct", modality="CT", series=1, instances_per_series=1)
    ae = AE(ae_title="CTONLY")
    ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _event: 0)]
    )
    try:
        port = server.server_address[1]
        results = send_files([study.files[0], ct.files[0]], "127.0.0.1", port, "CTONLY")
    finally:
        server.shutdown()
    mr, ct_result = results
    assert not mr.ok and mr.status == NOT_SENT
    assert "refused SOP class MR Image Storage" in (mr.error or "")
    assert ct_result.ok
