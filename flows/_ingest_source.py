"""The local side of an ingest: the DICOM files, their series and UIDs, and the batch plan.

A source is a folder or a zip (extracted safely into a scratch folder). Every file's header is
read once (study, series and instance UIDs, not pixel data): the manifest drives the batches
and, after archiving, the verification. One ingest is one study (one XNAT session): a source
holding several StudyInstanceUIDs is refused with the list of studies.

Batches follow series: a series is never split across batches when ``keep_series_whole`` (so
``overwrite=delete`` in one batch replaces only that batch's scans); otherwise, with fewer
series than batches, files are cut into contiguous, equal chunks.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xnat_prefect.dicom.archives import safe_extract
from xnat_prefect.dicom.collect import collect_dicom_files, read_series_key
from xnat_prefect.errors import InvalidInputError

__all__ = ["Batch", "LocalFile", "SourceManifest", "plan_batches", "read_source"]


@dataclass(frozen=True)
class LocalFile:
    """One DICOM file of the source.

    Attributes:
        path: Where it is (inside the scratch folder for a zip source).
        size: Bytes.
        scan_id: The scan ID XNAT will give its series (Series Number, else Series UID).
        sop_uid: SOP Instance UID.

    Example:
        ```python
        [f.sop_uid for f in manifest.files if f.scan_id == "1"]
        ```
    """

    path: Path
    size: int
    scan_id: str
    sop_uid: str


@dataclass
class SourceManifest:
    """Every DICOM file of one study, read from a folder or a zip.

    Attributes:
        root: Folder holding the files (the scratch folder for a zip).
        study_uid: The study's StudyInstanceUID.
        files: The files, in path order.
        scratch: Folder to delete when done (zip sources), else None.

    Example:
        ```python
        manifest = read_source(Path("study1"))
        print(manifest.study_uid, manifest.total_bytes)
        ```
    """

    root: Path
    study_uid: str
    files: list[LocalFile] = field(default_factory=list)
    scratch: Path | None = None

    @property
    def total_bytes(self) -> int:
        """Bytes of all files."""
        return sum(f.size for f in self.files)

    def by_scan(self) -> dict[str, list[LocalFile]]:
        """Files grouped by scan ID, scans in order of first appearance.

        Returns:
            Scan ID -> files.
        """
        groups: dict[str, list[LocalFile]] = {}
        for item in self.files:
            groups.setdefault(item.scan_id, []).append(item)
        return groups

    def cleanup(self) -> None:
        """Delete the scratch folder of a zip source (no-op for folders)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclass(frozen=True)
class Batch:
    """One batch: the unit of one upload task.

    Attributes:
        number: 1-based batch number.
        files: Files to send.
        scan_ids: Scans (series) the batch carries.
        size: Bytes of the files.

    Example:
        ```python
        [b.number for b in plan_batches(manifest, 4, keep_series_whole=True)]
        ```
    """

    number: int
    files: tuple[Path, ...]
    scan_ids: tuple[str, ...]
    size: int


def read_source(source: Path, *, scratch_parent: Path | None = None) -> SourceManifest:
    """Collect the DICOM files of a folder or zip and read their headers.

    Args:
        source: A folder of DICOM files, or a zip of them.
        scratch_parent: Where to extract a zip (default: the system temp folder).

    Returns:
        The manifest; call :meth:`SourceManifest.cleanup` when done.

    Raises:
        InvalidInputError: The source is missing, empty, not DICOM, unsafe (zip-slip), or holds
            more than one study.

    Example:
        ```python
        manifest = read_source(Path("/data/incoming/study1"))
        print(manifest.study_uid, len(manifest.files))
        ```
    """
    path = Path(source).expanduser().resolve()
    scratch: Path | None = None
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InvalidInputError(
                f"source {path} is a file but not a zip; pass a folder of DICOM files or a zip"
            )
        scratch = Path(tempfile.mkdtemp(prefix="xnat-ingest-", dir=scratch_parent))
        try:
            safe_extract(path, scratch / "files")
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        root = scratch / "files"
    elif path.is_dir():
        root = path
    else:
        raise InvalidInputError(f"source {path} does not exist; pass a DICOM folder or zip")
    try:
        return _manifest(root, scratch, shown=path)
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise


def _manifest(root: Path, scratch: Path | None, *, shown: Path) -> SourceManifest:
    paths = collect_dicom_files(root)
    if not paths:
        raise InvalidInputError(f"no DICOM files found in {shown}; check the source")
    files: list[LocalFile] = []
    studies: dict[str, int] = {}
    for path in paths:
        key = read_series_key(path)
        if not key.study_instance_uid:
            raise InvalidInputError(
                f"{path} has no StudyInstanceUID (0020,000D); XNAT cannot file it in a session"
            )
        studies[key.study_instance_uid] = studies.get(key.study_instance_uid, 0) + 1
        scan_id = key.series_number or key.series_instance_uid or "NA"
        files.append(LocalFile(path, path.stat().st_size, scan_id, key.sop_instance_uid))
    if len(studies) > 1:
        listed = ", ".join(f"{uid} ({n} files)" for uid, n in studies.items())
        raise InvalidInputError(
            f"{shown} holds {len(studies)} studies ({listed}); one ingest is one XNAT session: "
            "put each study in its own folder and ingest them separately"
        )
    return SourceManifest(root=root, study_uid=next(iter(studies)), files=files, scratch=scratch)


def plan_batches(manifest: SourceManifest, count: int, *, keep_series_whole: bool) -> list[Batch]:
    """Split the files into at most ``count`` batches of similar size.

    Whole series are packed greedily (largest first into the lightest batch). When there are
    fewer series than ``count`` and series may be split, files (in series order) are cut into
    ``count`` contiguous chunks instead.

    Args:
        manifest: The source.
        count: Batches wanted (≥ 1).
        keep_series_whole: Never split a series across batches.

    Returns:
        Non-empty batches, numbered from 1.

    Raises:
        InvalidInputError: ``count`` < 1.

    Example:
        ```python
        batches = plan_batches(manifest, 4, keep_series_whole=True)
        ```
    """
    if isinstance(count, bool) or count < 1:
        raise InvalidInputError(f"batches must be an integer >= 1 (got {count!r})")
    groups = manifest.by_scan()
    if keep_series_whole or len(groups) >= count:
        return _pack_series(groups, count)
    ordered = [f for files in groups.values() for f in files]
    size = -(-len(ordered) // count)
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    return [_batch(n, chunk) for n, chunk in enumerate(chunks, start=1)]


def _pack_series(groups: dict[str, list[LocalFile]], count: int) -> list[Batch]:
    bins: list[list[LocalFile]] = [[] for _ in range(min(count, len(groups)))]
    for files in sorted(groups.values(), key=len, reverse=True):
        lightest = min(range(len(bins)), key=lambda i: len(bins[i]))
        bins[lightest].extend(files)
    return [_batch(n, files) for n, files in enumerate(bins, start=1) if files]


def _batch(number: int, files: Sequence[LocalFile]) -> Batch:
    scan_ids = tuple(dict.fromkeys(f.scan_id for f in files))
    return Batch(
        number=number,
        files=tuple(f.path for f in files),
        scan_ids=scan_ids,
        size=sum(f.size for f in files),
    )
