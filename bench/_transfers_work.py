"""The workloads of ``bench/transfers.py``: each ingest and download, ours and the baselines.

Our transfers run in fresh child processes (``_transfers_child``); the baselines (xnatctl's
CLI, curl) run under ``/usr/bin/time``. Every ingest is checked afterwards (the emulator must
archive the session with every file), untimed.

Example:
    ```python
    bench = Workloads(emu, work, files, total, xnatctl=None)
    rows = bench.ingest("R0") + bench.download("R0")
    ```
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _measure import Emulator, Timed, run_timed
from _transfers_child import WORKERS, run_ours
from _transfers_report import Row

STUDY_PROJECT = "BENCH"
CLI_NOTE = "wall time incl. CLI start"
INGESTS = (
    ("tar", "parallel tar (streamed)"),
    ("zip", "parallel zip (on disk)"),
    ("gradual", "gradual-DICOM"),
)


def _ours(what: str, got: dict[str, Any], nbytes: int, note: str = "") -> Row:
    """A row for one of our runs (``got`` from ``run_ours``)."""
    return Row(what, "xnat-prefect", got["seconds"], nbytes, got["rss_mb"], got["base_mb"], note)


def _theirs(what: str, tool: str, run: Timed, nbytes: int, note: str) -> Row:
    """A row for a baseline run: its failure, if any, replaces the note."""
    return Row(what, tool, run.seconds, nbytes, run.peak_mib, note=run.failure or note)


class Workloads:
    """The measured transfers against one emulator and one generated study.

    Args:
        emu: The running emulator.
        work: Scratch folder holding ``src/`` (the study) and ``prebuilt.tar``.
        files: The study's files.
        total: Their total size in bytes.
        xnatctl: Path of an ``xnatctl`` executable, or None to skip its rows.
    """

    def __init__(
        self, emu: Emulator, work: Path, files: list[Path], total: int, *, xnatctl: str | None
    ) -> None:
        self.emu, self.work, self.total, self.xnatctl = emu, work, total, xnatctl
        self.count = len(files)
        self.src = str(work / "src")
        (work / "home").mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "XNAT_URL": emu.url,
            "XNAT_USER": "admin",
            "XNAT_PASS": "admin",
            "HOME": str(work / "home"),
            "NO_COLOR": "1",
        }

    def _cli(self, *args: str) -> Timed:
        """Run ``xnatctl -q ARGS -w WORKERS`` under ``time``."""
        assert self.xnatctl is not None
        return run_timed([self.xnatctl, "-q", *args, "-w", str(WORKERS)], self.env)

    def _curl(self, *args: str) -> Timed:
        return run_timed(["curl", "-sS", "-f", "-u", "admin:admin", *args])

    def _settle(self, project: str, failure: str) -> None:
        """Wait for the archive (checks the file count), or just for quiet after a failure."""
        if not failure:
            self.emu.archived(project, self.count)
        else:
            time.sleep(10)

    def ingest(self, tag: str) -> list[Row]:
        """Every ingest row once; ``tag`` keeps this repetition's projects apart."""
        rows: list[Row] = []
        for kind, label in INGESTS:
            what = f"ingest: {label}"
            project = f"OURS_{kind.upper()}{tag}"
            self.emu.project(project)
            spec: dict[str, Any] = {
                "kind": kind,
                "url": self.emu.url,
                "src": self.src,
                "project": project,
            }
            if kind == "tar":
                spec["ledger"] = str(self.work / "ledger.sqlite")
            rows.append(_ours(what, run_ours(spec), self.total))
            self.emu.archived(project, self.count)
            if kind == "tar":
                again = run_ours(spec)
                sent = f"sent {again['detail']['uploaded']} files"
                rows.append(_ours("ingest: re-run of the tar ingest (ledger)", again, 0, sent))
            if self.xnatctl:
                project = f"XCTL_{kind.upper()}{tag}"
                self.emu.project(project)
                run = self._cli(
                    *("session", "upload", self.src, "-P", project, "-S", "SUBJ", "-E", "SESS"),
                    *("--mode", kind),
                )
                self._settle(project, run.failure)
                rows.append(_theirs(what, "xnatctl", run, self.total, CLI_NOTE))
        return rows + self._cstore() + [self._raw_tar(tag)]

    def _cstore(self) -> list[Row]:
        """C-STORE rows: the files route themselves to BENCH/SUBJ/SESS (Patient Comments)."""
        self.emu.project(STUDY_PROJECT)
        self.emu.delete_sessions(STUDY_PROJECT)
        spec = {"kind": "cstore", "url": self.emu.url, "src": self.src}
        got = run_ours({**spec, "dicom_port": self.emu.dicom_port})
        self.emu.archived(STUDY_PROJECT, self.count)
        rows = [_ours("ingest: C-STORE", got, self.total)]
        if self.xnatctl:
            self.emu.delete_sessions(STUDY_PROJECT)
            run = self._cli(
                "session",
                "upload-dicom",
                self.src,
                "--host",
                "127.0.0.1",
                "--called-aet",
                "XNAT",
                "--port",
                str(self.emu.dicom_port),
            )
            self._settle(STUDY_PROJECT, run.failure)
            rows.append(_theirs("ingest: C-STORE", "xnatctl", run, self.total, CLI_NOTE))
        return rows

    def _raw_tar(self, tag: str) -> Row:
        """One ``curl --data-binary`` POST of the prebuilt tar: the raw limit."""
        project = f"RAW{tag}"
        self.emu.project(project)
        query = (
            f"import-handler=DICOM-zip&project={project}&subject=SUBJ&session=SESS"
            "&overwrite=delete&Direct-Archive=true&Ignore-Unparsable=true"
        )
        tar = self.work / "prebuilt.tar"
        run = self._curl(
            "--data-binary",
            f"@{tar}",
            "-H",
            "Content-Type: application/x-tar",
            f"{self.emu.url}/data/services/import?{query}",
        )
        self._settle(project, run.failure)
        note = "one request, one connection; curl reads the body into memory"
        return _theirs(
            "ingest: one tar POST (raw limit)", "curl --data-binary", run, tar.stat().st_size, note
        )

    def download(self, tag: str) -> list[Row]:
        """Every download row once, of the session the tar ingest of ``tag`` archived."""
        session = self.emu.archived(f"OURS_TAR{tag}", self.count)
        what = "download: session (scan zips + GET fallback, verify)"
        rows = []
        for workers, suffix in ((WORKERS, ""), (8, ", 8 workers")):
            got = run_ours(
                {
                    "kind": "download",
                    "url": self.emu.url,
                    "session": session,
                    "workers": workers,
                    "out": str(self.work / f"dl-ours-{workers}{tag}"),
                }
            )
            rows.append(_ours(what + suffix, got, got["detail"]["bytes_received"]))
        got = run_ours(
            {
                "kind": "download-zip",
                "url": self.emu.url,
                "session": session,
                "out": str(self.work / f"dl-ours-zip{tag}"),
            }
        )
        rows.append(_ours("download: all scans, one zip", got, got["detail"]["bytes_received"]))
        target = self.work / "raw.zip"
        run = self._curl(
            "-o",
            str(target),
            f"{self.emu.url}/data/experiments/{session}/scans/ALL/files?format=zip",
        )
        what = "download: all scans, one zip (raw limit)"
        rows.append(_theirs(what, "curl", run, target.stat().st_size, ""))
        if self.xnatctl:
            out = self.work / f"dl-xnatctl{tag}"
            run = self._cli("session", "download", "-E", session, "--out", str(out))
            size = (
                sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0
            )
            note = f"{CLI_NOTE}; bytes = what it left on disk"
            rows.append(_theirs("download: session, per-scan zips", "xnatctl", run, size, note))
        return rows
