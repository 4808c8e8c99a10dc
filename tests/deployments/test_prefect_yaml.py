"""deployments/prefect.yaml and serve.py without a server: entrypoints, parameters, templates."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.server.events.actions import RunDeployment
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate
from prefect.utilities.schema_tools.validation import validate
from prefect.utilities.templating import apply_values

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(PREFECT_YAML.read_text())
SPECS: list[dict[str, Any]] = DOCUMENT["deployments"]
SITE: dict[str, str] = DOCUMENT["definitions"]["site"]
BY_NAME = {spec["name"]: spec for spec in SPECS}


def _serve_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "xnat_deployments_serve", REPO / "deployments" / "serve.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serve = _serve_module()


def _flow(spec: dict[str, Any]) -> Flow[..., Any]:
    flow = load_flow_from_entrypoint(spec["entrypoint"], use_placeholder_flow=False)
    assert isinstance(flow, Flow)
    return flow


def _trigger_parameters(spec: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for trigger in spec.get("triggers") or []:
        merged.update(trigger.get("parameters") or {})
    return merged


def test_deployments_ship_no_code_and_use_the_process_pool() -> None:
    assert DOCUMENT["pull"] == []  # not omitted: `prefect deploy` would add a cwd pull step
    assert not DOCUMENT.get("build") and not DOCUMENT.get("push")
    assert [spec["name"] for spec in SPECS] == [
        "archive-prearchive",
        "refresh-catalogs-nightly",
        "watch-archive",
        "ingest-dicom",
        "run-pipeline",
        "download-sessions",
        "stage-archived-session",
    ]
    for spec in SPECS:
        assert spec["work_pool"]["name"] == "xnat-process"
        module, _, name = spec["entrypoint"].partition(":")
        assert module.startswith("xnat_prefect.flows.") and name, spec["entrypoint"]
        assert not module.endswith(".py")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_entrypoint_loads_the_packaged_flow(spec: dict[str, Any]) -> None:
    flow = _flow(spec)
    module = sys.modules[flow.fn.__module__]
    assert module.__name__ == spec["entrypoint"].split(":")[0]
    assert module.__file__ and Path(module.__file__).resolve().is_relative_to(REPO / "flows")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_parameters_exist_validate_and_are_documented(spec: dict[str, Any]) -> None:
    flow = _flow(spec)
    schema = parameter_schema(flow).model_dump()
    properties = schema["properties"]
    # descriptions in the UI form come from the flows' Google-style docstrings
    undocumented = [name for name, prop in properties.items() if not prop.get("description")]
    assert not undocumented, f"{flow.name}: no docstring description for {undocumented}"
    given = dict(spec.get("parameters") or {})
    for schedule in spec.get("schedules") or []:
        given.update(schedule.get("parameters") or {})
    unknown = set(given) - set(properties)
    assert not unknown, f"{spec['name']}: {unknown} are not parameters of {flow.name}"
    assert given["credentials"] == SITE["credentials"]  # a block document *name*
    errors = validate(given, schema, ignore_required=True)
    assert not errors, [e.message for e in errors]
    missing = set(schema.get("required", [])) - set(given) - set(_trigger_parameters(spec))
    if spec.get("schedules") or spec.get("triggers"):
        # nobody fills a form for a scheduled or triggered run: every required value is set
        assert not missing, f"{spec['name']} runs would fail: {missing} not given"
    else:
        for name in missing:  # started by people: the description says what they must give
            assert name in spec["description"], f"{spec['name']}: say that {name} is required"


def test_schedules() -> None:
    [archive] = serve.build_schedules(BY_NAME["archive-prearchive"])
    assert archive.interval == timedelta(minutes=15)
    [nightly] = serve.build_schedules(BY_NAME["refresh-catalogs-nightly"])
    assert nightly.cron == "30 2 * * *" and nightly.timezone == "UTC"
    [watch] = serve.build_schedules(BY_NAME["watch-archive"])
    assert watch.interval == timedelta(minutes=5)
    for name in ("archive-prearchive", "watch-archive"):
        assert BY_NAME[name]["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"


def _event(**payload: Any) -> dict[str, Any]:
    return {
        "event": "xnat.session.archived",
        "resource": {"prefect.resource.id": "xnat.session.xnat.example.org.XNAT_E00042"},
        "payload": payload,
    }


def test_downstream_trigger_renders_the_event_into_typed_parameters() -> None:
    spec = BY_NAME["stage-archived-session"]
    (trigger,) = spec["triggers"]
    assert trigger["expect"] == ["xnat.session.archived"]
    assert trigger["for_each"] == ["prefect.resource.id"]
    (built,) = serve.build_triggers(spec)
    assert built.expect == {"xnat.session.archived"}
    # what the server's run-deployment action does when the event arrives
    parameters = copy.deepcopy(trigger["parameters"])
    RunDeployment._upgrade_v1_templates(parameters)
    context = HydrationContext(
        render_jinja=True,
        jinja_context={"event": _event(experiment_id="XNAT_E00042", project="P1")},
    )
    rendered = hydrate(parameters, context)
    assert rendered == {"sessions": ["XNAT_E00042"], "project": "P1"}
    merged = {**spec["parameters"], **rendered}
    assert not validate(merged, parameter_schema(_flow(spec)).model_dump())


def test_trigger_templates_survive_prefect_deploy() -> None:
    # `prefect deploy` fills {{ $ENV }} placeholders in the whole entry, triggers included, and
    # in Prefect 3.8.8 drops list items whose placeholder it cannot fill: a plain
    # `sessions: ["{{ event.payload.experiment_id }}"]` reaches the server as `[]`.
    (trigger,) = BY_NAME["stage-archived-session"]["triggers"]
    assert apply_values(trigger, dict(os.environ), remove_notset=False) == trigger
    plain = {"sessions": ["{{ event.payload.experiment_id }}"]}
    assert apply_values(plain, {}, remove_notset=False) == {"sessions": []}  # the Prefect bug


def test_serve_builds_the_same_deployments() -> None:
    deployments = serve.build_deployments()
    assert [d.name for d in deployments] == [spec["name"] for spec in SPECS]
    for deployment, spec in zip(deployments, SPECS, strict=True):
        assert deployment.entrypoint == spec["entrypoint"].replace(":", ".")
        assert deployment.parameters == spec.get("parameters", {})
        assert len(deployment.schedules or []) == len(spec.get("schedules") or [])
        assert len(deployment.triggers) == len(spec.get("triggers") or [])
        assert deployment.work_pool_name is None
    limited = {d.name: d.concurrency_limit for d in deployments}
    assert limited["watch-archive"] == 1 and limited["ingest-dicom"] is None


def test_serve_check_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["--check", "--only", "watch-archive"]) == 0
    assert "xnat-watch-archive/watch-archive" in capsys.readouterr().out
    assert serve.main(["--check", "--only", "no-such-deployment"]) == 2
    assert "known:" in capsys.readouterr().err
    broken = tmp_path / "prefect.yaml"
    broken.write_text("deployments:\n  - name: x\n")
    assert serve.main(["--check", "--prefect-file", str(broken)]) == 2
    assert "'name' and 'entrypoint'" in capsys.readouterr().err
    assert serve.main(["--limit", "0"]) == 2
    with pytest.raises(serve.DeploymentFileError, match="interval, cron or rrule"):
        serve.build_schedules({"name": "x", "schedules": [{"every": 5}]})


@pytest.mark.parametrize(
    ("variable", "path"),
    [
        (
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS",
            ("server", "concurrency", "maximum_concurrency_slot_wait_seconds"),
        ),
        (
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS",
            ("server", "deployments", "concurrency_slot_wait_seconds"),
        ),
        ("PREFECT_WORKER_QUERY_SECONDS", ("worker", "query_seconds")),
    ],
)
def test_documented_settings_exist(
    variable: str, path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings.models.root import Settings

    monkeypatch.setenv(variable, "7")
    value: Any = Settings()
    for part in path:
        value = getattr(value, part)
    assert value == 7
    assert variable in (REPO / "docs" / "deploying.md").read_text()
