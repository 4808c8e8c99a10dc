"""The layering rules of ARCHITECTURE.md, enforced by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARD_CAP_LINES = 600

# module prefix -> prefixes it must never import
FORBIDDEN = {
    "xnat_prefect.models": (
        "prefect",
        "xnat_prefect.client",
        "xnat_prefect.services",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.testing",
    ),
    "xnat_prefect.client": (
        "prefect",
        "xnat_prefect.services",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.testing",
    ),
    "xnat_prefect._": (
        "prefect",
        "xnat_prefect.services",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.testing",
    ),
    "xnat_prefect.errors": ("prefect", "xnat_prefect.testing"),
    "xnat_prefect.services": (
        "prefect",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.testing",
    ),
    "xnat_prefect.dicom": (
        "prefect",
        "xnat_prefect.services",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.testing",
    ),
    "xnat_prefect.tasks": ("xnat_prefect.flows", "xnat_prefect.testing"),
    "xnat_prefect.blocks": (
        "xnat_prefect.services",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.testing",
    ),
    "xnat_prefect.flows": ("xnat_prefect.testing",),
    "xnat_prefect.testing": (
        "xnat_prefect.client",
        "xnat_prefect.models",
        "xnat_prefect.services",
        "xnat_prefect.dicom",
        "xnat_prefect.tasks",
        "xnat_prefect.flows",
        "xnat_prefect.blocks",
        "xnat_prefect.errors",
        "prefect",
    ),
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in (
        ("xnat_prefect", "xnat_prefect"),
        ("flows", "xnat_prefect.flows"),
        ("blocks", "xnat_prefect.blocks"),
    ):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join((package, *parts)), path))
    return found


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _rule_for(module: str) -> tuple[str, ...]:
    best = ""
    for prefix in FORBIDDEN:
        if module.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return FORBIDDEN.get(best, ())


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: str(v))
def test_module_respects_layers(module: str, path: Path) -> None:
    banned = _rule_for(module)
    bad = [
        name
        for name in _imports(path)
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]
    assert not bad, f"{module} imports {bad}, which its layer may not import"


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: str(v))
def test_module_size_cap(module: str, path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= HARD_CAP_LINES, f"{module} has {lines} lines (cap {HARD_CAP_LINES}): split it"


def test_nothing_imports_top_level_flows_or_blocks() -> None:
    offenders = []
    for _module, path in _modules():
        for name in _imports(path):
            if name.split(".")[0] in ("flows", "blocks"):
                offenders.append(f"{path}: {name}")
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in ("flows", "blocks"):
                offenders.append(f"{path}: {name}")
    assert not offenders, "import xnat_prefect.flows / xnat_prefect.blocks instead: " + str(
        offenders
    )


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import prefect\nfrom xnat_prefect.client import XNATClient\n")
    assert _imports(bad) == ["prefect", "xnat_prefect.client"]
    assert "prefect" in _rule_for("xnat_prefect.services.projects")
    assert "xnat_prefect.client" in _rule_for("xnat_prefect.testing.app")
