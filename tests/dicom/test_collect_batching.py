"""Collecting DICOM files from disk and splitting them into batches."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from xnat_prefect.dicom.batching import (
    SeriesGroup,
    group_by_series,
    split_into_batches,
    split_into_n_batches,
)
from xnat_prefect.dicom.collect import (
    collect_dicom_files,
    is_dicom_file,
    read_series_key,
)
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.testing.synthetic import generate_study, write_non_dicom


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, list[Path]]:
    """A folder with every kind of file collect_dicom_files must take or skip."""
    root = tmp_path / "root"
    named = generate_study(root / "named", series=2, instances_per_series=3).files
    bare = generate_study(
        root / "bare", series=1, instances_per_series=2, extensionless=True, seed=1
    ).files
    uid_named = root / "uid" / "1.3.12.2.1107.5.2.43.166"
    uid_named.parent.mkdir()
    uid_named.write_bytes(named[0].read_bytes())
    upper = root / "upper" / "IM1.DCM"
    upper.parent.mkdir()
    upper.write_bytes(named[0].read_bytes())
    skipped = [
        write_non_dicom(root / "notes.txt"),
        write_non_dicom(root / "README"),  # extensionless but no DICM preamble
        root / "analyze.img",
        root / ".hidden.dcm",
        root / ".git" / "objects.dcm",
        root / "DICOMDIR",
    ]
    for path in skipped[2:]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(named[0].read_bytes())
    return {
        "dicom": [*named, *bare, uid_named, upper],
        "bare": [*bare, uid_named],
        "skipped": skipped,
    }


def test_collect_takes_dicom_and_skips_the_rest(
    tmp_path: Path, tree: dict[str, list[Path]]
) -> None:
    found = collect_dicom_files(tmp_path / "root")
    assert found == sorted(tree["dicom"])
    assert not set(found) & set(tree["skipped"])


def test_collect_without_extensionless(tmp_path: Path, tree: dict[str, list[Path]]) -> None:
    found = collect_dicom_files(tmp_path / "root", include_extensionless=False)
    assert found == sorted(set(tree["dicom"]) - set(tree["bare"]))


def test_collect_does_not_follow_folder_symlinks(tmp_path: Path) -> None:
    outside = generate_study(tmp_path / "outside", series=1, instances_per_series=2)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    assert outside.files and collect_dicom_files(root) == []


def test_collect_rejects_non_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        collect_dicom_files(tmp_path / "missing")
    file = write_non_dicom(tmp_path / "file.txt")
    with pytest.raises(InvalidInputError, match="is not a directory") as info:
        collect_dicom_files(file)
    assert isinstance(info.value, ValueError)  # the seed documents ValueError


def test_is_dicom_file(tmp_path: Path) -> None:
    m = generate_study(tmp_path / "s", series=1, instances_per_series=1)
    assert is_dicom_file(m.files[0])
    assert not is_dicom_file(write_non_dicom(tmp_path / "x"))
    assert not is_dicom_file(tmp_path / "missing")
    (tmp_path / "short").write_bytes(b"\0" * 128 + b"DIC")
    assert not is_dicom_file(tmp_path / "short")


def test_read_series_key(tmp_path: Path) -> None:
    m = generate_study(tmp_path / "s", series=2, instances_per_series=1)
    key = read_series_key(m.files[1])
    assert key.study_instance_uid == m.study_uid
    assert key.series_instance_uid == m.series[2].uid
    assert key.series_number == "2"
    assert key.sop_instance_uid == m.sop_uids[2][0]
    assert key.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4"
    assert key.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    with pytest.raises(InvalidInputError, match="no SOP Instance UID"):
        read_series_key(write_non_dicom(tmp_path / "bad.dcm"))
    with pytest.raises(InvalidInputError, match="not a readable DICOM file"):
        read_series_key(tmp_path / "missing.dcm")


@pytest.mark.parametrize(("count", "size"), [(0, 3), (1, 1), (10, 3), (10, 10), (10, 11)])
def test_split_into_batches_covers_every_file_once(count: int, size: int) -> None:
    files = [Path(f"f{i}") for i in range(count)]
    batches = split_into_batches(files, size)
    assert [f for b in batches for f in b] == files
    assert all(1 <= len(b) <= size for b in batches)
    assert len(batches) == -(-count // size)


@pytest.mark.parametrize(("count", "n"), [(0, 3), (2, 5), (10, 3), (9, 3), (100, 7)])
def test_split_into_n_batches_round_robin(count: int, n: int) -> None:
    files = [Path(f"f{i}") for i in range(count)]
    batches = split_into_n_batches(files, n)
    assert Counter(f for b in batches for f in b) == Counter(files)
    assert len(batches) == min(n, count)
    assert all(batches)
    if batches:
        sizes = [len(b) for b in batches]
        assert max(sizes) - min(sizes) <= 1
        assert batches[0][:2] == files[: min(count, 2 * n)][::n][:2]


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_batch_counts_are_validated(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="must be an integer >= 1"):
        split_into_batches([Path("a")], bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="must be an integer >= 1"):
        split_into_n_batches([Path("a")], bad)  # type: ignore[arg-type]


def test_group_by_series(tmp_path: Path) -> None:
    m = generate_study(tmp_path / "s", series=3, instances_per_series=4)
    junk = write_non_dicom(tmp_path / "junk.dcm")
    files = list(reversed(m.files))
    groups = group_by_series(files)
    assert [g.series_number for g in groups] == ["3", "2", "1"]
    for group, paths in groups.items():
        assert group == SeriesGroup(
            m.study_uid, m.series[int(group.series_number)].uid, group.series_number
        )
        assert paths == [f for f in files if f.parent.name == f"S{int(group.series_number):03d}"]
    with pytest.raises(InvalidInputError):
        group_by_series([*files, junk])
    assert group_by_series([*files, junk], skip_unreadable=True) == groups
