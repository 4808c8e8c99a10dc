"""Serve the deployments of ``deployments/prefect.yaml`` without a work pool or worker.

``prefect deploy`` + ``prefect worker start`` is the production set-up (see
``docs/deploying.md``). For a laptop, a lab PC or a quick trial, this script serves the *same*
deployments from one long-running process with :func:`prefect.serve`: it reads
``prefect.yaml`` (names, entrypoints, parameters, descriptions, tags, schedules, triggers,
deployment concurrency limits), imports each flow from the installed ``xnat_prefect`` package and
runs every scheduled, triggered or UI-started run as a subprocess of this process.

Usage::

    export PREFECT_API_URL=http://127.0.0.1:4200/api    # a `prefect server start`
    python deployments/serve.py                          # everything, until Ctrl-C
    python deployments/serve.py --only ingest-dicom --only archive-prearchive
    python deployments/serve.py --limit 4                # at most 4 runs at a time
    python deployments/serve.py --check                  # print what would be served
    python deployments/serve.py --replace                # take over `prefect deploy`'s ones

The work pool settings of ``prefect.yaml`` (``work_pool``, ``job_variables``) do not apply:
runs execute here, with this process's environment. Prefect keys deployments by flow and name,
and serving a deployment that ``prefect deploy`` already created in a work pool would keep the
pool (Prefect 3.8.8 updates it in place), so workers and this process would both take its
runs. This script therefore refuses such a name unless ``--replace`` is given, which deletes
the work-pool deployment (its schedules, triggers and scheduled runs) first.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import yaml  # type: ignore[import-untyped, unused-ignore]
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentTriggerTypes, TriggerTypes
from prefect.exceptions import ObjectNotFound
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, RRule, Schedule
from prefect.types.entrypoint import EntrypointType
from prefect.utilities.templating import apply_values
from pydantic import TypeAdapter

DEFAULT_PREFECT_FILE = Path(__file__).resolve().with_name("prefect.yaml")
_TRIGGERS: TypeAdapter[DeploymentTriggerTypes] = TypeAdapter(DeploymentTriggerTypes)


class DeploymentFileError(ValueError):
    """``prefect.yaml`` holds something this script cannot serve."""


def load_specs(path: Path = DEFAULT_PREFECT_FILE) -> list[dict[str, Any]]:
    """Read the deployment entries of a ``prefect.yaml``.

    ``{{ $ENV_VAR }}`` placeholders are filled from the environment, as ``prefect deploy``
    does; trigger parameters (``{{ event... }}``) are left for the server to fill per event.

    Args:
        path: The ``prefect.yaml`` file.

    Returns:
        One dict per deployment, as written in the file.

    Raises:
        DeploymentFileError: The file has no ``deployments`` list, or an entry lacks a name or
            an entrypoint.

    Example:
        ```python
        specs = load_specs(Path("deployments/prefect.yaml"))
        print([spec["name"] for spec in specs])
        ```
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = document.get("deployments")
    if not isinstance(entries, list) or not entries:
        raise DeploymentFileError(f"{path} has no 'deployments:' list to serve")
    specs: list[dict[str, Any]] = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("entrypoint"):
            raise DeploymentFileError(
                f"deployment #{index} in {path} needs at least 'name' and 'entrypoint'"
            )
        triggers = entry.get("triggers")
        spec = {k: v for k, v in entry.items() if k != "triggers"}
        spec = cast(dict[str, Any], apply_values(spec, dict(os.environ), remove_notset=False))
        if triggers is not None:
            spec["triggers"] = triggers
        specs.append(spec)
    return specs


def _anchor(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise DeploymentFileError(f"anchor_date {value!r} is not an ISO 8601 date-time") from exc


def build_schedules(spec: dict[str, Any]) -> list[Schedule]:
    """Turn the ``schedules:`` entries of one deployment into Prefect schedules.

    Args:
        spec: One deployment entry of ``prefect.yaml``.

    Returns:
        The schedules (``interval`` in seconds, ``cron`` or ``rrule``; ``timezone``,
        ``anchor_date``, ``active``, ``parameters`` and ``slug`` are honoured).

    Raises:
        DeploymentFileError: A schedule of an unknown kind.

    Example:
        ```python
        build_schedules({"name": "x", "schedules": [{"interval": 900}]})
        ```
    """
    schedules: list[Schedule] = []
    for entry in spec.get("schedules") or []:
        common: dict[str, Any] = {
            "active": entry.get("active", True),
            "parameters": entry.get("parameters") or {},
            "slug": entry.get("slug"),
        }
        if entry.get("cron"):
            schedules.append(
                Cron(entry["cron"], timezone=entry.get("timezone"), **common),
            )
        elif entry.get("interval"):
            interval = entry["interval"]
            if isinstance(interval, int | float):
                interval = timedelta(seconds=interval)
            schedules.append(
                Interval(
                    interval,
                    anchor_date=_anchor(entry.get("anchor_date")),
                    timezone=entry.get("timezone"),
                    **common,
                )
            )
        elif entry.get("rrule"):
            schedules.append(RRule(entry["rrule"], timezone=entry.get("timezone"), **common))
        else:
            raise DeploymentFileError(
                f"deployment {spec['name']!r}: a schedule needs interval, cron or rrule, "
                f"got {sorted(entry)}"
            )
    return schedules


def build_triggers(spec: dict[str, Any]) -> list[DeploymentTriggerTypes | TriggerTypes]:
    """Turn the ``triggers:`` entries of one deployment into Prefect deployment triggers.

    Args:
        spec: One deployment entry of ``prefect.yaml``.

    Returns:
        The triggers, named ``<deployment>__automation_<n>`` unless named in the file (the
        names ``prefect deploy`` gives them).

    Example:
        ```python
        build_triggers({"name": "x", "triggers": [{"expect": ["xnat.session.archived"]}]})
        ```
    """
    triggers: list[DeploymentTriggerTypes | TriggerTypes] = []
    for index, entry in enumerate(spec.get("triggers") or [], start=1):
        entry = dict(entry)
        entry.setdefault("name", f"{spec['name']}__automation_{index}")
        triggers.append(_TRIGGERS.validate_python(entry))
    return triggers


def _concurrency(spec: dict[str, Any]) -> int | ConcurrencyLimitConfig | None:
    limit = spec.get("concurrency_limit")
    if isinstance(limit, dict):
        return ConcurrencyLimitConfig.model_validate(limit)
    return limit if isinstance(limit, int) else None


def build_deployment(spec: dict[str, Any]) -> RunnerDeployment:
    """Build the served deployment of one ``prefect.yaml`` entry.

    Args:
        spec: One entry from :func:`load_specs`.

    Returns:
        A ``RunnerDeployment`` with a module-path entrypoint.

    Raises:
        DeploymentFileError: The entrypoint is not a flow.

    Example:
        ```python
        deployment = build_deployment(load_specs()[0])
        ```
    """
    flow: Flow[..., Any] = load_flow_from_entrypoint(spec["entrypoint"])
    if not isinstance(flow, Flow):
        raise DeploymentFileError(f"{spec['entrypoint']} is not a Prefect flow")
    deployment = flow.to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        version=spec.get("version"),
        parameters=spec.get("parameters") or {},
        schedules=build_schedules(spec),
        triggers=build_triggers(spec),
        concurrency_limit=_concurrency(spec),
        paused=spec.get("paused"),
        enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    if not isinstance(deployment, RunnerDeployment):  # an async caller would get a coroutine
        raise DeploymentFileError("build the deployments from synchronous code")
    return deployment


def build_deployments(
    path: Path = DEFAULT_PREFECT_FILE, *, only: Sequence[str] = ()
) -> list[RunnerDeployment]:
    """Build every deployment of ``prefect.yaml`` (or those named in ``only``).

    Args:
        path: The ``prefect.yaml`` file.
        only: Deployment names to keep (empty: all).

    Returns:
        The deployments, in file order.

    Raises:
        DeploymentFileError: A name in ``only`` is not in the file.

    Example:
        ```python
        deployments = build_deployments(only=["ingest-dicom"])
        ```
    """
    specs = load_specs(path)
    names = [spec["name"] for spec in specs]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise DeploymentFileError(f"no deployment named {unknown} in {path}; known: {names}")
    return [build_deployment(spec) for spec in specs if not only or spec["name"] in only]


def take_over_pool_deployments(
    deployments: Sequence[RunnerDeployment], *, replace: bool
) -> list[str]:
    """Find (and with ``replace``, delete) work-pool deployments with the same names.

    Args:
        deployments: The deployments about to be served.
        replace: Delete the work-pool deployments found.

    Returns:
        ``flow/deployment (pool)`` of each one found.

    Raises:
        DeploymentFileError: Some were found and ``replace`` is False.

    Example:
        ```python
        take_over_pool_deployments(build_deployments(), replace=True)
        ```
    """
    found: list[tuple[str, Any]] = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            try:
                existing = client.read_deployment_by_name(deployment.full_name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                found.append((f"{deployment.full_name} ({existing.work_pool_name})", existing.id))
        if found and not replace:
            names = ", ".join(name for name, _ in found)
            raise DeploymentFileError(
                f"{names} already exist in a work pool (from `prefect deploy`); workers would "
                "keep taking their runs. Pass --replace to delete and serve them here, or "
                "serve them under another Prefect server"
            )
        for _, deployment_id in found:
            client.delete_deployment(deployment_id)
    return [name for name, _ in found]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python deployments/serve.py",
        description="Serve the deployments of prefect.yaml from this process (no work pool).",
    )
    parser.add_argument("--prefect-file", type=Path, default=DEFAULT_PREFECT_FILE)
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="serve only this deployment"
    )
    parser.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    parser.add_argument(
        "--check", action="store_true", help="build the deployments, print them and exit"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="delete work-pool deployments of the same names (from `prefect deploy`) first",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: build the deployments and serve them until interrupted.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.

    Example:
        ```python
        main(["--check"])
        ```
    """
    args = _parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("--limit must be at least 1", file=sys.stderr)
        return 2
    try:
        deployments = build_deployments(args.prefect_file, only=args.only)
    except DeploymentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for deployment in deployments:
            kinds = [type(s.schedule).__name__ for s in deployment.schedules or []]
            print(
                f"{deployment.flow_name}/{deployment.name}: {deployment.entrypoint} "
                f"schedules={kinds} triggers={len(deployment.triggers)}"
            )
        return 0
    try:
        replaced = take_over_pool_deployments(deployments, replace=args.replace)
    except DeploymentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in replaced:
        print(f"replaced work-pool deployment {name}")
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
