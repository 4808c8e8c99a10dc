"""Report side of ``bench/scale.py``: the measured ``Run``, the tables and the doc section."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _measure import write_section

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
SECTION = "## Scale: memory and file count"
MB = 1_000_000
MIB = 1 << 20
WORKERS = 4
SERIES = 10
FILE_BYTES = 130_000
RSS_TARGET_MIB = 250 * MB / MIB  # the target, 250 MB, in MiB (ru_maxrss is in KiB)


@dataclass
class Run:
    """One measured transfer."""

    seconds: float
    peak_mb: float
    base_mb: float
    detail: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0


Results = dict[str, dict[int, list[Run]]]  # row -> size or file count -> one Run per repetition


def _size(nbytes: int) -> str:
    return f"{nbytes >> 30} GiB" if nbytes % (1 << 30) == 0 else f"{nbytes // MIB} MiB"


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _rss(run: Run) -> str:
    return f"{run.peak_mb:.0f} ({run.base_mb:.0f})"


def size_table(results: Results, sizes: list[int], rows: list[str]) -> list[str]:
    """Markdown rows of (a): time and peak RSS per size, RSS ratio largest/smallest."""
    small, big = sizes[0], sizes[-1]
    head = ["transfer", "run"]
    head += [f"{_size(s)}: s (MB/s)" for s in sizes]
    head += [f"{_size(s)}: peak RSS MiB (before)" for s in sizes]
    head += [f"peak RSS {_size(big)} / {_size(small)}", "≤250 MB"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        per = results.get(row, {})
        for rep in range(min(len(per.get(s, [])) for s in sizes)):
            runs = [per[s][rep] for s in sizes]
            cells = [row, str(rep + 1)]
            cells += [
                f"{r.seconds:.1f} ({s / MB / r.seconds:.0f})"
                for r, s in zip(runs, sizes, strict=True)
            ]
            cells += [_rss(r) for r in runs]
            peak = max(r.peak_mb for r in runs)
            cells += [
                f"{runs[-1].peak_mb / runs[0].peak_mb:.2f}",
                "yes" if peak <= RSS_TARGET_MIB else f"no (+{peak - RSS_TARGET_MIB:.0f} MiB)",
            ]
            table.append("| " + " | ".join(cells) + " |")
    return table


def count_table(results: Results, counts: list[int], rows: list[str]) -> list[str]:
    """Markdown rows of (b): time, time per file and peak RSS per count, with ratios."""
    small, big = counts[0], counts[-1]
    head = ["transfer", "run"]
    head += [f"{_count(c)} files: s (ms/file)" for c in counts]
    head += [f"ms/file {_count(big)} / {_count(small)}"]
    head += [f"{_count(c)}: peak RSS MiB (before)" for c in counts]
    head += [f"peak RSS {_count(big)} / {_count(small)}"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        per = results.get(row, {})
        for rep in range(min(len(per.get(c, [])) for c in counts)):
            runs = [per[c][rep] for c in counts]
            per_file = [r.seconds / c * 1000 for r, c in zip(runs, counts, strict=True)]
            cells = [row, str(rep + 1)]
            cells += [f"{r.seconds:.1f} ({ms:.2f})" for r, ms in zip(runs, per_file, strict=True)]
            cells.append(f"{per_file[-1] / per_file[0]:.2f}")
            cells += [_rss(r) for r in runs]
            cells.append(f"{runs[-1].peak_mb / runs[0].peak_mb:.2f}")
            table.append("| " + " | ".join(cells) + " |")
    return table


def write_doc(section: str) -> None:
    """Replace the section in ``docs/performance.md``, or add it after ``## Transfer notes``."""
    write_section(section, after="## Transfer notes", doc=DOC)


def render(
    results: Results,
    sizes: list[int],
    counts: list[int],
    *,
    command: str,
    loads: list[str],
    minutes: float,
) -> str:
    """The Markdown section: how it was measured, then tables (a) and (b)."""
    size_rows = [r for r in results if any(k in sizes for k in results[r])]
    count_rows = [r for r in results if r not in size_rows]
    lines = [
        SECTION,
        "",
        f"Written by `bench/scale.py`. Command (from the repository root), "
        f"{time.strftime('%Y-%m-%d')}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {minutes:.0f} min in all:",
        "",
        "```bash",
        command,
        "```",
        "",
        "Each transfer runs in a fresh process against the emulator (its own process, "
        f"loopback); {WORKERS} workers, ledger off. Seconds run from the service call to its "
        "return (process start excluded; the archive check afterwards excluded). Peak RSS is "
        "that process's maximum resident set in MiB (`/usr/bin/time -f %M`, cross-checked "
        "with its `VmHWM`), so emulator memory is not in it; *before* is its RSS right before "
        "the call (Python, httpx, pydicom and pynetdicom imported, client made). (a): one file "
        "of random bytes, and DICOM files of ~8 MB (the same volume, to within one file per "
        f"series); (b): synthetic MR files of ~{FILE_BYTES // 1000} kB in {SERIES} series. "
        "Each run measures the sizes (counts) of a row side by side.",
        "",
        f"1-minute load average at the start and end of each run: {'; '.join(loads)}. "
        "The 2 CPUs are shared with the emulator and with other work on this VM (5 other "
        "sessions running test suites), so times are noisy; compare the columns of one row "
        "(measured side by side in the same run), not rows of different runs.",
        "",
    ]
    if size_rows:
        lines += ["**(a) Client memory vs transfer size**", ""]
        lines += [*size_table(results, sizes, size_rows), ""]
    if count_rows:
        lines += ["**(b) Time vs file count**", ""]
        lines += [*count_table(results, counts, count_rows), ""]
    return "\n".join(lines)
