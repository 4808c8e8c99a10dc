"""Result rows of ``bench/transfers.py`` and the ``## Transfers`` table they make.

Example:
    ```python
    rows = merge([Row("ingest: x", "curl", 2.0, 10**8, 12.0)])
    write_doc(rows, ["Command: ..."])
    ```
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from _measure import write_section

SECTION = "## Transfers"
MB = 1_000_000


@dataclass
class Row:
    """One result line: a transfer by one tool, its time, bytes and memory."""

    what: str
    tool: str
    seconds: float | None
    nbytes: int
    rss_mb: float | None
    base_mb: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        """The table cells: what, tool, seconds, MB/s, peak RSS, RSS before, notes."""
        rate = f"{self.nbytes / MB / self.seconds:.1f}" if self.seconds else "-"
        secs = f"{self.seconds:.2f}" if self.seconds is not None else "-"
        rss = f"{self.rss_mb:.0f}" if self.rss_mb is not None else "-"
        base = f"{self.base_mb:.0f}" if self.base_mb is not None else "-"
        return [self.what, self.tool, secs, rate, rss, base, self.note]


def merge(rows: list[Row]) -> list[Row]:
    """One row per (what, tool): median seconds (range in the notes), max peak RSS.

    Args:
        rows: Every measured run, in order.

    Returns:
        One row per (what, tool), in order of first appearance.
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.what, row.tool), []).append(row)
    merged = []
    for (what, tool), runs in groups.items():
        timed = sorted(r.seconds for r in runs if r.seconds is not None)
        notes = sorted({r.note for r in runs if r.note and not r.note.startswith("FAILED")})
        failed = sorted(r.note for r in runs if r.note.startswith("FAILED"))
        if failed:
            notes.insert(0, f"{failed[0]} (failed in {len(failed)}/{len(runs)} runs)")
        if len(runs) > 1 and timed:
            notes.insert(0, f"median of {len(runs)} ({timed[0]:.2f}-{timed[-1]:.2f} s)")
        rss = [r.rss_mb for r in runs if r.rss_mb is not None]
        bases = sorted(r.base_mb for r in runs if r.base_mb is not None)
        merged.append(
            Row(
                what,
                tool,
                statistics.median(timed) if timed else None,
                runs[0].nbytes,
                max(rss) if rss else None,
                bases[len(bases) // 2] if bases else None,
                "; ".join(notes),
            )
        )
    return merged


def write_doc(rows: list[Row], header: list[str]) -> None:
    """Replace the ``## Transfers`` section of ``docs/performance.md`` with the table.

    Args:
        rows: Merged rows.
        header: Paragraphs (one per item) above the table.
    """
    table = [
        "| what | tool | seconds | MB/s | peak RSS MB | RSS before MB | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    table += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    write_section("\n".join([SECTION, "", *header, "", *table]), after="## Emulator")
