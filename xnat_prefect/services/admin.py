"""``AdminService``: catalog refresh, users and groups, audit trail, server info, site config.

XNAT routes used (``xnat-rest.md`` §3.7, §11, §13):

* ``POST /data/services/refresh/catalog?resource=/archive/experiments/{ID}&options=...`` per
  experiment (synchronous, 200 empty; the ``resource`` value must start with ``/archive``).
* Groups: ``PUT|DELETE /xapi/users/{u}/groups/{group}`` (``P1_member``, ``ALL_DATA_ACCESS``...).
* Users: ``GET /data/projects/{P}/users``, ``GET /data/users`` (admins while
  ``restrictUserListAccessToAdmins``), ``GET /xapi/users/{u}`` (+ ``/groups``, ``/roles``).
* Audit: ``GET /data/services/audit/{xsiType}/{id}`` per item (see :mod:`._admin_audit`).
* ``GET /xapi/siteConfig/buildInfo`` (open), ``/xapi/siteConfig/siteId|siteUrl`` (open),
  ``GET /xapi/siteConfig[/values/{key}]``, ``POST /xapi/siteConfig`` (admin, JSON map).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from xnat_prefect._redact import get_logger
from xnat_prefect.client import check_body_for_error
from xnat_prefect.errors import (
    InvalidInputError,
    ResourceNotFoundError,
    UnexpectedResponseError,
    XNATError,
)
from xnat_prefect.models.audit import AuditEntry
from xnat_prefect.models.server import ServerInfo
from xnat_prefect.models.summaries import BatchSummary
from xnat_prefect.models.user import User
from xnat_prefect.services._admin_audit import item_audit, parse_since
from xnat_prefect.services.base import (
    BaseService,
    apply_limit,
    check_choice,
    check_limit,
    check_ref,
    not_found,
    segment,
)

__all__ = ["PROJECT_ROLES", "REFRESH_OPTIONS", "AdminService"]

logger = get_logger(__name__)

REFRESH_OPTIONS = ("checksum", "delete", "append", "populateStats")
PROJECT_ROLES = ("owner", "member", "collaborator")
_ROLE_WORDS = {
    "owner": "owner",
    "owners": "owner",
    "member": "member",
    "members": "member",
    "collaborator": "collaborator",
    "collaborators": "collaborator",
}
ProgressCallback = Callable[[int, int, str], None]


class AdminService(BaseService):
    """Service for XNAT administrative operations.

    Example:
        ```python
        admin = AdminService(client)
        summary = admin.refresh_catalogs("P1", options=["checksum", "populateStats"])
        print(summary.refreshed, summary.errors)
        ```
    """

    # --- catalogs -------------------------------------------------------------------------------

    def refresh_catalogs(
        self,
        project: str,
        experiments: builtins.list[str] | None = None,
        options: builtins.list[str] | None = None,
        limit: int | None = None,
        parallel: bool = True,
        workers: int = 4,
        progress_callback: ProgressCallback | None = None,
    ) -> BatchSummary:
        """Refresh catalog XMLs for project experiments (one request per experiment).

        The refresh is a reconciliation, safe to resend, so transient failures are retried.
        Failures of single experiments are collected, not raised; ``progress_callback`` runs in
        the calling thread after each experiment (an exception it raises propagates).

        Args:
            project: Project ID.
            experiments: Specific experiment IDs (labels of the project work too), or all if None.
            options: Refresh options (checksum, delete, append, populateStats); None lets XNAT
                run all of them.
            limit: Limit number of experiments.
            parallel: Use parallel execution (``ThreadPoolExecutor(max_workers=workers)``).
            workers: Number of parallel workers.
            progress_callback: Callback(current, total, experiment_id).

        Returns:
            :class:`BatchSummary`: ``summary["refreshed"]`` (IDs), ``failed`` (ID → reason),
            ``errors``.

        Raises:
            InvalidInputError: Unknown option, bad ``experiments``, ``limit`` or ``workers``.
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            AdminService(client).refresh_catalogs("P1", experiments=["XNAT_E00001"],
                                                  options=["append", "delete"])
            ```
        """
        opts = _refresh_options(options)
        count = check_limit(limit)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers={workers!r} must be a positive integer")
        try:
            rows = self.list_rows(
                f"{self.project_path(project)}/experiments", {"columns": "ID,label"}
            )
        except ResourceNotFoundError as exc:
            raise not_found(f"project {project!r} was not found (or is not visible)", exc) from exc
        if experiments is None:
            wanted = [r["ID"] for r in rows if r.get("ID")]
        else:
            if isinstance(experiments, str) or not isinstance(experiments, (list, tuple)):
                raise InvalidInputError(
                    f"experiments must be a list of experiment IDs, got {experiments!r}"
                )
            by_label = {r.get("label"): r["ID"] for r in rows if r.get("ID")}
            wanted = [by_label.get(e, e) for e in experiments if check_ref(e, "experiments item")]
        targets = apply_limit(list(dict.fromkeys(wanted)), count)
        summary = BatchSummary(operation="refresh", total=len(targets))
        done: set[str] = set()

        def record(experiment_id: str, error: XNATError | None) -> None:
            if error is None:
                done.add(experiment_id)
            else:
                summary.record_failure(experiment_id, str(error))
            if progress_callback is not None:
                progress_callback(len(done) + len(summary.failed), len(targets), experiment_id)

        if parallel and len(targets) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(targets))) as pool:
                futures: dict[Future[None], str] = {
                    pool.submit(self._refresh_one, eid, opts): eid for eid in targets
                }
                for future in as_completed(futures):
                    error = future.exception()
                    if error is not None and not isinstance(error, XNATError):
                        raise error
                    record(futures[future], error)
        else:
            for experiment_id in targets:
                try:
                    self._refresh_one(experiment_id, opts)
                except XNATError as exc:
                    record(experiment_id, exc)
                else:
                    record(experiment_id, None)
        summary.succeeded = [eid for eid in targets if eid in done]
        return summary

    def _refresh_one(self, experiment_id: str, options: builtins.list[str] | None) -> None:
        params: list[tuple[str, str]] = [("resource", f"/archive/experiments/{experiment_id}")]
        if options:
            params.append(("options", ",".join(options)))
        response = self.client.post("/data/services/refresh/catalog", params=params, retry=True)
        error = check_body_for_error(response.text)
        if error:
            raise UnexpectedResponseError(
                f"catalog refresh of {experiment_id} answered {response.status_code}: {error}"
            )

    # --- groups ---------------------------------------------------------------------------------

    def add_user_to_groups(
        self,
        username: str,
        groups: builtins.list[str],
        projects: builtins.list[str] | None = None,
        role: str = "member",
    ) -> BatchSummary:
        """Add a user to XNAT groups (``PUT /xapi/users/{u}/groups/{group}``).

        A group is a full XNAT group id (``P1_member``, ``ALL_DATA_ACCESS``) used as given, or a
        role name (``owner``, ``member``, ``collaborator``, or ``Owners``...) expanded to
        ``{P}_{role}`` for each of ``projects``. With ``projects`` and no ``groups``, the user
        gets ``role`` in each project. XNAT keeps one role per project: adding ``P1_owner``
        replaces ``P1_member``. Allowed to site admins and the project's owners.

        Args:
            username: XNAT username.
            groups: Group names to add user to.
            projects: Project IDs (expands group names per project).
            role: Role (owner, member, collaborator) when only ``projects`` are given.

        Returns:
            :class:`BatchSummary`: ``summary["added"]`` (group ids), ``failed``, ``errors``.

        Raises:
            InvalidInputError: A role name without ``projects``, bad names or role.

        Example:
            ```python
            AdminService(client).add_user_to_groups("jdoe", ["member"], projects=["P1", "P2"])
            ```
        """
        check_ref(username, "username")
        chosen = check_choice(role, "role", PROJECT_ROLES)
        targets = _expand_groups(groups, projects, chosen)
        return self._change_groups(username, targets, add=True)

    def remove_user_from_groups(
        self,
        username: str,
        groups: builtins.list[str],
        projects: builtins.list[str] | None = None,
    ) -> BatchSummary:
        """Remove a user from XNAT groups (``DELETE /xapi/users/{u}/groups/{group}``).

        Groups are read as in :meth:`add_user_to_groups`; with ``projects`` and no ``groups``
        the user leaves every group of those projects they are in.

        Args:
            username: XNAT username.
            groups: Group names to remove user from.
            projects: Project IDs.

        Returns:
            :class:`BatchSummary`: ``summary["removed"]``, ``failed``, ``errors``.

        Raises:
            InvalidInputError: A role name without ``projects``, or bad names.
            ResourceNotFoundError: Unknown user (when their groups must be read).

        Example:
            ```python
            AdminService(client).remove_user_from_groups("jdoe", ["P1_member"])
            ```
        """
        check_ref(username, "username")
        if projects and not groups:
            current = self.get_user(username).groups
            wanted = {f"{p}_{r}" for p in projects for r in PROJECT_ROLES}
            targets = [g for g in current if g in wanted]
        else:
            targets = _expand_groups(groups, projects, "member")
        return self._change_groups(username, targets, add=False)

    def _change_groups(self, username: str, targets: Sequence[str], *, add: bool) -> BatchSummary:
        summary = BatchSummary(operation="add" if add else "remove", total=len(targets))
        user = segment(username, "username")
        for group in targets:
            path = f"/xapi/users/{user}/groups/{segment(group, 'group')}"
            try:
                if add:
                    self.client.put(path)
                else:
                    self.client.delete(path)
            except XNATError as exc:
                summary.record_failure(group, str(exc))
            else:
                summary.succeeded.append(group)
        return summary

    # --- users ----------------------------------------------------------------------------------

    def list_users(self, project: str | None = None) -> builtins.list[User]:
        """List users (project members, or every enabled user of the site).

        Args:
            project: Filter by project (``GET /data/projects/{P}/users``: one row per
                membership; ``groups`` holds the ``GROUP_ID``, extra key ``role``).

        Returns:
            :class:`User` models.

        Raises:
            PermissionDeniedError: Not allowed to list users (non-admins for the site list,
                non-owners for a project, while ``restrictUserListAccessToAdmins`` is true).
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            [u.login for u in AdminService(client).list_users(project="P1")]
            ```
        """
        if project is None:
            return User.from_rows(self.client.get_result_set("/data/users"))
        try:
            rows = self.client.get_result_set(f"{self.project_path(project)}/users")
        except ResourceNotFoundError as exc:
            raise not_found(f"project {project!r} was not found (or is not visible)", exc) from exc
        users = []
        for row in rows:
            group = row.get("GROUP_ID", "")
            suffix = group.rsplit("_", 1)[-1]
            role = suffix if "_" in group and suffix in PROJECT_ROLES else None
            users.append(User.model_validate({**row, "groups": [group], "role": role}))
        return users

    def get_user(self, username: str) -> User:
        """Get user details (``GET /xapi/users/{u}`` plus its groups and roles).

        Args:
            username: Username.

        Returns:
            The :class:`User` (``groups`` like ``["P1_owner"]``, ``roles`` like
            ``["Administrator"]``).

        Raises:
            ResourceNotFoundError: Unknown user.
            PermissionDeniedError: Neither that user nor an administrator.

        Example:
            ```python
            AdminService(client).get_user("jdoe").groups
            ```
        """
        base = f"/xapi/users/{segment(username, 'username')}"
        try:
            data = self.client.get_json(base)
            groups = self.client.get_json(f"{base}/groups")
            roles = self.client.get_json(f"{base}/roles")
        except ResourceNotFoundError as exc:
            raise not_found(f"user {username!r} was not found", exc) from exc
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"GET {base} did not return a user object")
        return User.model_validate({**data, "groups": groups or [], "roles": roles or []})

    # --- audit ----------------------------------------------------------------------------------

    def audit_log(
        self,
        project: str | None = None,
        username: str | None = None,
        action: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditEntry]:
        """Get audit log entries, newest first.

        XNAT has no ``/data/audit``. Sources: the audit service
        ``GET /data/services/audit/{xsiType}/{id}`` (workflows merged with the item's change
        history) of the project itself, its subjects and its experiments; without ``project``,
        of every project the user can see (project-level events only).

        Args:
            project: Filter by project.
            username: Filter by username (exact, case-insensitive).
            action: Filter by action type (substring, case-insensitive).
            since: Time filter (e.g., "7d", "12h", "30m", "2024-01-01").
            limit: Maximum results.

        Returns:
            :class:`AuditEntry` models (``timestamp`` in UTC).

        Raises:
            InvalidInputError: Bad ``since`` or ``limit``.
            ResourceNotFoundError: Unknown project.

        Example:
            ```python
            AdminService(client).audit_log(project="P1", since="7d", action="archive")
            ```
        """
        count = check_limit(limit)
        start = parse_since(since)
        entries: builtins.list[AuditEntry] = []
        for xsi_type, item_id, owner in self._audit_items(project):
            entries.extend(item_audit(self.client, xsi_type, item_id, owner))
        wanted_user = username.lower() if username else None
        wanted_action = action.lower() if action else None
        kept = [
            e
            for e in entries
            if (wanted_user is None or (e.username or "").lower() == wanted_user)
            and (wanted_action is None or wanted_action in (e.action or "").lower())
            and (start is None or (e.timestamp is not None and e.timestamp >= start))
        ]
        kept.sort(key=lambda e: e.timestamp.timestamp() if e.timestamp else 0.0, reverse=True)
        return apply_limit(kept, count)

    def _audit_items(self, project: str | None) -> builtins.list[tuple[str, str, str | None]]:
        if project is None:
            rows = self.client.get_result_set("/data/projects", {"columns": "ID"})
            return [("xnat:projectData", r["ID"], r["ID"]) for r in rows if r.get("ID")]
        base = self.project_path(project)
        try:
            subjects = self.client.get_result_set(f"{base}/subjects", {"columns": "ID"})
        except ResourceNotFoundError as exc:
            raise not_found(f"project {project!r} was not found (or is not visible)", exc) from exc
        experiments = self.client.get_result_set(f"{base}/experiments", {"columns": "ID,xsiType"})
        items: builtins.list[tuple[str, str, str | None]] = [("xnat:projectData", project, project)]
        items += [("xnat:subjectData", r["ID"], project) for r in subjects if r.get("ID")]
        items += [
            (r.get("xsiType") or "xnat:experimentData", r["ID"], project)
            for r in experiments
            if r.get("ID")
        ]
        return items

    # --- server and site configuration ----------------------------------------------------------

    def get_server_info(self) -> ServerInfo:
        """Get XNAT server information (build info plus ``siteId`` and ``siteUrl``).

        Returns:
            :class:`ServerInfo` (``version``, ``build_number``, ``site_id``, ``site_url``...;
            extra key ``base_url``).

        Example:
            ```python
            AdminService(client).get_server_info().version  # '1.9.2.1'
            ```
        """
        info = self.client.get_json("/xapi/siteConfig/buildInfo")
        values = dict(info) if isinstance(info, dict) else {}
        for key in ("siteId", "siteUrl"):
            text = self.client.get_text(f"/xapi/siteConfig/{key}").strip()
            values[key] = _json_or_text(text) if text.startswith('"') else text
        values["base_url"] = self.client.base_url
        return ServerInfo.model_validate(values)

    def get_site_config(self, key: str | None = None) -> dict[str, Any]:
        """Get site configuration.

        Args:
            key: Specific config key (or all if None); read with
                ``GET /xapi/siteConfig/values/{key}`` so values keep their JSON types.

        Returns:
            Configuration dict (``{key: value}`` for one key).

        Raises:
            ResourceNotFoundError: Unknown key.

        Example:
            ```python
            AdminService(client).get_site_config("sessionTimeout")
            ```
        """
        if key is None:
            payload = self.client.get_json("/xapi/siteConfig")
            return dict(payload) if isinstance(payload, dict) else {}
        path = f"/xapi/siteConfig/values/{segment(key, 'key')}"
        payload = self.client.get_json(path)
        if not isinstance(payload, dict) or key not in payload:
            raise ResourceNotFoundError(
                404, f"XNAT has no site configuration key {key!r}", method="GET", path=path
            )
        return {key: payload[key]}

    def set_site_config(self, key: str, value: Any) -> bool:
        """Set site configuration value (``POST /xapi/siteConfig`` with ``{key: value}``).

        XNAT converts the value to the preference's type; the call is idempotent, so transient
        failures are retried.

        Args:
            key: Config key.
            value: Config value (JSON-serializable).

        Returns:
            True if successful.

        Raises:
            PermissionDeniedError: Not a site administrator.
            InvalidInputError: Bad key or a value that is not JSON-serializable.

        Example:
            ```python
            AdminService(client).set_site_config("sessionXmlRebuilderInterval", 1)
            ```
        """
        check_ref(key, "key")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"value for {key!r} is not JSON-serializable: {exc}") from exc
        self.client.post("/xapi/siteConfig", json={key: value}, retry=True)
        logger.info("Site configuration %s changed", key)
        return True


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _refresh_options(options: Any) -> builtins.list[str] | None:
    if options is None:
        return None
    if isinstance(options, str) or not isinstance(options, (list, tuple)) or not options:
        raise InvalidInputError(
            f"options must be a non-empty list drawn from {', '.join(REFRESH_OPTIONS)} (or None "
            f"for all), got {options!r}"
        )
    chosen = [check_choice(o, "options item", REFRESH_OPTIONS) for o in options]
    return list(dict.fromkeys(chosen))


def _expand_groups(groups: Any, projects: Any, default_role: str) -> builtins.list[str]:
    if groups is None:
        groups = []
    if isinstance(groups, str) or not isinstance(groups, (list, tuple)):
        raise InvalidInputError(f"groups must be a list of group names, got {groups!r}")
    if projects is not None and (isinstance(projects, str) or not isinstance(projects, list)):
        raise InvalidInputError(f"projects must be a list of project IDs, got {projects!r}")
    for name in [*groups, *(projects or [])]:
        check_ref(name, "group or project")
    if not groups:
        if not projects:
            raise InvalidInputError("pass groups (e.g. ['P1_member']) or projects")
        return [f"{p}_{default_role}" for p in projects]
    targets: builtins.list[str] = []
    for group in groups:
        role = _ROLE_WORDS.get(group.lower())
        if role is None:
            targets.append(group)
        elif not projects:
            raise InvalidInputError(
                f"group {group!r} is a role; pass projects=[...] to use it in each project, or a "
                f"full group id such as 'PROJECT_{role}'"
            )
        else:
            targets.extend(f"{p}_{role}" for p in projects)
    return list(dict.fromkeys(targets))
