"""On-demand benchmark: client memory with transfer size, and time with file count.

Two measurements against the emulator (``xnat-emulator serve`` in its own process, loopback),
each transfer run in a fresh child process whose peak resident set is reported by
``/usr/bin/time -f %M`` (the kernel's ``ru_maxrss`` of that child alone, so emulator memory is
not counted) and cross-checked with the child's own ``VmHWM``:

a. **memory vs size**: one file of random bytes (default 256 MiB and 1 GiB, side by side in each
   run) uploaded with ``UploadService.upload_resource`` and downloaded with
   ``DownloadService.download_resource`` (one server-made zip) and ``download_session``
   (per-file GET, MD5 verified); plus a DICOM ingest of the same volume in ~8 MB files with
   ``upload_dicom_parallel`` (zip archives built on disk). Target: peak RSS ≤ 250 MB and the
   same at both sizes.
b. **time vs file count**: 1,000 and 10,000 synthetic DICOM files (~130 kB, 10 series) ingested
   with ``upload_dicom_parallel`` (zip), ``upload_dicom_gradual`` and ``upload_dicom_store``
   (C-STORE), then downloaded with ``download_session`` (verify on). Target: time per file the
   same at both counts, peak RSS flat.

Every transfer is checked (file counts archived, bytes and MD5 downloaded), not timed. Data
lives in one temp folder (removed at the end, also on failure); at the default sizes it peaks at
about 6 GB. Results go to stdout and the ``## Scale: memory and file count`` section of
``docs/performance.md``.

Example:
    ```bash
    python bench/scale.py --repeat 2
    python bench/scale.py --big-mb 64 256 --counts 200 2000 --no-cstore --no-docs  # quick
    python bench/scale.py --no-size --transports gradual download --repeat 1 --no-docs
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from _measure import Emulator as MeasureEmulator
from _measure import status_mib
from _scale_report import (
    DOC,
    FILE_BYTES,
    MIB,
    SERIES,
    WORKERS,
    Results,
    Run,
    render,
    write_doc,
)

REPO = Path(__file__).resolve().parent.parent
BIG_DICOM_BYTES = 8_000_000


# ----------------------------------------------------------------------------- child side


def _operation(spec: dict[str, Any]) -> Any:
    """Run the one transfer ``spec`` names; returns its summary."""
    from xnat_prefect.client import XNATClient
    from xnat_prefect.services.downloads import DownloadService
    from xnat_prefect.services.uploads import UploadService

    client = XNATClient(spec["url"], "admin", "admin", timeout=1800)
    uploads = UploadService(client, ledger=False)
    downloads = DownloadService(client, ledger=False)
    kind, src, out = spec["kind"], Path(spec.get("src", ".")), Path(spec.get("out", "."))
    base = status_mib("VmRSS")
    start = time.perf_counter()
    with client:
        if kind == "resource-up":
            result: Any = uploads.upload_resource(spec["session"], spec["label"], src)
        elif kind == "resource-zip":
            result = downloads.download_resource(spec["session"], spec["label"], out)
        elif kind == "session-dl":
            result = downloads.download_session(spec["session"], out, workers=WORKERS, verify=True)
        elif kind == "zip":
            result = uploads.upload_dicom_parallel(
                src,
                spec["project"],
                "SUBJ",
                spec["label"],
                upload_workers=WORKERS,
                archive_workers=WORKERS,
                archive_format="zip",
            )
        elif kind == "gradual":
            result = uploads.upload_dicom_gradual(
                src, spec["project"], "SUBJ", spec["label"], workers=WORKERS
            )
        elif kind == "cstore":
            result = uploads.upload_dicom_store(
                src, "127.0.0.1", "XNAT", port=spec["dicom_port"], workers=WORKERS
            )
        else:
            raise SystemExit(f"unknown kind {kind}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "base_mb": base, "summary": result}


def child(spec: dict[str, Any]) -> None:
    """Run one transfer in this fresh process and print one JSON result line."""
    got = _operation(spec)
    summary = got.pop("summary")
    detail = summary.model_dump(mode="json", exclude={"paths", "errors", "failures"})
    errors = getattr(summary, "errors", None) or getattr(summary, "failures", [])
    detail["errors"] = [list(e) for e in errors[:5]]
    got["hwm_mb"] = status_mib("VmHWM")
    ok = bool(summary.success) and (spec["kind"] != "session-dl" or bool(summary.verified))
    print(json.dumps({**got, "ok": ok, "detail": detail}), flush=True)


# ----------------------------------------------------------------------------- parent side


def run_child(spec: dict[str, Any]) -> Run:
    """Run ``spec`` in a child process under ``/usr/bin/time``, which reports its peak RSS.

    The child is forked from ``time`` (a ~2 MB process), not from this one: a child's
    ``ru_maxrss`` also counts the RSS of the process it was forked from (Linux keeps the
    pre-exec high-water mark), and this process holds generated data. The child also reports
    its own ``VmHWM``; the larger of the two is used.
    """
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "@@RSS %M", sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"@@RSS (\d+)", proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines or found is None:
        raise RuntimeError(f"child {spec['kind']} failed: {proc.stderr[-2000:]}")
    got = json.loads(lines[-1])
    if not got["ok"]:
        raise RuntimeError(f"{spec['kind']} reported failures: {got['detail']}")
    peak = max(int(found.group(1)) / 1024, got["hwm_mb"])
    return Run(got["seconds"], peak, got["base_mb"], got["detail"])


class Emulator(MeasureEmulator):
    """``xnat-emulator serve`` in its own process (``bench/_measure.py``), plus empty sessions."""

    def empty_session(self, project: str, label: str) -> str:
        """Create an MR session with no scans; returns its ID."""
        self.project(project)
        self.http.put(f"/data/projects/{project}/subjects/SUBJ").raise_for_status()
        self.http.put(
            f"/data/projects/{project}/subjects/SUBJ/experiments/{label}",
            params={"xsiType": "xnat:mrSessionData"},
        ).raise_for_status()
        for row in self.rows(f"/data/projects/{project}/experiments"):
            if row.get("label") == label:
                return str(row["ID"])
        raise RuntimeError(f"session {project}/{label} was not created")


def random_file(path: Path, nbytes: int) -> Path:
    """Write ``nbytes`` of random data (incompressible, like pixel data) in 1 MiB pieces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = nbytes
        while left:
            piece = min(left, MIB)
            out.write(os.urandom(piece))
            left -= piece
    return path


def _clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _add(results: Results, row: str, key: int, run: Run) -> None:
    results.setdefault(row, {}).setdefault(key, []).append(run)
    print(
        f"  {row} @ {key}: {run.seconds:.2f} s, peak RSS {run.peak_mb:.0f} MB "
        f"(before {run.base_mb:.0f})",
        flush=True,
    )


# ----------------------------------------------------------------------------- (a) size


def bench_size(
    emu: Emulator,
    work: Path,
    sizes: list[int],
    rep: int,
    results: Results,
    dicom_bytes: dict[int, int],
) -> None:
    """Upload and download one big file, and ingest a DICOM study, of each size."""
    from xnat_prefect.testing.synthetic import generate_study

    for size in sizes:
        label, folder = f"B{size // MIB}R{rep}", work / f"big-{size // MIB}"
        src = folder / "blob.bin"
        if not src.exists():
            random_file(src, size)
        session = emu.empty_session("BIG", label)
        spec: dict[str, Any] = {"url": emu.url, "session": session, "label": "BLOB"}
        up = run_child({**spec, "kind": "resource-up", "src": str(src)})
        if up.detail["bytes_sent"] != size:
            raise RuntimeError(f"resource upload sent {up.detail['bytes_sent']} of {size} bytes")
        _add(results, "upload: resource file (`upload_resource`)", size, up)
        out = work / "dl"
        zipped = run_child({**spec, "kind": "resource-zip", "out": str(out)})
        with zipfile.ZipFile(out / "BLOB.zip") as bundle:
            inside = [info.file_size for info in bundle.infolist()]
        if inside != [size]:
            raise RuntimeError(f"resource zip holds {inside}, expected one file of {size} bytes")
        _add(results, "download: resource as one zip (`download_resource`)", size, zipped)
        _clear(out)
        per_file = run_child({**spec, "kind": "session-dl", "out": str(out)})
        if per_file.detail["bytes_received"] != size:
            raise RuntimeError(f"session download got {per_file.detail['bytes_received']} bytes")
        _add(results, "download: `download_session` (GET + MD5 verify)", size, per_file)
        _clear(out)
        emu.delete_session(session)
        per_series = max(1, size // BIG_DICOM_BYTES // SERIES)
        dicom = folder / "dicom"
        if not dicom.exists():
            dicom_bytes[size] = generate_study(
                dicom,
                project="BIGDCM",
                subject="SUBJ",
                session="SESS",
                series=SERIES,
                instances_per_series=per_series,
                target_file_bytes=BIG_DICOM_BYTES,
                seed=7,
            ).total_bytes
        emu.project("BIGDCM")
        ingest = run_child(
            {"url": emu.url, "kind": "zip", "src": str(dicom), "project": "BIGDCM", "label": label}
        )
        ingest.nbytes = dicom_bytes[size]
        emu.delete_session(emu.archived("BIGDCM", per_series * SERIES, label=label))
        row = "ingest: `upload_dicom_parallel` (zip), DICOM files of ~8 MB"
        _add(results, row, size, ingest)


# ----------------------------------------------------------------------------- (b) count


TRANSPORTS = ("zip", "gradual", "cstore", "download")


def bench_count(
    emu: Emulator,
    work: Path,
    counts: list[int],
    rep: int,
    results: Results,
    *,
    transports: tuple[str, ...] = TRANSPORTS,
) -> None:
    """Ingest and download studies of each file count with the chosen transports.

    ``download`` fetches the session the zip ingest archived: without ``zip`` in
    ``transports`` that ingest still runs (to make the session) but is not reported.
    """
    from xnat_prefect.testing.synthetic import generate_study

    for count in counts:
        src = work / f"n{count}"
        if not src.exists():
            generate_study(
                src,
                project="SCALEC",
                subject="SUBJ",
                session=f"S{count}",
                series=SERIES,
                instances_per_series=count // SERIES,
                target_file_bytes=FILE_BYTES,
                seed=count,
            )
        n = SERIES * (count // SERIES)
        kept = ""
        for kind, row in (
            ("zip", "ingest: `upload_dicom_parallel` (zip)"),
            ("gradual", "ingest: `upload_dicom_gradual`"),
        ):
            needed = kind == "zip" and "download" in transports
            if kind not in transports and not needed:
                continue
            project, label = f"SCALE{kind[0].upper()}", f"{kind[0].upper()}{count}R{rep}"
            emu.project(project)
            run = run_child(
                {"url": emu.url, "kind": kind, "src": str(src), "project": project, "label": label}
            )
            if kind in transports:
                _add(results, row, count, run)
            session = emu.archived(project, n, label=label)
            if kind == "zip":
                kept = session
            else:
                emu.delete_session(session)
        if "cstore" in transports:
            emu.project("SCALEC")
            run = run_child(
                {"url": emu.url, "kind": "cstore", "src": str(src), "dicom_port": emu.dicom_port}
            )
            _add(results, "ingest: `upload_dicom_store` (C-STORE)", count, run)
            emu.delete_session(emu.archived("SCALEC", n, label=f"S{count}"))
        if not kept:
            continue
        if "download" not in transports:
            emu.delete_session(kept)
            continue
        out = work / "dl"
        run = run_child({"url": emu.url, "kind": "session-dl", "session": kept, "out": str(out)})
        on_disk = sum(1 for p in out.rglob("*.dcm"))
        if on_disk != n:
            raise RuntimeError(f"download left {on_disk} of {n} DICOM files")
        _add(results, "download: `download_session` (verify)", count, run)
        _clear(out)
        emu.delete_session(kept)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--big-mb", type=int, nargs="+", default=[256, 1024], help="MiB sizes")
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=2, help="runs of every measurement")
    parser.add_argument("--no-size", action="store_true", help="skip (a), memory vs size")
    parser.add_argument("--no-count", action="store_true", help="skip (b), time vs file count")
    parser.add_argument("--no-cstore", action="store_true", help="skip C-STORE in (b)")
    parser.add_argument(
        "--transports",
        nargs="+",
        choices=TRANSPORTS,
        default=list(TRANSPORTS),
        help="transfers measured in (b) (download also runs the zip ingest, unreported)",
    )
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    sizes = sorted(mb * MIB for mb in args.big_mb)
    counts = sorted(args.counts)
    transports = tuple(t for t in args.transports if not (t == "cstore" and args.no_cstore))
    results: Results = {}
    dicom_bytes: dict[int, int] = {}
    loads: list[str] = []
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        emu = Emulator(work / "emu")
        try:
            for rep in range(args.repeat):
                before = os.getloadavg()[0]
                print(f"run {rep + 1}/{args.repeat}", flush=True)
                if not args.no_size:
                    bench_size(emu, work, sizes, rep, results, dicom_bytes)
                if not args.no_count:
                    bench_count(emu, work, counts, rep, results, transports=transports)
                loads.append(f"run {rep + 1}: {before:.1f} → {os.getloadavg()[0]:.1f}")
        finally:
            emu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = shlex.join(["python", "bench/scale.py", *sys.argv[1:]])
    minutes = (time.perf_counter() - started) / 60
    section = render(results, sizes, counts, command=command, loads=loads, minutes=minutes)
    print(section)
    if not args.no_docs:
        write_doc(section)
        print(f"updated {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
