"""On-demand benchmark of the transfer services against the emulator, curl and xnatctl.

Generates a synthetic study (default ~260 MB in 2,000 files of ~130 kB), starts the emulator in
its own process (``xnat-emulator serve``), then times on loopback:

* ingest: ``UploadService.upload_dicom_parallel`` (tar streamed / zip on disk),
  ``upload_dicom_gradual`` and ``upload_dicom_store`` (C-STORE), each with 4 workers, and a
  re-run of the tar ingest with the ledger on (nothing left to send);
* download: ``DownloadService.download_session`` (one zip per fresh scan, per-file GETs for
  the rest; 4 and 8 workers) and
  ``download_scans(["ALL"])`` (one server-made zip);
* the raw limit: one ``curl --data-binary`` POST of a prebuilt tar to the import service, and
  one ``curl`` of the session zip;
* the xnatctl CLI (installed in a separate venv, never a project dependency) doing the same
  transfers, when ``--xnatctl`` points at it.

Each measured transfer runs in a fresh process, so "peak RSS" is that process's maximum
resident set (``ru_maxrss`` for our runs, ``/usr/bin/time -f %M`` for curl and xnatctl);
our rows also show the RSS right before the transfer started. After each ingest the bench
waits until the emulator has archived the session and checks its file count (not timed).
Results go to stdout and to the ``## Transfers`` section of ``docs/performance.md``.

Example:
    ```bash
    python bench/transfers.py --files 2000 --xnatctl /tmp/bench-venv/bin/xnatctl
    python bench/transfers.py --files 400   # reduced size
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
SECTION = "## Transfers"
MB = 1_000_000
WORKERS = 4
STUDY_PROJECT = "BENCH"


@dataclass
class Row:
    """One result line."""

    what: str
    tool: str
    seconds: float | None
    nbytes: int
    rss_mb: float | None
    base_mb: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        rate = f"{self.nbytes / MB / self.seconds:.1f}" if self.seconds else "-"
        secs = f"{self.seconds:.2f}" if self.seconds is not None else "-"
        rss = f"{self.rss_mb:.0f}" if self.rss_mb is not None else "-"
        base = f"{self.base_mb:.0f}" if self.base_mb is not None else "-"
        return [self.what, self.tool, secs, rate, rss, base, self.note]


# ----------------------------------------------------------------------------- child runs


def _rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(spec: dict[str, Any]) -> None:
    """Run one of our transfers in this (fresh) process and print a JSON result line."""
    from xnat_prefect.client import XNATClient
    from xnat_prefect.services.downloads import DownloadService
    from xnat_prefect.services.ledger import TransferLedger
    from xnat_prefect.services.uploads import UploadService

    kind = spec["kind"]
    with XNATClient(spec["url"], "admin", "admin", timeout=600) as client:
        ledger: TransferLedger | bool = False
        if spec.get("ledger"):
            ledger = TransferLedger(Path(spec["ledger"]))
        uploads = UploadService(client, ledger=ledger)
        downloads = DownloadService(client, ledger=False)
        src = Path(spec.get("src", "."))
        base = _rss_now_mb()
        start = time.perf_counter()
        if kind in ("tar", "zip"):
            result: Any = uploads.upload_dicom_parallel(
                src,
                spec["project"],
                "SUBJ",
                "SESS",
                upload_workers=WORKERS,
                archive_workers=WORKERS,
                archive_format=kind,
            )
            ok = result.success
        elif kind == "gradual":
            result = uploads.upload_dicom_gradual(
                src, spec["project"], "SUBJ", "SESS", workers=WORKERS
            )
            ok = result.success
        elif kind == "cstore":
            result = uploads.upload_dicom_store(
                src, "127.0.0.1", "XNAT", port=spec["dicom_port"], workers=WORKERS
            )
            ok = result.success
        elif kind == "download":
            result = downloads.download_session(
                spec["session"],
                Path(spec["out"]),
                workers=spec.get("workers", WORKERS),
                verify=True,
            )
            ok = result.success and result.verified
        elif kind == "download-zip":
            result = downloads.download_scans(spec["session"], ["ALL"], Path(spec["out"]))
            ok = result.success
        else:
            raise SystemExit(f"unknown kind {kind}")
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_mb": peak,
                "base_mb": base,
                "ok": ok,
                "detail": result.model_dump(mode="json", exclude={"paths"}),
            }
        )
    )


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"child {spec['kind']} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if not result["ok"]:
        print(f"  ! {spec['kind']} reported failures: {result['detail']}", file=sys.stderr)
    return result


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command under /usr/bin/time; returns (seconds, peak RSS MB, failure note or "")."""
    full = ["/usr/bin/time", "-f", "@@TIME %e %M", *cmd]
    proc = subprocess.run(full, capture_output=True, text=True, env=env, check=False)
    match = re.search(r"@@TIME ([\d.]+) (\d+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"{shlex.join(cmd[:3])} did not run: {proc.stderr[-1500:]}")
    note = ""
    if proc.returncode:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "rror" in ln]
        note = f"FAILED (exit {proc.returncode}): {lines[-1][:160] if lines else ''}"
        print(f"  ! {shlex.join(cmd[:4])}: {note}", file=sys.stderr)
    return float(match.group(1)), int(match.group(2)) / 1024, note


# ----------------------------------------------------------------------------- emulator


class Emulator:
    """``xnat-emulator serve`` in its own process."""

    def __init__(self, data_dir: Path, quiet: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xnat_prefect.testing.cli",
                "serve",
                "--port",
                "0",
                "--dicom-port",
                "0",
                "--data-dir",
                str(data_dir),
                "--rebuild-quiet-seconds",
                str(quiet),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"ready at (\S+), DICOM \S+@[\d.]+:(\d+)", line)
        if found is None:
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url, self.dicom_port = found.group(1), int(found.group(2))
        self.http = httpx.Client(base_url=self.url, auth=("admin", "admin"), timeout=120)

    def project(self, name: str) -> None:
        self.http.put(f"/data/projects/{name}").raise_for_status()

    def archived(self, project: str, expected: int, timeout: float = 600) -> str:
        """Wait until the project has a session with ``expected`` files; return its ID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.http.get(
                f"/data/projects/{project}/experiments", params={"format": "json"}
            ).json()["ResultSet"]["Result"]
            for row in rows:
                files = self.http.get(
                    f"/data/experiments/{row['ID']}/scans/ALL/files", params={"format": "json"}
                )
                if (
                    files.status_code == 200
                    and len(files.json()["ResultSet"]["Result"]) == expected
                ):
                    return str(row["ID"])
            time.sleep(0.5)
        raise RuntimeError(f"{project}: no session with {expected} files after {timeout} s")

    def delete_sessions(self, project: str) -> None:
        rows = self.http.get(
            f"/data/projects/{project}/experiments", params={"format": "json"}
        ).json()["ResultSet"]["Result"]
        for row in rows:
            self.http.delete(
                f"/data/projects/{project}/subjects/SUBJ/experiments/{row['ID']}",
                params={"removeFiles": "true"},
            )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# ----------------------------------------------------------------------------- main


def merge(rows: list[Row]) -> list[Row]:
    """One row per (what, tool): median seconds (range in the notes), max peak RSS."""
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


def build_tar(files: list[Path], root: Path, target: Path) -> None:
    with tarfile.open(target, "w") as tf:
        for path in files:
            tf.add(path, path.relative_to(root).as_posix())


def write_doc(rows: list[Row], header: list[str]) -> None:
    table = [
        "| what | tool | seconds | MB/s | peak RSS MB | RSS before MB | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    table += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    section = "\n".join([SECTION, "", *header, "", *table, ""])
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if SECTION in text:
        start = text.index(SECTION)
        following = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[following + 1 :] if following >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="number of DICOM files")
    parser.add_argument("--file-bytes", type=int, default=130_000)
    parser.add_argument("--xnatctl", default=None, help="path of an xnatctl executable")
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=3.0,
        help="emulator quiet time before a received session is archived",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per transfer (median)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    from xnat_prefect.testing.synthetic import generate_study

    work = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    rows: list[Row] = []
    try:
        series = 10
        study = generate_study(
            work / "src",
            project=STUDY_PROJECT,
            subject="SUBJ",
            session="SESS",
            series=series,
            instances_per_series=max(1, args.files // series),
            target_file_bytes=args.file_bytes,
        )
        files, total = study.files, study.total_bytes
        print(f"study: {len(files)} files, {total / MB:.1f} MB in {work / 'src'}")
        build_tar(files, work / "src", work / "prebuilt.tar")
        emu = Emulator(work / "emu", args.quiet_seconds)
        try:
            for number in range(args.repeat):
                tag = f"R{number}"
                print(f"repetition {number + 1}/{args.repeat}", flush=True)
                rows += bench_ingest(emu, work, files, total, args.xnatctl, tag)
                rows += bench_download(emu, work, files, total, args.xnatctl, tag)
        finally:
            emu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python bench/transfers.py " + shlex.join(sys.argv[1:])
    header = [
        f"Command: `{command.strip()}` — {len(files)} files, {total / MB:.0f} MB; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "Emulator in its own process on loopback (it shares the CPUs). Each transfer runs in a "
        "fresh process; peak RSS is that process's maximum resident set. Upload times end when "
        f"the last request returns; the archive is then checked (not timed). {WORKERS} workers "
        "everywhere. Our uploads run with the ledger off except the 're-run' row. "
        "This VM is shared with other workloads: repeated runs differ by up to 2x, so compare "
        "rows of one run, not runs.",
    ]
    if args.xnatctl is None:
        header.append("xnatctl rows: not run (pass --xnatctl PATH).")
    rows = merge(rows)
    for row in rows:
        print(" | ".join(row.cells()))
    if not args.no_docs:
        write_doc(rows, header)
    return 0


def bench_ingest(
    emu: Emulator, work: Path, files: list[Path], total: int, xnatctl: str | None, tag: str
) -> list[Row]:
    rows: list[Row] = []
    n = len(files)
    src = str(work / "src")
    env = {
        **os.environ,
        "XNAT_URL": emu.url,
        "XNAT_USER": "admin",
        "XNAT_PASS": "admin",
        "HOME": str(work / "home"),
        "NO_COLOR": "1",
    }
    (work / "home").mkdir(exist_ok=True)
    ledger = str(work / "ledger.sqlite")
    for kind, label in (
        ("tar", "parallel tar (streamed)"),
        ("zip", "parallel zip (on disk)"),
        ("gradual", "gradual-DICOM"),
    ):
        project = f"OURS_{kind.upper()}{tag}"
        emu.project(project)
        spec = {"kind": kind, "url": emu.url, "src": src, "project": project}
        if kind == "tar":
            spec["ledger"] = ledger
        got = run_ours(spec)
        emu.archived(project, n)
        rows.append(
            Row(
                f"ingest: {label}",
                "xnat-prefect",
                got["seconds"],
                total,
                got["rss_mb"],
                got["base_mb"],
            )
        )
        if kind == "tar":
            again = run_ours(spec)
            rows.append(
                Row(
                    "ingest: re-run of the tar ingest (ledger)",
                    "xnat-prefect",
                    again["seconds"],
                    0,
                    again["rss_mb"],
                    again["base_mb"],
                    f"sent {again['detail']['uploaded']} files",
                )
            )
        if xnatctl:
            project = f"XCTL_{kind.upper()}{tag}"
            emu.project(project)
            cmd = [
                xnatctl,
                "-q",
                "session",
                "upload",
                src,
                "-P",
                project,
                "-S",
                "SUBJ",
                "-E",
                "SESS",
                "--mode",
                kind,
                "-w",
                str(WORKERS),
            ]
            seconds, rss, failure = run_timed(cmd, env)
            settle(emu, project, n, failure)
            rows.append(
                Row(
                    f"ingest: {label}",
                    "xnatctl",
                    seconds,
                    total,
                    rss,
                    note=failure or "wall time incl. CLI start",
                )
            )
    # C-STORE: the files route themselves to BENCH/SUBJ/SESS (Patient Comments)
    emu.project(STUDY_PROJECT)
    emu.delete_sessions(STUDY_PROJECT)
    got = run_ours({"kind": "cstore", "url": emu.url, "src": src, "dicom_port": emu.dicom_port})
    emu.archived(STUDY_PROJECT, n)
    rows.append(
        Row("ingest: C-STORE", "xnat-prefect", got["seconds"], total, got["rss_mb"], got["base_mb"])
    )
    if xnatctl:
        emu.delete_sessions(STUDY_PROJECT)
        cmd = [
            xnatctl,
            "-q",
            "session",
            "upload-dicom",
            src,
            "--host",
            "127.0.0.1",
            "--called-aet",
            "XNAT",
            "--port",
            str(emu.dicom_port),
            "-w",
            str(WORKERS),
        ]
        seconds, rss, failure = run_timed(cmd, env)
        settle(emu, STUDY_PROJECT, n, failure)
        note = failure or "wall time incl. CLI start"
        rows.append(Row("ingest: C-STORE", "xnatctl", seconds, total, rss, note=note))
    emu.project(f"RAW{tag}")
    query = (
        f"import-handler=DICOM-zip&project=RAW{tag}&subject=SUBJ&session=SESS&overwrite=delete"
        "&Direct-Archive=true&Ignore-Unparsable=true"
    )
    tar_size = (work / "prebuilt.tar").stat().st_size
    seconds, rss, failure = run_timed(
        [
            "curl",
            "-sS",
            "-f",
            "-u",
            "admin:admin",
            "--data-binary",
            f"@{work / 'prebuilt.tar'}",
            "-H",
            "Content-Type: application/x-tar",
            f"{emu.url}/data/services/import?{query}",
        ]
    )
    settle(emu, f"RAW{tag}", n, failure)
    rows.append(
        Row(
            "ingest: one tar POST (raw limit)",
            "curl --data-binary",
            seconds,
            tar_size,
            rss,
            note=failure or "one request, one connection; curl reads the body into memory",
        )
    )
    return rows


def settle(emu: Emulator, project: str, expected: int, failure: str) -> None:
    """Wait for the archive (checks the file count), or just for quiet after a failed run."""
    if not failure:
        emu.archived(project, expected)
    else:
        time.sleep(10)


def bench_download(
    emu: Emulator, work: Path, files: list[Path], total: int, xnatctl: str | None, tag: str
) -> list[Row]:
    rows: list[Row] = []
    session = emu.archived(f"OURS_TAR{tag}", len(files))
    got = run_ours(
        {"kind": "download", "url": emu.url, "session": session, "out": str(work / f"dl-ours{tag}")}
    )
    rows.append(
        Row(
            "download: session (scan zips + GET fallback, verify)",
            "xnat-prefect",
            got["seconds"],
            got["detail"]["bytes_received"],
            got["rss_mb"],
            got["base_mb"],
        )
    )
    got = run_ours(
        {
            "kind": "download",
            "url": emu.url,
            "session": session,
            "workers": 8,
            "out": str(work / f"dl-ours-8{tag}"),
        }
    )
    rows.append(
        Row(
            "download: session (scan zips + GET fallback, verify), 8 workers",
            "xnat-prefect",
            got["seconds"],
            got["detail"]["bytes_received"],
            got["rss_mb"],
            got["base_mb"],
        )
    )
    got = run_ours(
        {
            "kind": "download-zip",
            "url": emu.url,
            "session": session,
            "out": str(work / f"dl-ours-zip{tag}"),
        }
    )
    rows.append(
        Row(
            "download: all scans, one zip",
            "xnat-prefect",
            got["seconds"],
            got["detail"]["bytes_received"],
            got["rss_mb"],
            got["base_mb"],
        )
    )
    target = work / "raw.zip"
    seconds, rss, failure = run_timed(
        [
            "curl",
            "-sS",
            "-f",
            "-u",
            "admin:admin",
            "-o",
            str(target),
            f"{emu.url}/data/experiments/{session}/scans/ALL/files?format=zip",
        ]
    )
    rows.append(
        Row("download: all scans, one zip (raw limit)", "curl", seconds, target.stat().st_size, rss)
    )
    if xnatctl:
        env = {
            **os.environ,
            "XNAT_URL": emu.url,
            "XNAT_USER": "admin",
            "XNAT_PASS": "admin",
            "HOME": str(work / "home"),
            "NO_COLOR": "1",
        }
        out = work / f"dl-xnatctl{tag}"
        seconds, rss, failure = run_timed(
            [
                xnatctl,
                "-q",
                "session",
                "download",
                "-E",
                session,
                "--out",
                str(out),
                "-w",
                str(WORKERS),
            ],
            env,
        )
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0
        rows.append(
            Row(
                "download: session, per-scan zips",
                "xnatctl",
                seconds,
                size,
                rss,
                note=failure or "wall time incl. CLI start; bytes = what it left on disk",
            )
        )
    _ = total
    return rows


if __name__ == "__main__":
    sys.exit(main())
