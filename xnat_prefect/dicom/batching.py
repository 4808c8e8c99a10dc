"""Split DICOM file lists into batches for parallel uploads.

Example:
    >>> split_into_batches([Path("a"), Path("b"), Path("c")], 2)
    [[PosixPath('a'), PosixPath('b')], [PosixPath('c')]]
    >>> split_into_n_batches([Path("a"), Path("b"), Path("c")], 2)
    [[PosixPath('a'), PosixPath('c')], [PosixPath('b')]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from xnat_prefect.dicom.collect import read_series_key
from xnat_prefect.errors import InvalidInputError

__all__ = ["SeriesGroup", "group_by_series", "split_into_batches", "split_into_n_batches"]


class SeriesGroup(NamedTuple):
    """The key of one series in :func:`group_by_series`.

    Attributes:
        study_instance_uid: Study Instance UID.
        series_instance_uid: Series Instance UID.
        series_number: Series Number as text (XNAT's scan ID; ``""`` when absent).
    """

    study_instance_uid: str
    series_instance_uid: str
    series_number: str


def split_into_batches(files: Sequence[Path], batch_size: int) -> list[list[Path]]:
    """Split files into consecutive batches of at most ``batch_size``.

    Args:
        files: Sequence of file paths to split.
        batch_size: Maximum files per batch (≥ 1).

    Returns:
        List of batches (no empty batch; ``[]`` for no files).

    Raises:
        InvalidInputError: ``batch_size`` is not an integer ≥ 1.

    Example:
        >>> [len(b) for b in split_into_batches(files_250, 100)]
        [100, 100, 50]
    """
    _check_count("batch_size", batch_size)
    items = list(files)
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def split_into_n_batches(files: Sequence[Path], num_batches: int) -> list[list[Path]]:
    """Split files into ``num_batches`` roughly equal batches, round-robin.

    File ``i`` goes to batch ``i % num_batches``, so batch sizes differ by at most one.
    Fewer files than batches give one batch per file (never an empty batch).

    Args:
        files: Sequence of file paths to split.
        num_batches: Number of batches to create (≥ 1).

    Returns:
        List of ``min(num_batches, len(files))`` batches.

    Raises:
        InvalidInputError: ``num_batches`` is not an integer ≥ 1.

    Example:
        >>> [len(b) for b in split_into_n_batches(files_10, 3)]
        [4, 3, 3]
    """
    _check_count("num_batches", num_batches)
    items = list(files)
    return [items[i::num_batches] for i in range(min(num_batches, len(items)))]


def group_by_series(
    files: Sequence[Path], *, skip_unreadable: bool = False
) -> dict[SeriesGroup, list[Path]]:
    """Group files by series, reading each file's header (not its pixel data).

    Args:
        files: DICOM files.
        skip_unreadable: Leave out files that are not readable DICOM instead of raising.

    Returns:
        Series key → files, series in order of first appearance, files in input order.

    Raises:
        InvalidInputError: A file is not readable DICOM (unless ``skip_unreadable``).

    Example:
        >>> {key.series_number: len(paths) for key, paths in group_by_series(files).items()}
        {'1': 10, '2': 10}
    """
    groups: dict[SeriesGroup, list[Path]] = {}
    for path in files:
        try:
            key = read_series_key(path)
        except InvalidInputError:
            if skip_unreadable:
                continue
            raise
        group = SeriesGroup(key.study_instance_uid, key.series_instance_uid, key.series_number)
        groups.setdefault(group, []).append(path)
    return groups


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1 (got {value!r})")
