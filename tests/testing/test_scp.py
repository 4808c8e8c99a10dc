"""The emulator's DICOM receiver (SCP), over real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]

from xnat_prefect.testing.scp import DicomReceiver, StoreContext
from xnat_prefect.testing.synthetic import generate_study


class Inbox:
    """Collects what the receiver hands over; can be told to fail."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.items: list[tuple[Path, StoreContext]] = []
        self.fail_with: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self, path: Path, context: StoreContext) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        target = self.folder / path.name
        path.replace(target)
        with self.lock:
            self.items.append((target, context))


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox")


@pytest.fixture
def receiver(tmp_path: Path, inbox: Inbox) -> Iterator[DicomReceiver]:
    with DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws") as rcv:
        yield rcv


def _associate(port: int, called: str, contexts: list[tuple[str, str]]) -> object:
    ae = AE(ae_title="TESTSCU")
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_start_binds_a_free_port_and_stops_all_threads(tmp_path: Path, inbox: Inbox) -> None:
    before = set(threading.enumerate())
    rcv = DicomReceiver(on_stored=inbox, workspace=tmp_path / "ws").start()  # speed: bench/
    try:
        assert rcv.port > 0 and rcv.running
        assoc = _associate(rcv.port, "XNAT", [(Verification, ImplicitVRLittleEndian)])
        assert assoc.is_established  # type: ignore[attr-defined]
        assert assoc.send_c_echo().Status == 0  # type: ignore[attr-defined]
        # leave this association open: stop() must abort it
    finally:
        rcv.stop()
    assert not rcv.running
    time.sleep(0.05)
    assoc.join(2)  # type: ignore[attr-defined]
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []
    rcv.stop()  # idempotent


def test_wrong_called_ae_is_rejected_unless_any_accepted(tmp_path: Path, inbox: Inbox) -> None:
    with DicomReceiver(on_stored=inbox, workspace=tmp_path / "a", ae_title="MYXNAT") as rcv:
        assoc = _associate(rcv.port, "OTHER", [(Verification, ImplicitVRLittleEndian)])
        assert assoc.is_rejected  # type: ignore[attr-defined]
        reply = assoc.acceptor.primitive  # type: ignore[attr-defined]
        assert (reply.result_source, reply.diagnostic) == (1, 7)  # called AE not recognised
    with DicomReceiver(on_stored=inbox, workspace=tmp_path / "b", accept_any_called_ae=True) as rcv:
        assoc = _associate(rcv.port, "OTHER", [(Verification, ImplicitVRLittleEndian)])
        assert assoc.is_established  # type: ignore[attr-defined]
        assoc.release()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless]
)
def test_store_keeps_the_dataset_as_sent(
    tmp_path: Path, receiver: DicomReceiver, inbox: Inbox, syntax: str
) -> None:
    m = generate_study(tmp_path / "s", series=1, instances_per_series=2, transfer_syntax=syntax)
    assoc = _associate(receiver.port, "XNAT", [(MRImageStorage, syntax)])
    try:
        for path in m.files:
            assert assoc.send_c_store(path).Status == 0  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert len(inbox.items) == 2
    for stored, context in inbox.items:
        ds = pydicom.dcmread(stored)
        assert ds.file_meta.TransferSyntaxUID == syntax == context.transfer_syntax_uid
        original = pydicom.dcmread(m.files[m.sop_uids[1].index(ds.SOPInstanceUID)])
        assert ds.PixelData == original.PixelData
        assert (context.calling_ae, context.called_ae) == ("TESTSCU", "XNAT")
        assert context.remote_host == "127.0.0.1" and context.remote_port > 0
        assert context.sop_instance_uid == ds.SOPInstanceUID


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEG2000Lossless])
def test_compressed_syntaxes_are_accepted_without_decoding(
    tmp_path: Path, receiver: DicomReceiver, inbox: Inbox, syntax: str
) -> None:
    m = generate_study(tmp_path / "s", series=1, instances_per_series=1)
    ds = pydicom.dcmread(m.files[0])
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8 opaque compressed bytes \xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "compressed.dcm"
    ds.save_as(path, enforce_file_format=True)
    assoc = _associate(receiver.port, "XNAT", [(MRImageStorage, syntax)])
    try:
        assert assoc.send_c_store(path).Status == 0  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    ((stored, context),) = inbox.items
    assert context.transfer_syntax_uid == syntax
    assert pydicom.dcmread(stored).PixelData == ds.PixelData


def test_handler_failure_returns_failure_status_and_removes_the_file(
    tmp_path: Path, receiver: DicomReceiver, inbox: Inbox
) -> None:
    m = generate_study(tmp_path / "s", series=1, instances_per_series=1)
    inbox.fail_with = RuntimeError("project PX is locked")
    assoc = _associate(receiver.port, "XNAT", [(MRImageStorage, "1.2.840.10008.1.2.1")])
    try:
        reply = assoc.send_c_store(m.files[0])  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert 0xC000 <= reply.Status <= 0xCFFF
    assert "project PX is locked" in reply.ErrorComment
    assert receiver.counts == (0, 1)
    assert list((tmp_path / "ws").iterdir()) == []


def test_start_twice_and_port_in_use(tmp_path: Path, receiver: DicomReceiver, inbox: Inbox) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        receiver.start()
    clash = DicomReceiver(on_stored=inbox, workspace=tmp_path / "x", port=receiver.port)
    with pytest.raises(OSError):
        clash.start()
    assert not clash.running
