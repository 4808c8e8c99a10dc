"""The seed's upload utility functions, and small checks shared by the upload modules.

:mod:`xnat_prefect.services.uploads` re-exports the public ones under the seed's names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from xnat_prefect._redact import get_logger
from xnat_prefect.dicom import batching as _batching
from xnat_prefect.dicom import collect as _collect
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.services.base import check_new_label, check_ref

__all__ = [
    "archive_destination_params",
    "check_target",
    "check_workers",
    "collect_dicom_files",
    "scan_source",
    "split_into_batches",
    "split_into_n_batches",
]

logger = get_logger(__name__)


def collect_dicom_files(root: Path, *, include_extensionless: bool = True) -> list[Path]:
    """Recursively collect DICOM-like files under a root directory.

    Known DICOM extensions (``.dcm``, ``.dicom``, ``.dic``, ``.ima``), plus extensionless or
    UID-named files that carry the ``DICM`` preamble; hidden files and ``DICOMDIR`` are skipped.

    Args:
        root: Root directory to search.
        include_extensionless: If True, include files without extensions (common for raw DICOM
            from scanners).

    Returns:
        Sorted list of file paths.

    Raises:
        InvalidInputError: (a ``ValueError``) If root is not a directory.

    Example:
        ```python
        files = collect_dicom_files(Path("/data/incoming/study1"))
        ```
    """
    return _collect.collect_dicom_files(root, include_extensionless=include_extensionless)


def archive_destination_params(project: str, direct_archive: bool) -> dict[str, str]:
    """Return the querystring keys that route a ``POST /data/services/import``.

    * Direct-archive path: ``Direct-Archive=true`` — handled by the DICOM-zip and gradual-DICOM
      import handlers (XNAT ≥ 1.8.3); bypasses the prearchive and writes straight to the project
      archive (after XNAT's quiet interval).
    * Prearchive path: ``dest=/prearchive/projects/{project}`` — the documented destination form.

    Caveat: neither form can prevent a project-configured auto-archive. The project's
    ``prearchive_code`` (0 = leave in prearchive, 4/5 = auto-archive; fresh projects are 4) is the
    authoritative switch: on an auto-archive project a session sent to the prearchive is archived
    by the server shortly after. To keep sessions in the prearchive, set the project's code to 0
    (``PUT /data/projects/{P}/prearchive_code/0``); there is no per-upload override.

    Args:
        project: Project ID.
        direct_archive: Direct-archive (True) or prearchive (False).

    Returns:
        The parameters to add to the import request.

    Example:
        ```python
        archive_destination_params("P1", False)  # {'dest': '/prearchive/projects/P1'}
        ```
    """
    check_ref(project, "project")
    if direct_archive:
        return {"Direct-Archive": "true"}
    return {"dest": f"/prearchive/projects/{project}"}


def split_into_batches(files: Sequence[Path], batch_size: int) -> list[list[Path]]:
    """Split files into batches of specified size.

    Args:
        files: Sequence of file paths to split.
        batch_size: Maximum files per batch.

    Returns:
        List of batches, each batch being a list of paths.

    Example:
        ```python
        [len(b) for b in split_into_batches(files_250, 100)]  # [100, 100, 50]
        ```
    """
    return _batching.split_into_batches(files, batch_size)


def split_into_n_batches(files: Sequence[Path], num_batches: int) -> list[list[Path]]:
    """Split files into N roughly equal batches using round-robin.

    Args:
        files: Sequence of file paths to split.
        num_batches: Number of batches to create.

    Returns:
        List of batches, each batch being a list of paths.

    Example:
        ```python
        [len(b) for b in split_into_n_batches(files_10, 3)]  # [4, 3, 3]
        ```
    """
    return _batching.split_into_n_batches(files, num_batches)


def scan_source(root: Path) -> tuple[list[Path], int]:
    """DICOM files under ``root`` and how many other (non-hidden) files were skipped.

    Args:
        root: The folder.

    Returns:
        ``(dicom files, number of other files)``.
    """
    files = collect_dicom_files(root)
    chosen = set(files)
    others = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        others += sum(1 for n in names if not n.startswith(".") and Path(folder, n) not in chosen)
    if others:
        logger.info("Skipping %d file(s) under %s that are not DICOM", others, root)
    return files, others


def check_target(project: str, subject: str, session: str) -> None:
    """Check the ids of an upload destination.

    The subject and session labels are the ones XNAT creates (or merges into), so they must be
    valid new labels: letters, digits, ``_`` and ``-``, at most 255 of them. Checked before
    any byte is sent, so a bad label never leaves files behind in the prearchive.

    Args:
        project: Project ID.
        subject: Subject label.
        session: Session label.

    Raises:
        InvalidInputError: A bad id or label; the message names it and the fix.
    """
    check_ref(project, "project")
    check_new_label(subject, "subject")
    check_new_label(session, "session")


def check_workers(value: int, name: str) -> int:
    """Check a positive count (workers, batch size).

    Args:
        value: The count.
        name: Parameter name.

    Returns:
        The count.

    Raises:
        InvalidInputError: Not an integer >= 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1 (got {value!r})")
    return value
