"""HTTP sessions and failed-login lockouts of the emulator (what Tomcat and Spring Security keep).

* :class:`SessionRegistry` — in-memory JSESSIONs with sliding idle expiry, an index per user
  for ``concurrentMaxSessions`` ("max sessions prevents login": one more login than the limit
  is refused with :class:`SessionLimitError`) and a sweep that drops idle-expired sessions, as
  Tomcat's background reaper does, so per-request Basic logins do not pile up forever.
* :class:`FailedLogins` — the persisted failed-login count per user (``user_auth`` table):
  ``maxFailedLogins`` consecutive failures lock the account until the lockout duration passes
  or the count is cleared (a successful login, an administrator re-enabling the user).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from xnat_prefect.testing.store import Store

__all__ = [
    "FailedLogins",
    "HttpSession",
    "SessionLimitError",
    "SessionRegistry",
    "interval_seconds",
]


class SessionLimitError(Exception):
    """A login refused because the user already holds ``concurrentMaxSessions`` sessions."""


def interval_seconds(text: Any, default: float) -> float:
    """Read an XNAT interval preference (``15 minutes``, ``1 hour``, ``900``) as seconds.

    Args:
        text: The preference value (a bare number means seconds).
        default: Seconds to use when it cannot be read.

    Returns:
        The interval in seconds.
    """
    parts = str(text).split()
    try:
        amount = float(parts[0])
    except (IndexError, ValueError):
        return default
    unit = parts[1].lower().rstrip("s") if len(parts) > 1 else "second"
    factors = {"second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "day": 86400}
    return amount * factors.get(unit, 60)


@dataclass
class HttpSession:
    """A server-side JSESSION."""

    session_id: str
    login: str
    created: float
    last_access: float


class SessionRegistry:
    """Thread-safe JSESSION table (monotonic clock, sliding idle expiry)."""

    def __init__(self) -> None:
        self._sessions: dict[str, HttpSession] = {}
        self._by_login: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def create(self, login: str, *, limit: int, timeout: float) -> str:
        """Open a session.

        Args:
            login: Its user.
            limit: Most live sessions the user may hold (0 or less: unlimited).
            timeout: Idle lifetime in seconds (older sessions do not count).

        Returns:
            The id (32 upper-case hex characters, as Tomcat prints them).

        Raises:
            SessionLimitError: The user already holds ``limit`` live sessions.
        """
        session_id = secrets.token_hex(16).upper()
        now = time.monotonic()
        with self._lock:
            if limit > 0:
                ids = self._by_login.get(login, set())
                live = sum(1 for s in ids if now - self._sessions[s].last_access <= timeout)
                if live >= limit:
                    raise SessionLimitError(
                        f"Maximum sessions of {limit} for this principal exceeded"
                    )
            self._sessions[session_id] = HttpSession(session_id, login, now, now)
            self._by_login.setdefault(login, set()).add(session_id)
        return session_id

    def touch(self, session_id: str, timeout: float) -> str | None:
        """Resolve a session id and refresh its idle clock.

        Args:
            session_id: The cookie value.
            timeout: Idle lifetime in seconds.

        Returns:
            Its login, or None when unknown or expired (an expired one is dropped).
        """
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_access > timeout:
                self._drop(session_id)
                return None
            session.last_access = now
            return session.login

    def drop(self, session_id: str) -> None:
        """Forget one session (logout).

        Args:
            session_id: The cookie value.
        """
        with self._lock:
            self._drop(session_id)

    def _drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        ids = self._by_login.get(session.login)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self._by_login[session.login]

    def expire(self, login: str | None = None) -> list[str]:
        """Drop every session (or one user's).

        Args:
            login: Only this user's.

        Returns:
            The ids dropped.
        """
        with self._lock:
            doomed = [s for s, v in self._sessions.items() if login is None or v.login == login]
            for session_id in doomed:
                self._drop(session_id)
        return doomed

    def active(self, timeout: float, login: str | None = None) -> dict[str, list[str]]:
        """Live session ids per user.

        Args:
            timeout: Idle lifetime in seconds.
            login: Only this user's.

        Returns:
            ``{login: [ids]}`` (users without live sessions are absent).
        """
        now = time.monotonic()
        found: dict[str, list[str]] = {}
        with self._lock:
            for session_id, session in self._sessions.items():
                if login is not None and session.login != login:
                    continue
                if now - session.last_access <= timeout:
                    found.setdefault(session.login, []).append(session_id)
        return found

    def sweep(self, timeout: float, *, force: bool = False) -> int:
        """Drop idle-expired sessions, at most once a second (or per timeout when shorter).

        Args:
            timeout: Idle lifetime in seconds.
            force: Sweep now whatever the last sweep time.

        Returns:
            How many sessions were dropped.
        """
        now = time.monotonic()
        if not force and now - self._last_sweep < min(1.0, timeout):
            return 0
        with self._lock:
            self._last_sweep = now
            stale = [s for s, v in self._sessions.items() if now - v.last_access > timeout]
            for session_id in stale:
                self._drop(session_id)
        return len(stale)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class FailedLogins:
    """Consecutive failed logins per user, persisted in the ``user_auth`` table.

    Args:
        store: The emulator's store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, login: str, limit: int) -> None:
        """Count one failure; reaching ``limit`` stamps the lockout time.

        Args:
            login: Username.
            limit: ``maxFailedLogins`` (0 or less: not counted).
        """
        if limit <= 0 or login == "guest":
            return
        with self.store.tx():
            self.store.execute(
                "INSERT INTO user_auth(login, failed_logins) VALUES(?, 1) "
                "ON CONFLICT(login) DO UPDATE SET failed_logins = failed_logins + 1",
                (login,),
            )
            self.store.execute(
                "UPDATE user_auth SET lockout_time=? WHERE login=? AND failed_logins=?",
                (time.time(), login, limit),
            )

    def locked(self, login: str, limit: int, duration: float) -> bool:
        """Whether the account is locked (a lockout older than ``duration`` is cleared).

        Args:
            login: Username.
            limit: ``maxFailedLogins`` (0 or less: never locked).
            duration: Lockout length in seconds.

        Returns:
            True while locked.
        """
        row = self.store.one("SELECT * FROM user_auth WHERE login=?", (login,))
        if limit <= 0 or row is None or int(row["failed_logins"]) < limit:
            return False
        if row["lockout_time"] is not None and time.time() - row["lockout_time"] >= duration:
            self.clear(login)
            return False
        return True

    def clear(self, login: str) -> None:
        """Forget a user's failures.

        Args:
            login: Username.
        """
        self.store.execute("DELETE FROM user_auth WHERE login=?", (login,))
