"""The README's main job (``xnat-prefect demo``) runs end to end."""

from __future__ import annotations

import pytest

from xnat_prefect.cli import main


@pytest.mark.slow
def test_demo_runs_every_flow(prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--series", "2", "--instances", "3", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    for step in (
        "ingest by cstore",
        "ingest by gradual",
        "ingest by parallel-zip",
        "prearchive archiving",
        "pipeline dcm2nii-demo",
        "catalog refresh",
        "download (resumable, verified)",
        "archive watcher",
    ):
        assert f"✓ {step}" in out, f"step {step!r} missing from:\n{out}"
    assert "verified=True" in out
    assert "3 xnat.session.archived events" in out


def test_tasks_table_lists_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks-table"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert len(rows) == 71
