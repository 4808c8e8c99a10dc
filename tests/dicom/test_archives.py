"""Streaming archive builds and safe extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from xnat_prefect.dicom.archives import UnsafeArchiveError, build_archive, safe_extract
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.testing.synthetic import StudyManifest, generate_study


@pytest.fixture
def study(tmp_path: Path) -> StudyManifest:
    return generate_study(tmp_path / "study", series=2, instances_per_series=3)


@pytest.mark.parametrize(
    ("fmt", "compress"), [("zip", False), ("zip", True), ("tar", False), ("tar", True)]
)
def test_round_trip(tmp_path: Path, study: StudyManifest, fmt: str, compress: bool) -> None:
    info = build_archive(study.files, tmp_path / "out", fmt=fmt, compress=compress)  # type: ignore[arg-type]
    assert info.path.exists() and info.file_count == 6
    assert info.size == info.path.stat().st_size
    assert info.md5 == hashlib.md5(info.path.read_bytes()).hexdigest()
    assert not list((tmp_path / "out").glob("*.part"))
    if fmt == "zip":
        with zipfile.ZipFile(info.path) as zf:
            methods = {i.compress_type for i in zf.infolist()}
            assert methods == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}
            assert all(i.flag_bits & 0x08 == 0 for i in zf.infolist())  # no data descriptors
        assert info.content_type == "application/zip"
    else:
        assert info.path.name.endswith(".tar.gz" if compress else ".tar")
    extracted = safe_extract(info.path, tmp_path / "x")
    relative = sorted(p.relative_to(tmp_path / "x").as_posix() for p in extracted)
    assert relative == sorted(f"{f.parent.name}/{f.name}" for f in study.files)
    for path in extracted:
        original = study.files[
            [f"{f.parent.name}/{f.name}" for f in study.files].index(
                path.relative_to(tmp_path / "x").as_posix()
            )
        ]
        assert path.read_bytes() == original.read_bytes()
    assert [p.name for p in (tmp_path / "x").iterdir() if p.name.startswith(".")] == []


def test_entry_names_root_and_flatten(tmp_path: Path, study: StudyManifest) -> None:
    info = build_archive(study.files, tmp_path, root=tmp_path / "study", name="a.zip")
    with zipfile.ZipFile(info.path) as zf:
        assert sorted(zf.namelist())[0] == "S001/IM0001.dcm"
    flat = build_archive(study.files, tmp_path, flatten=True, name="b.zip")
    with zipfile.ZipFile(flat.path) as zf:
        names = zf.namelist()
    assert len(set(names)) == 6 and "IM0001.dcm" in names and "IM0001_2.dcm" in names
    with pytest.raises(InvalidInputError, match="not under the archive root"):
        build_archive(study.files, tmp_path, root=tmp_path / "study" / "S001")


def test_build_refuses_bad_input(tmp_path: Path, study: StudyManifest) -> None:
    with pytest.raises(InvalidInputError, match="no files"):
        build_archive([], tmp_path)
    with pytest.raises(InvalidInputError, match="missing or not a regular file"):
        build_archive([tmp_path / "nope.dcm"], tmp_path)
    with pytest.raises(InvalidInputError, match="unknown archive format"):
        build_archive(study.files, tmp_path, fmt="rar")  # type: ignore[arg-type]
    assert list(tmp_path.glob("*.part")) == []


def test_symlinked_file_is_archived_as_its_content(tmp_path: Path, study: StudyManifest) -> None:
    link = tmp_path / "study" / "S001" / "link.dcm"
    link.symlink_to(study.files[0])
    info = build_archive([link], tmp_path, fmt="tar")
    with tarfile.open(info.path) as tf:
        (member,) = tf.getmembers()
    assert member.isreg() and member.size == study.files[0].stat().st_size


def _zip_with(tmp_path: Path, name: str, *, symlink: bool = False) -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/first.dcm", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return path


def _tar_with(tmp_path: Path, kind: bytes, name: str = "evil", link: str = "") -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("ok/first.dcm")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        bad = tarfile.TarInfo(name)
        bad.type = kind
        bad.linkname = link
        data = b"evil" if kind == tarfile.REGTYPE else b""
        bad.size = len(data)
        tf.addfile(bad, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("name", "symlink", "why"),
    [
        ("../escape.dcm", False, "'..'"),
        ("ok/../../escape.dcm", False, "'..'"),
        ("/etc/evil.dcm", False, "absolute"),
        ("C:/evil.dcm", False, "absolute"),
        ("..\\evil.dcm", False, "'..'"),
        ("link.dcm", True, "symbolic link"),
    ],
)
def test_unsafe_zip_entries_are_refused(tmp_path: Path, name: str, symlink: bool, why: str) -> None:
    archive = _zip_with(tmp_path, name, symlink=symlink)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=why) as info:
        safe_extract(archive, dest)
    assert info.value.entry == name and repr(name) in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "escape.dcm").exists()


@pytest.mark.parametrize(
    ("kind", "name", "link", "why"),
    [
        (tarfile.SYMTYPE, "link.dcm", "/etc/passwd", "symbolic link"),
        (tarfile.LNKTYPE, "hard.dcm", "ok/first.dcm", "hard link"),
        (tarfile.CHRTYPE, "dev", "", "device"),
        (tarfile.FIFOTYPE, "fifo", "", "device, FIFO"),
        (tarfile.REGTYPE, "../escape.dcm", "", "'..'"),
        (tarfile.REGTYPE, "/abs.dcm", "", "absolute"),
    ],
)
def test_unsafe_tar_entries_are_refused(
    tmp_path: Path, kind: bytes, name: str, link: str, why: str
) -> None:
    archive = _tar_with(tmp_path, kind, name, link)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=why):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_extract_refuses_existing_files_duplicates_and_size(
    tmp_path: Path, study: StudyManifest
) -> None:
    info = build_archive(study.files, tmp_path, name="s.zip")
    dest = tmp_path / "dest"
    safe_extract(info.path, dest)
    before = sorted(dest.rglob("*"))
    with pytest.raises(InvalidInputError, match="already exists"):
        safe_extract(info.path, dest)
    assert sorted(dest.rglob("*")) == before
    dup = tmp_path / "dup.tar"
    with tarfile.open(dup, "w") as tf:
        for _ in range(2):
            member = tarfile.TarInfo("same.dcm")
            member.size = 1
            tf.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        safe_extract(dup, tmp_path / "d2")
    with pytest.raises(InvalidInputError, match="expands to more than"):
        safe_extract(info.path, tmp_path / "d3", max_bytes=1000)
    assert not (tmp_path / "d3").exists()


def test_extract_refuses_non_archives(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not an archive at all" * 50)
    with pytest.raises(InvalidInputError, match="neither a zip nor a tar"):
        safe_extract(junk, tmp_path / "d")
    with pytest.raises(InvalidInputError, match="does not exist"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "d")
    assert not (tmp_path / "d").exists()
