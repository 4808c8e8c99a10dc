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

Each measured transfer runs in a fresh process under ``/usr/bin/time``, so "peak RSS" is that
process's own maximum resident set (``%M``; for our runs also the child's ``VmHWM``, the larger
of the two is used); our rows also show the RSS right before the transfer started. The parts:
``_transfers_child`` (our runs), ``_transfers_work`` (the workloads), ``_transfers_report``
(rows and table) and ``_measure`` (helpers shared with ``bench/scale.py``). After each ingest
the bench waits until the emulator has archived the session and checks its file count (not timed).
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
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _measure import Emulator
from _transfers_child import WORKERS, child
from _transfers_report import MB, Row, merge, write_doc
from _transfers_work import STUDY_PROJECT, Workloads


def build_tar(files: list[Path], root: Path, target: Path) -> None:
    """Write the uncompressed tar the raw-limit row POSTs, with paths relative to ``root``."""
    with tarfile.open(target, "w") as tf:
        for path in files:
            tf.add(path, path.relative_to(root).as_posix())


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
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
    return parser.parse_args()


def main() -> int:
    """Generate the study, run every transfer ``--repeat`` times, print and write the table."""
    args = _args()
    if args.child:
        child(json.loads(args.child))
        return 0
    from xnat_prefect.testing.synthetic import generate_study

    work = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    rows: list[Row] = []
    loads: list[str] = []
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
        emu = Emulator(work / "emu", quiet_seconds=args.quiet_seconds)
        try:
            bench = Workloads(emu, work, files, total, xnatctl=args.xnatctl)
            for number in range(args.repeat):
                before = os.getloadavg()[0]
                print(f"repetition {number + 1}/{args.repeat}", flush=True)
                rows += bench.ingest(f"R{number}") + bench.download(f"R{number}")
                loads.append(f"{before:.1f} → {os.getloadavg()[0]:.1f}")
        finally:
            emu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python bench/transfers.py " + shlex.join(sys.argv[1:])
    header = [
        f"Command: `{command.strip()}` — {len(files)} files, {total / MB:.0f} MB; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "Emulator in its own process on loopback (it shares the CPUs). Each transfer runs in a "
        "fresh process; peak RSS is that process's own maximum resident set in MiB "
        "(`/usr/bin/time -f %M`, and for ours also its `VmHWM`). Upload times end when "
        f"the last request returns; the archive is then checked (not timed). {WORKERS} workers "
        "everywhere. Our uploads run with the ledger off except the 're-run' row. "
        "This VM is shared with other workloads: repeated runs differ by up to 2x, so compare "
        "rows of one run, not runs. 1-minute load average at the start and end of each "
        f"repetition: {'; '.join(loads)}.",
    ]
    if args.xnatctl is None:
        header.append("xnatctl rows: not run (pass --xnatctl PATH).")
    rows = merge(rows)
    for row in rows:
        print(" | ".join(row.cells()))
    if not args.no_docs:
        write_doc(rows, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
