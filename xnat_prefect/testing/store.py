"""SQLite persistence of the emulator: one database file plus file trees under a data dir.

The store is deliberately thin: route modules write their own SQL against the tables declared
here (core archive tables) or in their own ``SCHEMA`` strings. Every access goes through one
connection guarded by a re-entrant lock, so the threaded HTTP handlers, the DICOM receiver and
the background sweeper never interleave half-done transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

CORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    xdat_user_id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT UNIQUE NOT NULL,
    password TEXT NOT NULL,
    firstname TEXT NOT NULL DEFAULT '',
    lastname TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1,
    verified INTEGER NOT NULL DEFAULT 1,
    is_admin INTEGER NOT NULL DEFAULT 0,
    last_login TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS user_auth (
    login TEXT PRIMARY KEY,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    lockout_time REAL
);
CREATE TABLE IF NOT EXISTS alias_tokens (
    alias TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    login TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    single_use INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    secondary_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '',
    pi_firstname TEXT NOT NULL DEFAULT '',
    pi_lastname TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    accessibility TEXT NOT NULL DEFAULT 'private',
    prearchive_code INTEGER NOT NULL DEFAULT 4,
    quarantine_code INTEGER NOT NULL DEFAULT 0,
    current_arc TEXT NOT NULL DEFAULT 'arc001',
    fields TEXT NOT NULL DEFAULT '{}',
    insert_date TEXT NOT NULL DEFAULT '',
    insert_user TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS project_aliases (alias TEXT PRIMARY KEY, project TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deleted_projects (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS project_members (
    project TEXT NOT NULL,
    login TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member', 'collaborator')),
    PRIMARY KEY (project, login)
);
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    label TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}',
    insert_date TEXT NOT NULL DEFAULT '',
    insert_user TEXT NOT NULL DEFAULT '',
    last_modified TEXT NOT NULL DEFAULT '',
    UNIQUE (project, label)
);
CREATE TABLE IF NOT EXISTS subject_shares (
    subject_id TEXT NOT NULL,
    project TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (subject_id, project)
);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    label TEXT NOT NULL,
    xsi_type TEXT NOT NULL,
    date TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    visit_id TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    uid TEXT NOT NULL DEFAULT '',
    scanner TEXT NOT NULL DEFAULT '',
    session_type TEXT NOT NULL DEFAULT '',
    fields TEXT NOT NULL DEFAULT '{}',
    insert_date TEXT NOT NULL DEFAULT '',
    insert_user TEXT NOT NULL DEFAULT '',
    last_modified TEXT NOT NULL DEFAULT '',
    UNIQUE (project, label)
);
CREATE TABLE IF NOT EXISTS experiment_shares (
    experiment_id TEXT NOT NULL,
    project TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (experiment_id, project)
);
CREATE TABLE IF NOT EXISTS scans (
    xnat_imagescandata_id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id TEXT NOT NULL,
    id TEXT NOT NULL,
    xsi_type TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT '',
    quality TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT '',
    uid TEXT NOT NULL DEFAULT '',
    frames TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    fields TEXT NOT NULL DEFAULT '{}',
    insert_date TEXT NOT NULL DEFAULT '',
    last_modified TEXT NOT NULL DEFAULT '',
    UNIQUE (experiment_id, id)
);
CREATE TABLE IF NOT EXISTS resources (
    xnat_abstractresource_id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_type TEXT NOT NULL CHECK (parent_type IN ('project', 'subject', 'experiment', 'scan')),
    parent_id TEXT NOT NULL,
    label TEXT NOT NULL,
    element_name TEXT NOT NULL DEFAULT 'xnat:resourceCatalog',
    format TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    file_count INTEGER,
    file_size INTEGER,
    insert_date TEXT NOT NULL DEFAULT '',
    UNIQUE (parent_type, parent_id, label)
);
CREATE TABLE IF NOT EXISTS files (
    resource_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    uid TEXT NOT NULL DEFAULT '',
    modified TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (resource_id, path)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    xsi_type TEXT NOT NULL,
    item_id TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS site_config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Row = sqlite3.Row


def now_text() -> str:
    """Return the current time the way XNAT prints timestamps (``2024-01-31 14:05:09.123``).

    Returns:
        The local time with millisecond precision.
    """
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Store:
    """A thread-safe SQLite database plus the data dir's file areas.

    Args:
        data_dir: Folder holding ``xnat.db``, ``archive/``, ``prearchive/`` and ``tmp/``.
        schemas: Extra ``CREATE TABLE IF NOT EXISTS`` scripts from route modules.
    """

    def __init__(self, data_dir: Path, schemas: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.archive_dir = data_dir / "archive"
        self.prearchive_dir = data_dir / "prearchive"
        self.tmp_dir = data_dir / "tmp"
        for folder in (self.archive_dir, self.prearchive_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            data_dir / "xnat.db", check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._depth = 0
        with self._lock:
            self._conn.executescript(CORE_SCHEMA)
            for script in schemas:
                if script:
                    self._conn.executescript(script)

    @property
    def lock(self) -> threading.RLock:
        """The lock every database access holds; hold it to make several calls atomic."""
        return self._lock

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one transaction (nested blocks join the outer one).

        Yields:
            The connection, for ``execute`` calls inside the transaction.
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a SELECT and return all rows.

        Args:
            sql: The statement.
            params: Positional parameters.

        Returns:
            The rows (``sqlite3.Row``: index by column name).
        """
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a SELECT and return its first row, or None.

        Args:
            sql: The statement.
            params: Positional parameters.

        Returns:
            The first row or None.
        """
        with self._lock:
            row: Row | None = self._conn.execute(sql, params).fetchone()
            return row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write statement (in its own transaction unless inside ``tx``).

        Args:
            sql: The statement.
            params: Positional parameters.

        Returns:
            ``lastrowid`` of the statement.
        """
        with self.tx() as conn:
            cursor = conn.execute(sql, params)
            return int(cursor.lastrowid or 0)

    def next_value(self, name: str) -> int:
        """Increment and return a named counter (accession numbers, timestamps…).

        Args:
            name: Counter name.

        Returns:
            The new value (1 for a new counter).
        """
        with self.tx() as conn:
            conn.execute(
                "INSERT INTO counters(name, value) VALUES(?, 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (name,),
            )
            row = conn.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
            return int(row[0])

    def record_history(
        self,
        login: str,
        action: str,
        xsi_type: str,
        item_id: str,
        project: str = "",
        details: str = "",
    ) -> None:
        """Append one audit row (XNAT's item change history).

        Args:
            login: Acting user.
            action: What happened (``created``, ``modified``, ``deleted``, ``archived``…).
            xsi_type: Type of the item.
            item_id: Its ID.
            project: Owning project.
            details: Free text.
        """
        self.execute(
            "INSERT INTO history(timestamp, login, action, xsi_type, item_id, project, details) "
            "VALUES(?,?,?,?,?,?,?)",
            (now_text(), login, action, xsi_type, item_id, project, details),
        )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
