"""The transfer ledger: a small on-disk record of what each transfer already achieved.

One SQLite file holds one row per (scope, item): the local file, its size, mtime and MD5, the
MD5 the server reported, the server-side URI and a state (``partial``, ``confirmed``,
``failed``). Uploads and downloads consult it before sending a byte:

* an upload whose file is unchanged (same size and mtime as when XNAT accepted it) is skipped,
  so re-running an ingest that already succeeded sends nothing;
* a download whose local file is unchanged and whose server MD5 is still the same is skipped;
  a ``partial`` row remembers which server version a ``.part`` file belongs to, so a resume
  never appends bytes of a different version.

The *scope* names the destination (server, project, session, transport family); the *item* is
the file's key inside it (the absolute local path for uploads, the path relative to the output
folder for downloads). Writes are single SQLite transactions (WAL journal), so concurrent
threads and processes never see a half-written record and a crash never corrupts it. An
unreadable ledger file is moved aside and a fresh one started: the ledger only saves work, it
is never the source of truth (uploads also check the destination still exists).

Example:
    ```python
    with TransferLedger.in_directory(Path("out")) as ledger:
        entry = ledger.get("download:https://xnat|XNAT_E00001", "MR1/scans/1-T1w/a.dcm")
        if entry is not None and entry.state == "confirmed" and entry.matches_file(path):
            ...
    ```
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from xnat_prefect._redact import get_logger
from xnat_prefect.errors import InvalidInputError

__all__ = [
    "ENV_LEDGER_DIR",
    "LEDGER_FILE_NAME",
    "LedgerEntry",
    "LedgerRecord",
    "LedgerState",
    "TransferLedger",
    "default_ledger_dir",
    "file_stamp",
]

logger = get_logger(__name__)

LedgerState = Literal["partial", "confirmed", "failed"]
LEDGER_FILE_NAME = ".xnat-transfers.sqlite"
"""File name of a ledger kept inside a download folder (hidden: uploads skip dot files)."""
ENV_LEDGER_DIR = "XNAT_PREFECT_LEDGER_DIR"
"""Environment variable naming the folder of the default (upload) ledger."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    scope TEXT NOT NULL,
    item TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    local_md5 TEXT,
    server_md5 TEXT,
    state TEXT NOT NULL,
    remote TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (scope, item)
)
"""
_COLUMNS = "scope, item, path, size, mtime_ns, local_md5, server_md5, state, remote, updated"


def file_stamp(path: Path) -> tuple[int, int]:
    """Size and modification time (ns) of a file: what says "unchanged since recorded".

    Args:
        path: The file.

    Returns:
        ``(size, mtime_ns)``.

    Raises:
        OSError: The file cannot be read.
    """
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def default_ledger_dir() -> Path:
    """Folder of the default ledger.

    ``$XNAT_PREFECT_LEDGER_DIR``, else ``$XDG_CACHE_HOME/xnat-prefect``, else
    ``~/.cache/xnat-prefect``.

    Returns:
        The folder (not created here).
    """
    explicit = os.environ.get(ENV_LEDGER_DIR)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "xnat-prefect"


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded file.

    Attributes:
        scope: Destination (server + target + transport family).
        item: Key of the file inside the scope.
        path: Local file path.
        size: Local size in bytes when recorded.
        mtime_ns: Local modification time when recorded.
        local_md5: MD5 of the local bytes (None when not computed).
        server_md5: MD5 XNAT reported (catalog ``digest``), when known.
        state: ``partial``, ``confirmed`` or ``failed``.
        remote: Server-side URI (file URI, or the session URI the import returned).
        updated: Epoch seconds of the last change.
    """

    scope: str
    item: str
    path: str
    size: int
    mtime_ns: int
    local_md5: str | None
    server_md5: str | None
    state: str
    remote: str | None
    updated: float

    def matches_file(self, path: Path | None = None) -> bool:
        """Whether the local file still has the recorded size and mtime.

        Args:
            path: The file (default: the recorded path).

        Returns:
            False when it is missing or changed.
        """
        try:
            return file_stamp(path or Path(self.path)) == (self.size, self.mtime_ns)
        except OSError:
            return False


@dataclass(frozen=True)
class LedgerRecord:
    """One row to write with :meth:`TransferLedger.record_many`.

    Attributes:
        item: Key inside the scope.
        path: Local file (its size and mtime are read when the row is written, unless given).
        state: New state.
        local_md5: MD5 of the local bytes.
        server_md5: MD5 the server reported.
        remote: Server-side URI.
        size: Size to record instead of the file's current one.
        mtime_ns: Mtime to record instead of the file's current one.
    """

    item: str
    path: Path
    state: LedgerState
    local_md5: str | None = None
    server_md5: str | None = None
    remote: str | None = None
    size: int | None = None
    mtime_ns: int | None = None


class TransferLedger:
    """A thread-safe SQLite ledger of transfers (see the module docstring).

    Args:
        path: The ledger file (its folder is created when missing).
        timeout: Seconds to wait for another process holding the write lock.

    Raises:
        InvalidInputError: The folder cannot be created or the file cannot be opened.

    Example:
        ```python
        ledger = TransferLedger(Path("/tmp/ledger.sqlite"))
        ledger.record("scope", "a.dcm", path=Path("a.dcm"), state="confirmed")
        ledger.close()
        ```
    """

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._timeout = timeout
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise InvalidInputError(
                f"cannot open the transfer ledger {self._path}: {exc}; pass a writable folder "
                f"(or set {ENV_LEDGER_DIR}), or disable the ledger with ledger=False"
            ) from exc

    @classmethod
    def in_directory(cls, directory: Path) -> TransferLedger:
        """The ledger kept inside a folder (``<folder>/.xnat-transfers.sqlite``).

        Args:
            directory: The folder (a download's output folder).

        Returns:
            The open ledger.
        """
        return cls(Path(directory) / LEDGER_FILE_NAME)

    @classmethod
    def default(cls) -> TransferLedger:
        """The per-user ledger in :func:`default_ledger_dir` (used for uploads).

        Returns:
            The open ledger.
        """
        return cls(default_ledger_dir() / "transfers.sqlite")

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not self._path.exists():
                raise
            aside = self._path.with_name(f"{self._path.name}.corrupt-{int(time.time())}")
            logger.warning(
                "Transfer ledger %s is unreadable (%s); moved to %s", self._path, exc, aside
            )
            os.replace(self._path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self._path}{suffix}").unlink(missing_ok=True)
            return self._connect()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- reads ----------------------------------------------------------------------------------

    def get(self, scope: str, item: str) -> LedgerEntry | None:
        """The entry of one item.

        Args:
            scope: Destination scope.
            item: Item key.

        Returns:
            The entry, or None.
        """
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM transfers WHERE scope=? AND item=?", (scope, item)
            ).fetchone()
        return None if row is None else LedgerEntry(*row)

    def entries(self, scope: str, *, state: LedgerState | None = None) -> dict[str, LedgerEntry]:
        """Every entry of a scope.

        Args:
            scope: Destination scope.
            state: Only entries in this state.

        Returns:
            Item key to entry.
        """
        sql = f"SELECT {_COLUMNS} FROM transfers WHERE scope=?"
        args: tuple[str, ...] = (scope,)
        if state is not None:
            sql += " AND state=?"
            args = (scope, state)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return {row[1]: LedgerEntry(*row) for row in rows}

    def confirmed_unchanged(self, scope: str, item: str, *, path: Path) -> LedgerEntry | None:
        """The entry of an item if it is confirmed and the local file is unchanged.

        Args:
            scope: Destination scope.
            item: Item key.
            path: The local file now.

        Returns:
            The entry, or None.
        """
        entry = self.get(scope, item)
        if entry is None or entry.state != "confirmed" or not entry.matches_file(path):
            return None
        return entry

    # --- writes ---------------------------------------------------------------------------------

    def record(
        self,
        scope: str,
        item: str,
        *,
        path: Path,
        state: LedgerState,
        local_md5: str | None = None,
        server_md5: str | None = None,
        remote: str | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> None:
        """Insert or replace one entry (one transaction).

        Args:
            scope: Destination scope.
            item: Item key.
            path: Local file (size and mtime are read now unless given).
            state: New state.
            local_md5: MD5 of the local bytes.
            server_md5: MD5 the server reported.
            remote: Server-side URI.
            size: Size to record.
            mtime_ns: Mtime to record.
        """
        record = LedgerRecord(item, path, state, local_md5, server_md5, remote, size, mtime_ns)
        self.record_many(scope, [record])

    def record_many(self, scope: str, records: Iterable[LedgerRecord]) -> int:
        """Insert or replace several entries in one transaction.

        A record whose file vanished is written with size -1 (it can never match again).

        Args:
            scope: Destination scope.
            records: The rows.

        Returns:
            Rows written.
        """
        now = time.time()
        rows = []
        for rec in records:
            size, mtime = rec.size, rec.mtime_ns
            if size is None or mtime is None:
                try:
                    current = file_stamp(rec.path)
                except OSError:
                    current = (-1, -1)
                size = current[0] if size is None else size
                mtime = current[1] if mtime is None else mtime
            rows.append(
                (
                    scope,
                    rec.item,
                    str(rec.path),
                    size,
                    mtime,
                    rec.local_md5,
                    rec.server_md5,
                    rec.state,
                    rec.remote,
                    now,
                )
            )
        if not rows:
            return 0
        with self._write() as conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO transfers ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows
            )
        return len(rows)

    def forget(self, scope: str, items: Iterable[str] | None = None) -> int:
        """Delete entries (all of a scope when ``items`` is None).

        Args:
            scope: Destination scope.
            items: Item keys.

        Returns:
            Rows deleted.
        """
        with self._write() as conn:
            if items is None:
                return conn.execute("DELETE FROM transfers WHERE scope=?", (scope,)).rowcount
            keys = [(scope, item) for item in items]
            before = conn.total_changes
            conn.executemany("DELETE FROM transfers WHERE scope=? AND item=?", keys)
            return conn.total_changes - before

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TransferLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TransferLedger({str(self._path)!r})"
