"""The emulator's live state: store, users, HTTP sessions, permissions, timing, background work."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from xnat_prefect.testing.config import (
    SITE_CONFIG_DEFAULTS,
    EmulatorConfig,
    User,
)
from xnat_prefect.testing.faults import FaultRegistry
from xnat_prefect.testing.metrics import Metrics
from xnat_prefect.testing.sessions import (
    FailedLogins,
    SessionRegistry,
    interval_seconds,
)
from xnat_prefect.testing.store import Store, now_text

ROLE_RANK = {"collaborator": 1, "member": 2, "owner": 3}


def _same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of two secrets as UTF-8 bytes (any Unicode text works)."""
    return secrets.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


Tick = Callable[["EmulatorState"], bool]


class EmulatorState:
    """Everything the route handlers share.

    Args:
        config: Static settings.
        schemas: Extra table definitions from route modules.
        ticks: Background work functions; each returns True while it has pending work.
    """

    def __init__(self, config: EmulatorConfig, schemas: list[str], ticks: list[Tick]) -> None:
        self.config = config
        self.timing = config.timing
        self.options = config.options
        self.store = Store(config.data_dir, schemas)
        self.faults = FaultRegistry(config.seed)
        self.metrics = Metrics()
        self.url = ""
        self.dicom_port = 0
        self.extras: dict[str, Any] = {}
        self.sessions = SessionRegistry()
        self.failed_logins = FailedLogins(self.store)
        self._ticks = ticks
        self._tick_lock = threading.Lock()
        self._pending = False
        self._ensure_admin()

    # ----------------------------------------------------------------- users and sessions

    def _ensure_admin(self) -> None:
        if self.store.one("SELECT 1 FROM users WHERE login=?", (self.config.admin_user,)) is None:
            self.add_user(
                self.config.admin_user,
                self.config.admin_password,
                is_admin=True,
                firstname="Admin",
                lastname="User",
            )

    def add_user(
        self,
        login: str,
        password: str,
        *,
        is_admin: bool = False,
        firstname: str = "",
        lastname: str = "",
        email: str = "",
    ) -> User:
        """Create (or replace the password of) a site user.

        Args:
            login: Username.
            password: Password.
            is_admin: Site administrator.
            firstname: First name.
            lastname: Last name.
            email: E-mail (defaults to ``login@localhost``).

        Returns:
            The user.
        """
        self.store.execute(
            "INSERT INTO users(login, password, firstname, lastname, email, is_admin, created) "
            "VALUES(?,?,?,?,?,?,?) ON CONFLICT(login) DO UPDATE SET password=excluded.password, "
            "is_admin=excluded.is_admin",
            (
                login,
                password,
                firstname,
                lastname,
                email or f"{login}@localhost",
                int(is_admin),
                now_text(),
            ),
        )
        user = self.get_user(login)
        assert user is not None
        return user

    def get_user(self, login: str) -> User | None:
        """Look up an enabled user.

        Args:
            login: Username.

        Returns:
            The user or None.
        """
        row = self.store.one("SELECT * FROM users WHERE login=? AND enabled=1", (login,))
        if row is None:
            return None
        return User(
            login=row["login"],
            xdat_user_id=int(row["xdat_user_id"]),
            is_admin=bool(row["is_admin"]),
            firstname=row["firstname"],
            lastname=row["lastname"],
            email=row["email"],
        )

    def check_password(self, login: str, password: str) -> User | None:
        """Validate credentials: a login and password, or an alias token and its secret.

        Enforces ``maxFailedLogins`` (site preference, default 20; 0 = off): each wrong
        password of a known login counts; at the limit the account is locked (even the right
        password is refused) until ``maxFailedLoginsLockoutDuration`` (default ``1 hour``)
        passes or an administrator re-enables the user (:meth:`clear_failed_logins`). A
        successful login clears the count.

        Args:
            login: Username or token alias.
            password: Password or token secret.

        Returns:
            The user, or None when the credentials are wrong or the account is locked.
        """
        login = login.split("/", 1)[-1]  # "provider/user" picks an auth provider in XNAT
        row = self.store.one("SELECT password FROM users WHERE login=? AND enabled=1", (login,))
        if row is not None:
            if self.is_locked(login):
                return None
            if _same_secret(str(row["password"]), password):
                self.clear_failed_logins(login)
                return self.get_user(login)
        token = self.store.one("SELECT * FROM alias_tokens WHERE alias=? AND enabled=1", (login,))
        if token is None or not _same_secret(str(token["secret"]), password):
            if row is not None:
                self._record_failed_login(login)
            return None
        if token["expires"] and token["expires"] < time.time() * 1000:
            return None
        if self.is_locked(str(token["login"])):
            return None
        return self.get_user(token["login"])

    def _int_preference(self, key: str) -> int:
        try:
            return int(self.site_config(key) or 0)
        except (TypeError, ValueError):
            return 0

    def _record_failed_login(self, login: str) -> None:
        self.failed_logins.record(login, self._int_preference("maxFailedLogins"))

    def is_locked(self, login: str) -> bool:
        """Whether too many failed logins locked an account (a passed lockout clears it).

        Args:
            login: Username.

        Returns:
            True while the account is locked.
        """
        duration = interval_seconds(self.site_config("maxFailedLoginsLockoutDuration"), 3600.0)
        return self.failed_logins.locked(login, self._int_preference("maxFailedLogins"), duration)

    def clear_failed_logins(self, login: str) -> None:
        """Forget a user's failed logins (success, lockout expiry, admin re-enable).

        Args:
            login: Username.
        """
        self.failed_logins.clear(login)

    def create_session(self, login: str, *, anonymous: bool = False) -> str:
        """Open a new JSESSION for a user.

        Args:
            login: Username.
            anonymous: A guest session (not a login: protected calls with it get 401).

        Returns:
            The session id (32 upper-case hex characters, as Tomcat prints them).

        Raises:
            SessionLimitError: The user already has ``concurrentMaxSessions`` live sessions
                (site preference, default 1000; 0 or less = unlimited): "max sessions prevents
                login".
        """
        limit = 0 if anonymous else self._int_preference("concurrentMaxSessions")
        session_id = self.sessions.create(login, limit=limit, timeout=self.session_timeout())
        if anonymous:
            return session_id
        self.metrics.count_login()
        self.store.execute("UPDATE users SET last_login=? WHERE login=?", (now_text(), login))
        return session_id

    def sweep_sessions(self, *, force: bool = False) -> int:
        """Drop sessions idle longer than the timeout (at most once a second unless forced).

        Args:
            force: Sweep now.

        Returns:
            How many sessions were dropped.
        """
        return self.sessions.sweep(self.session_timeout(), force=force)

    @property
    def session_count(self) -> int:
        """How many server sessions are held in memory (live or not yet swept)."""
        return len(self.sessions)

    def session_timeout(self) -> float:
        """Idle lifetime of a session in seconds.

        Returns:
            The timing override, else the site config's ``sessionTimeout``.
        """
        if self.timing.session_timeout_seconds is not None:
            return float(self.timing.session_timeout_seconds)
        text = str(self.site_config("sessionTimeout"))
        if len(text.split()) == 1:
            text += " minutes"  # a bare number of the preference means minutes
        return interval_seconds(text, 900.0)

    def session_user(self, session_id: str) -> User | None:
        """Resolve a JSESSIONID, touching it (sliding idle expiry).

        Args:
            session_id: The cookie value.

        Returns:
            Its user, or None when unknown, invalidated or expired.
        """
        login = self.sessions.touch(session_id, self.session_timeout())
        return None if login is None else self.get_user(login)

    def invalidate_session(self, session_id: str) -> None:
        """Log a session out.

        Args:
            session_id: The cookie value.
        """
        self.sessions.drop(session_id)

    def expire_sessions(self, login: str | None = None) -> list[str]:
        """Invalidate every session (or one user's), as an idle timeout would.

        Args:
            login: Only this user's sessions.

        Returns:
            The ids of the sessions killed.
        """
        return self.sessions.expire(login)

    def active_sessions(self, login: str | None = None) -> dict[str, list[str]]:
        """Live (not idle-expired) session ids per user, as ``/xapi/users/active`` lists them.

        Args:
            login: Only this user's.

        Returns:
            ``{login: [session ids]}`` (users without live sessions are absent).
        """
        return self.sessions.active(self.session_timeout(), login)

    # ----------------------------------------------------------------- projects and roles

    def resolve_project(self, project: str) -> str | None:
        """Map a project ID or alias to the project ID.

        Args:
            project: ID or alias.

        Returns:
            The project ID, or None when unknown.
        """
        row = self.store.one("SELECT id FROM projects WHERE id=?", (project,))
        if row is None:
            row = self.store.one(
                "SELECT project AS id FROM project_aliases WHERE alias=?", (project,)
            )
        return None if row is None else str(row["id"])

    def project_role(self, user: User | None, project: str) -> str | None:
        """The user's role in a project.

        Args:
            user: The user (None: guest).
            project: Project ID.

        Returns:
            ``owner``, ``member``, ``collaborator`` or None.
        """
        if user is None:
            return None
        row = self.store.one(
            "SELECT role FROM project_members WHERE project=? AND login=?", (project, user.login)
        )
        return None if row is None else str(row["role"])

    def _rank(self, user: User | None, project: str) -> int:
        if user is not None and user.is_admin:
            return ROLE_RANK["owner"]
        return ROLE_RANK.get(self.project_role(user, project) or "", 0)

    def accessibility(self, project: str) -> str:
        """A project's accessibility (``private``/``protected``/``public``).

        Args:
            project: Project ID.

        Returns:
            The level (``private`` when unknown).
        """
        row = self.store.one("SELECT accessibility FROM projects WHERE id=?", (project,))
        return "private" if row is None else str(row["accessibility"])

    def can_see_project(self, user: User | None, project: str) -> bool:
        """Whether the project is visible at all (private projects are 404 to outsiders).

        Args:
            user: The user.
            project: Project ID.

        Returns:
            True for members, admins and non-private projects.
        """
        return self._rank(user, project) > 0 or self.accessibility(project) != "private"

    def can_read(self, user: User | None, project: str) -> bool:
        """Whether the project's data is readable.

        Args:
            user: The user.
            project: Project ID.

        Returns:
            True for members, admins and public projects.
        """
        return self._rank(user, project) > 0 or self.accessibility(project) == "public"

    def can_edit(self, user: User | None, project: str) -> bool:
        """Whether the user may create and edit data in the project (owners and members).

        Args:
            user: The user.
            project: Project ID.

        Returns:
            The permission.
        """
        return self._rank(user, project) >= ROLE_RANK["member"]

    def can_delete(self, user: User | None, project: str) -> bool:
        """Whether the user may delete data in the project (owners only).

        Args:
            user: The user.
            project: Project ID.

        Returns:
            The permission.
        """
        return self._rank(user, project) >= ROLE_RANK["owner"]

    # ----------------------------------------------------------------- site config

    def site_config(self, key: str) -> Any:
        """Read one site preference.

        Args:
            key: Preference name.

        Returns:
            The stored value, else the default (None when unknown).
        """
        row = self.store.one("SELECT value FROM site_config WHERE key=?", (key,))
        if row is not None:
            return json.loads(row["value"])
        if key == "siteId":
            return self.config.site_id
        if key == "siteUrl":
            return self.url
        return SITE_CONFIG_DEFAULTS.get(key)

    def all_site_config(self) -> dict[str, Any]:
        """Every site preference with its current value.

        Returns:
            The map.
        """
        values = dict(SITE_CONFIG_DEFAULTS)
        values["siteId"] = self.config.site_id
        values["siteUrl"] = self.url
        for row in self.store.query("SELECT key, value FROM site_config"):
            values[row["key"]] = json.loads(row["value"])
        return values

    def set_site_config(self, key: str, value: Any) -> None:
        """Store one site preference.

        Args:
            key: Preference name.
            value: JSON-serializable value.
        """
        self.store.execute(
            "INSERT INTO site_config(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    # ----------------------------------------------------------------- background work

    def run_ticks(self) -> bool:
        """Run every background work function once (the sweeper calls this).

        Returns:
            True while any of them still has pending work.
        """
        with self._tick_lock:
            pending = False
            for tick in self._ticks:
                pending = tick(self) or pending
            self._pending = pending
            return pending

    @property
    def has_pending_work(self) -> bool:
        """Whether the last sweep reported pending asynchronous work."""
        return self._pending

    def accession_id(self, kind: str) -> str:
        """Allocate the next accession ID (``XNAT_S00001``, ``XNAT_E00001``).

        Args:
            kind: ``S`` for subjects, ``E`` for experiments.

        Returns:
            The new ID.
        """
        number = self.store.next_value(f"accession_{kind}")
        return f"{self.config.site_id}_{kind}{number:05d}"

    def close(self) -> None:
        """Release the store."""
        self.store.close()
