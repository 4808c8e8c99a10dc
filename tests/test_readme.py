"""Every Python example in the README runs, and the README's task table is current."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.cli import tasks_table
from xnat_prefect.testing import XNATEmulator

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


def test_task_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    current = text.split("<!-- tasks-table:start -->\n", 1)[1].split("\n<!-- tasks-table:end -->")[
        0
    ]
    assert current.strip() == tasks_table().strip(), "run `xnat-prefect tasks-table` into README"


@pytest.mark.slow
def test_readme_examples_run(
    prefect_harness: None, xnat_emulator: XNATEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {}
    for block in BLOCKS:
        # The examples name a real server; point them at the emulator.
        code = (
            block.replace("https://xnat.example.org", xnat_emulator.url)
            .replace('"jdoe"', '"admin"')
            .replace('"change-me"', '"admin"')
        )
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["inventory"]() is not None
    lines = capsys.readouterr().out.splitlines()
    counts = [int(line) for line in lines if line.strip().isdigit()]
    assert counts and counts[0] > 0, f"the chaining example downloaded nothing: {lines}"
