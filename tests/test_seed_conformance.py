"""The seed (shared/seeds/services-api.txt) is the specification: walk it and prove every
service class, method, parameter and default exists in ours, and that each operation has a task.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import xnat_prefect.services as services
from xnat_prefect.services import uploads as uploads_module

SEED_CANDIDATES = [
    Path(__file__).resolve().parents[1] / ".." / "shared" / "seeds" / "services-api.txt",
    Path(__file__).resolve().parent / "data" / "services-api.txt",
]
SEED = next((p for p in SEED_CANDIDATES if p.exists()), SEED_CANDIDATES[-1])
CLASS_LINE = re.compile(r"^class xnatctl\.services\.(\w+)\.(\w+)\((.*)\)\[source\]$")
FUNC_LINE = re.compile(r"^xnatctl\.services\.(\w+)\.(\w+)\((.*)\)\[source\]$")
METHOD_LINE = re.compile(r"^(\w+)\((.*)\)\[source\]$")


def _parse_params(text: str) -> list[tuple[str, str, Any]]:
    """(name, kind, default) for a seed parameter list such as ``a, b=None, *, c=4``."""
    tree = ast.parse(f"def f({text}): pass")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    out: list[tuple[str, str, Any]] = []
    positional = args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in zip(positional, defaults, strict=True):
        out.append((arg.arg, "positional", _literal(default)))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append((arg.arg, "keyword", _literal(default)))
    return out


_NO_DEFAULT = object()


def _literal(node: ast.expr | None) -> Any:
    return _NO_DEFAULT if node is None else ast.literal_eval(node)


def _seed() -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    methods: list[tuple[str, str, str]] = []
    functions: list[tuple[str, str]] = []
    current: str | None = None
    for line in SEED.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if match := CLASS_LINE.match(line):
            current = match.group(2) if match.group(2).endswith("Service") else None
        elif match := FUNC_LINE.match(line):
            functions.append((match.group(2), match.group(3)))
        elif (match := METHOD_LINE.match(line)) and current:
            methods.append((current, match.group(1), match.group(2)))
    return methods, functions


METHODS, FUNCTIONS = _seed()


def test_the_seed_was_read() -> None:
    assert len(METHODS) == 71
    assert len(FUNCTIONS) == 6


@pytest.mark.parametrize(("cls", "name", "params"), METHODS, ids=lambda v: str(v)[:40])
def test_service_method_matches_seed(cls: str, name: str, params: str) -> None:
    service = getattr(services, cls)
    method = getattr(service, name)
    signature = inspect.signature(method)
    ours = [p for p in signature.parameters.values() if p.name != "self"]
    seed = _parse_params(params)
    for (seed_name, seed_kind, seed_default), param in zip(seed, ours, strict=False):
        assert param.name == seed_name, f"{cls}.{name}: {param.name} where the seed has {seed_name}"
        if seed_kind == "keyword":
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, (
                f"{cls}.{name}({seed_name}) is keyword-only"
            )
        else:
            assert param.kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.POSITIONAL_ONLY,
            ), f"{cls}.{name}({seed_name}) must accept a positional argument"
        if seed_default is _NO_DEFAULT:
            assert param.default is inspect.Parameter.empty, (
                f"{cls}.{name}({seed_name}) is required"
            )
        else:
            assert param.default == seed_default, f"{cls}.{name}({seed_name}) default differs"
    assert len(ours) >= len(seed), f"{cls}.{name} lacks parameters the seed has"
    for extra in ours[len(seed) :]:
        assert extra.default is not inspect.Parameter.empty, f"extra {extra.name} must be optional"


@pytest.mark.parametrize(("name", "params"), FUNCTIONS, ids=lambda v: str(v)[:40])
def test_upload_utility_matches_seed(name: str, params: str) -> None:
    function = getattr(uploads_module, name)
    ours = list(inspect.signature(function).parameters.values())
    seed = _parse_params(params)
    assert [p.name for p in ours[: len(seed)]] == [s[0] for s in seed]


def test_every_operation_has_a_retryable_task() -> None:
    from xnat_prefect.tasks import TASKS_BY_OPERATION
    from xnat_prefect.tasks._common import retry_on_transient

    wanted = {f"{cls}.{name}" for cls, name, _ in METHODS}
    assert wanted == set(TASKS_BY_OPERATION)
    for key, task in TASKS_BY_OPERATION.items():
        assert task.retry_condition_fn is retry_on_transient, key
        first = next(iter(inspect.signature(task.fn).parameters))
        assert first == "connection", key
