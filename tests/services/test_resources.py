"""ResourceService against the emulator (real sockets, real files in tmp_path)."""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from xnat_prefect.models import Resource, ResourceFile
from xnat_prefect.models.resource_upload import ResourceUploadResult
from xnat_prefect.services import ResourceService

if TYPE_CHECKING:
    from tests.services.conftest import Seeder


def _download(client: XNATClient, uri: str) -> bytes:
    return client.get(uri).content


def _file_names(client: XNATClient, parent: str, resource: str) -> list[str]:
    rows = client.get_result_set(f"{parent}/resources/{resource}/files")
    return sorted(r["URI"].split("/files/", 1)[1] for r in rows)


def test_list_session_and_scan_level(
    client: XNATClient, mr_session: Callable[..., str], seed: Seeder
) -> None:
    session_id = mr_session()
    base = f"/data/experiments/{session_id}"
    seed.file(base, "QC", "report.txt", b"abc")
    seed.file(f"{base}/scans/1", "DICOM", "1.dcm")
    seed.file(f"{base}/scans/1", "DICOM", "2.dcm")
    service = ResourceService(client)
    (qc,) = service.list(session_id)
    assert isinstance(qc, Resource)
    assert qc.label == "QC"
    assert qc.resource_id is not None
    (dicom,) = service.list("SUB1_MR1", scan_id="1", project="P1")
    assert dicom.label == "DICOM"
    assert service.list(session_id, scan_id="2") == []
    with pytest.raises(ResourceNotFoundError):
        service.list(session_id, scan_id="9")
    with pytest.raises(ResourceNotFoundError):
        service.list("NOPE", project="P1")


def test_get_by_label_and_numeric_id(
    client: XNATClient, mr_session: Callable[..., str], seed: Seeder
) -> None:
    session_id = mr_session()
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", "1.dcm")
    service = ResourceService(client)
    dicom = service.get(session_id, "DICOM", scan_id="1")
    assert dicom.label == "DICOM"
    assert service.get(session_id, str(dicom.resource_id), scan_id="1").label == "DICOM"
    with pytest.raises(ResourceNotFoundError, match="it has: DICOM"):
        service.get(session_id, "NIFTI", scan_id="1")
    with pytest.raises(InvalidInputError, match="resource_label"):
        service.get(session_id, "DICOM,NIFTI", scan_id="1")


def test_list_files(client: XNATClient, mr_session: Callable[..., str], seed: Seeder) -> None:
    session_id = mr_session()
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", "1.dcm", b"one")
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", "2.dcm", b"three")
    files = ResourceService(client).list_files("SUB1_MR1", "DICOM", scan_id="1", project="P1")
    assert all(isinstance(f, ResourceFile) for f in files)
    assert sorted((f.name, f.size) for f in files) == [("1.dcm", 3), ("2.dcm", 5)]
    assert all(f.uri and f.uri.startswith("/data/") for f in files)
    assert _download(client, files[0].uri or "") in (b"one", b"three")
    with pytest.raises(ResourceNotFoundError, match="'NIFTI'"):
        ResourceService(client).list_files(session_id, "NIFTI", scan_id="1")


def test_create(client: XNATClient, mr_session: Callable[..., str]) -> None:
    session_id = mr_session()
    service = ResourceService(client)
    created = service.create(session_id, "NIFTI", scan_id="1", format="NIFTI", content="T1_RAW")
    assert (created.label, created.format, created.content) == ("NIFTI", "NIFTI", "T1_RAW")
    assert service.create("SUB1_MR1", "QC", project="P1").label == "QC"
    assert [r.label for r in service.list(session_id)] == ["QC"]
    with pytest.raises(ConflictError, match="already exists"):
        service.create(session_id, "NIFTI", scan_id="1")


def test_create_forbidden_for_collaborator(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str]
) -> None:
    session_id = mr_session()
    client.put("/data/projects/P1/users/collaborator/bob")
    with pytest.raises(PermissionDeniedError):
        ResourceService(bob).create(session_id, "QC")


def test_delete(client: XNATClient, mr_session: Callable[..., str], seed: Seeder) -> None:
    session_id = mr_session()
    seed.file(f"/data/experiments/{session_id}", "QC", "a.txt")
    seed.file(f"/data/experiments/{session_id}/scans/1", "DICOM", "1.dcm")
    service = ResourceService(client)
    assert service.delete(session_id, "QC") is True
    assert service.delete("SUB1_MR1", "DICOM", scan_id="1", project="P1", remove_files=False)
    assert service.list(session_id) == []
    assert service.list(session_id, scan_id="1") == []
    with pytest.raises(ResourceNotFoundError, match="'QC'"):
        service.delete(session_id, "QC")


def test_delete_by_member_is_forbidden(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str], seed: Seeder
) -> None:
    session_id = mr_session()
    seed.file(f"/data/experiments/{session_id}", "QC", "a.txt")
    client.put("/data/projects/P1/users/member/bob")
    with pytest.raises(PermissionDeniedError):
        ResourceService(bob).delete(session_id, "QC")
    assert [r.label for r in ResourceService(client).list(session_id)] == ["QC"]


def test_upload_file_creates_the_resource(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    local = tmp_path / "report v1.pdf"
    data = b"%PDF-1.4 " + bytes(range(256)) * 100
    local.write_bytes(data)
    result = ResourceService(client).upload_file("SUB1_MR1", "QC", local, scan_id="1", project="P1")
    assert isinstance(result, ResourceUploadResult)
    assert (result.resource, result.name, result.size) == ("QC", "report v1.pdf", len(data))
    assert result["file_count"] == 1 and not result.extracted
    parent = f"/data/experiments/{session_id}/scans/1"
    assert _file_names(client, parent, "QC") == ["report v1.pdf"]
    assert hashlib.md5(_download(client, result.uri)).digest() == hashlib.md5(data).digest()


def test_upload_file_duplicates_raise_unless_overwrite(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    local = tmp_path / "notes.txt"
    local.write_bytes(b"first")
    service = ResourceService(client)
    service.upload_file(session_id, "QC", local)
    local.write_bytes(b"second version")
    with pytest.raises(ConflictError, match=r"notes\.txt.*overwrite=True"):
        service.upload_file(session_id, "QC", local)
    (listed,) = service.list_files(session_id, "QC")
    assert _download(client, listed.uri or "") == b"first"
    result = service.upload_file(session_id, "QC", local, overwrite=True)
    assert result.overwrite
    assert _download(client, result.uri) == b"second version"


def test_upload_file_extract(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.txt", "A")
        zipped.writestr("sub/b.txt", "B")
    result = ResourceService(client).upload_file(session_id, "OUT", archive, extract=True)
    assert result.extracted
    assert _file_names(client, f"/data/experiments/{session_id}", "OUT") == ["a.txt", "sub/b.txt"]


def test_upload_file_bad_input(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    service = ResourceService(client)
    with pytest.raises(InvalidInputError, match="not a file"):
        service.upload_file(session_id, "QC", tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="empty"):
        service.upload_file(session_id, "QC", empty)
    text = tmp_path / "plain.txt"
    text.write_text("x")
    with pytest.raises(InvalidInputError, match="extract"):
        service.upload_file(session_id, "QC", text, extract=True)
    with pytest.raises(InvalidInputError, match="resource_label"):
        service.upload_file(session_id, "Q/C", text)
    with pytest.raises(ResourceNotFoundError):
        service.upload_file("NOPE", "QC", text, project="P1")
    assert service.list(session_id) == []


class _ReadRecorder:
    """A file wrapper that records the size of every ``read`` call."""

    def __init__(self, handle: Any, sizes: list[int]) -> None:
        self._handle = handle
        self._sizes = sizes

    def read(self, size: int = -1) -> bytes:
        self._sizes.append(size)
        return self._handle.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Any:
        raise AssertionError("the upload iterated lines instead of reading chunks")

    def __enter__(self) -> _ReadRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def test_upload_file_streams_from_disk_in_chunks(
    client: XNATClient,
    mr_session: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id = mr_session()
    local = tmp_path / "big.bin"
    size = 3 * 1024 * 1024
    local.write_bytes(b"\x01" * size)
    sizes: list[int] = []
    original_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = original_open(self, *args, **kwargs)
        return _ReadRecorder(handle, sizes) if self == local else handle

    monkeypatch.setattr(Path, "open", recording_open)
    result = ResourceService(client).upload_file(session_id, "RAW", local)
    monkeypatch.undo()
    assert result.size == size
    assert len(sizes) > 10, sizes
    assert all(0 < n <= 1024 * 1024 for n in sizes), "a read asked for the whole file"
    (listed,) = ResourceService(client).list_files(session_id, "RAW")
    assert listed.size == size


def test_upload_file_forbidden_for_collaborator(
    client: XNATClient, bob: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    client.put("/data/projects/P1/users/collaborator/bob")
    local = tmp_path / "x.txt"
    local.write_text("x")
    with pytest.raises(PermissionDeniedError):
        ResourceService(bob).upload_file(session_id, "QC", local)


def test_upload_directory(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    folder = tmp_path / "qc out"
    (folder / "plots").mkdir(parents=True)
    (folder / "summary.txt").write_text("ok")
    (folder / "plots" / "motion.png").write_bytes(b"\x89PNG....")
    before = set(Path(tempfile.gettempdir()).glob("xnat-upload-*"))
    service = ResourceService(client)
    result = service.upload_directory("SUB1_MR1", "QC", folder, scan_id="1", project="P1")
    assert result.file_count == 2 and result.extracted
    assert result.local_path == folder
    parent = f"/data/experiments/{session_id}/scans/1"
    assert _file_names(client, parent, "QC") == ["plots/motion.png", "summary.txt"]
    assert set(Path(tempfile.gettempdir()).glob("xnat-upload-*")) == before
    with pytest.raises(ConflictError, match="overwrite=True"):
        service.upload_directory(session_id, "QC", folder, scan_id="1")
    assert set(Path(tempfile.gettempdir()).glob("xnat-upload-*")) == before
    (folder / "summary.txt").write_text("changed")
    service.upload_directory(session_id, "QC", folder, scan_id="1", overwrite=True)
    rows = {f.name: f for f in service.list_files(session_id, "QC", scan_id="1")}
    assert _download(client, rows["summary.txt"].uri or "") == b"changed"


def test_upload_directory_bad_input(
    client: XNATClient, mr_session: Callable[..., str], tmp_path: Path
) -> None:
    session_id = mr_session()
    service = ResourceService(client)
    with pytest.raises(InvalidInputError, match="not a directory"):
        service.upload_directory(session_id, "QC", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no files"):
        service.upload_directory(session_id, "QC", tmp_path / "empty")
