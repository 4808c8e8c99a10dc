"""C-STORE uploads: echo, parallel associations, a final sequential pass, logs and a ledger.

The DICOM work itself is :mod:`xnat_prefect.dicom.store_scu`; this module adds what the
service promises: a C-ECHO first (a typed error naming the fix when it fails), one association
per worker, a sequential retry pass for files that failed for reasons a resend can fix, one log
file per association in the workspace, and ledger records so a re-run sends only what the SCP
has not accepted yet.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.dicom.batching import split_into_n_batches
from xnat_prefect.dicom.collect import collect_dicom_files
from xnat_prefect.dicom.store_scu import (
    DicomNetworkError,
    StoreResult,
    echo,
    send_files,
    send_parallel,
)
from xnat_prefect.errors import InvalidInputError
from xnat_prefect.models.transfer import DICOMStoreSummary
from xnat_prefect.services.ledger import LedgerRecord, TransferLedger

__all__ = [
    "DicomStoreError",
    "check_echo",
    "send_with_store",
    "store_directory",
    "store_scope",
]

logger = get_logger(__name__)

_PERMANENT_PREFIXES = ("not a readable DICOM", "DICOM file meta lacks", "unreadable")


class DicomStoreError(DicomNetworkError, RuntimeError):
    """A C-STORE upload could not start: the C-ECHO failed, or there is nothing to send.

    Also a :class:`RuntimeError` (the seed's contract) and an :class:`XNATError`.

    Args:
        message: What failed and how to fix it.
        host: SCP host.
        port: SCP port.
        called_aet: The AE title called.
        transient: Whether retrying later may help.
    """

    def _pickle_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = {
            "host": self.host,
            "port": self.port,
            "called_aet": self.called_aet,
            "transient": self.transient,
        }
        return (self.message,), kwargs


def store_scope(host: str, port: int, called_aet: str) -> str:
    """Ledger scope of files C-STOREd to one SCP.

    Args:
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.

    Returns:
        The scope.
    """
    return f"dicom-store|{host}:{port}|{called_aet}"


def check_echo(host: str, port: int, *, called_aet: str, calling_aet: str) -> None:
    """C-ECHO the SCP, raising :class:`DicomStoreError` when it does not answer.

    Args:
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        calling_aet: Our AE title.

    Raises:
        DicomStoreError: The echo failed (the message names the fix).
    """
    try:
        echo(host, port, called_aet, calling_aet=calling_aet)
    except DicomNetworkError as exc:
        raise DicomStoreError(
            f"C-ECHO failed, nothing was sent: {exc.message}",
            host=host,
            port=port,
            called_aet=called_aet,
            transient=exc.transient,
        ) from exc


def _write_log(path: Path, results: Sequence[StoreResult]) -> None:
    with path.open("w", encoding="utf-8") as log:
        for result in results:
            status = "NOT_SENT" if result.status < 0 else f"0x{result.status:04X}"
            line = f"{status}\t{'ok' if result.ok else 'FAILED'}\t{result.path}"
            if result.error:
                line += f"\t{result.error}"
            log.write(line + "\n")


def send_with_store(
    files: Sequence[Path],
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    workers: int,
    cleanup: bool,
    ledger: TransferLedger | None,
    total_files: int,
) -> DICOMStoreSummary:
    """Send files over parallel associations, then retry failures once on one association.

    Args:
        files: Files to send (already filtered by the ledger).
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        calling_aet: Our AE title.
        workers: Concurrent associations.
        cleanup: Remove the workspace when every file was sent (a failed run keeps its logs).
        ledger: Ledger to record accepted files in.
        total_files: Files considered (including ledger-skipped ones).

    Returns:
        The summary (``sent`` counts files accepted in this run).
    """
    workspace = Path(tempfile.mkdtemp(prefix="xnat-cstore-"))
    log_dir = workspace / "logs"
    log_dir.mkdir()
    scope = store_scope(host, port, called_aet)
    final: dict[Path, StoreResult] = {}
    batches = split_into_n_batches(files, max(1, workers)) if files else []
    try:
        results = send_parallel(
            batches, host, port, called_aet, calling_aet=calling_aet, workers=workers
        )
    except DicomNetworkError as exc:
        logger.warning("Every C-STORE association failed: %s", exc.message)
        results = [StoreResult(p, None, -1, False, exc.message) for p in files]
    offset = 0
    for number, batch in enumerate(batches, start=1):
        chunk = results[offset : offset + len(batch)]
        offset += len(batch)
        _write_log(log_dir / f"association-{number:03d}.log", chunk)
    for result in results:
        final[result.path] = result
    retry = [
        r.path for r in results if not r.ok and not (r.error or "").startswith(_PERMANENT_PREFIXES)
    ]
    if retry:
        logger.info("C-STORE final pass: resending %d file(s) on one association", len(retry))
        try:
            again = send_files(retry, host, port, called_aet, calling_aet=calling_aet)
        except DicomNetworkError as exc:
            again = [StoreResult(p, None, -1, False, exc.message) for p in retry]
        _write_log(log_dir / "final-pass.log", again)
        for result in again:
            final[result.path] = result
    sent = [p for p, r in final.items() if r.ok]
    failures = [(str(p), r.error or "failed") for p, r in final.items() if not r.ok]
    if ledger is not None and sent:
        ledger.record_many(scope, [LedgerRecord(str(p), p, "confirmed") for p in sent])
    summary = DICOMStoreSummary(
        total_files=total_files,
        sent=len(sent),
        failed=len(failures),
        log_dir=log_dir,
        workspace=workspace,
        failures=failures,
    )
    if cleanup and summary.success:
        shutil.rmtree(workspace, ignore_errors=True)
    elif failures:
        logger.warning("%d file(s) were not stored; logs kept in %s", len(failures), log_dir)
    return summary


def store_directory(
    root: Path,
    *,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    workers: int,
    cleanup: bool,
    ledger: TransferLedger | None,
) -> DICOMStoreSummary:
    """Echo, collect the DICOM files under ``root``, drop those already stored, send the rest.

    Args:
        root: DICOM folder.
        host: SCP host.
        port: SCP port.
        called_aet: SCP AE title.
        calling_aet: Our AE title.
        workers: Concurrent associations.
        cleanup: Remove the workspace when everything was sent.
        ledger: Ledger, or None.

    Returns:
        The summary.

    Raises:
        InvalidInputError: ``root`` is not a directory.
        DicomStoreError: The echo failed, or there are no DICOM files.
    """
    if not root.is_dir():
        raise InvalidInputError(f"dicom_root {root} is not a directory; pass a DICOM folder")
    check_echo(host, port, called_aet=called_aet, calling_aet=calling_aet)
    files = collect_dicom_files(root)
    if not files:
        raise DicomStoreError(
            f"no DICOM files found under {root}; check the folder",
            host=host,
            port=port,
            called_aet=called_aet,
            transient=False,
        )
    to_send = files
    if ledger is not None:
        scope = store_scope(host, port, called_aet)
        to_send = [p for p in files if ledger.confirmed_unchanged(scope, str(p), path=p) is None]
    return send_with_store(
        to_send,
        host=host,
        port=port,
        called_aet=called_aet,
        calling_aet=calling_aet,
        workers=workers,
        cleanup=cleanup,
        ledger=ledger,
        total_files=len(files),
    )
