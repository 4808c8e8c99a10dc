"""Where the time of one transfer goes: client CPU, emulator CPU, requests and a profile.

An investigation aid for ``bench/transfers.py`` rows (not part of its table). For each
``--kind`` and repetition it runs, against one emulator (own process, loopback):

* ours (``_transfers_child``; with ``--profile DIR`` under ``cProfile``, stats dumped there);
* the same transfer by the xnatctl CLI when ``--xnatctl`` is given (gradual, tar, zip);
* for ``tar``: one ``curl --data-binary`` POST of a prebuilt tar (the raw limit), and
  ``--split N`` such POSTs of N round-robin tars run at once (how the server takes N streams);
* for ``gradual``: a bare loop (``WORKERS`` threads, one plain ``httpx.Client`` each, the
  JSESSION cookie, one POST per file), the floor of a per-file client.

and prints wall seconds, the client's CPU seconds, the emulator's CPU seconds (from
``/proc/PID/stat``) and the emulator's request counts and bytes per route for that transfer.

Example:
    ```bash
    python bench/transfers_probe.py --kind gradual tar --xnatctl /tmp/bench-venv/bin/xnatctl
    python bench/transfers_probe.py --kind gradual --repeat 1 --sample /tmp/samples
    ```
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _measure import Emulator, run_timed
from _transfers_child import WORKERS, run_ours

TICKS = os.sysconf("SC_CLK_TCK")


def _emu_cpu(emu: Emulator) -> float:
    fields = Path(f"/proc/{emu.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _measured(emu: Emulator, label: str, run: Callable[[], tuple[float, float]]) -> None:
    """Run one transfer; print wall, client CPU, emulator CPU and the emulator's counters."""
    emu.http.post("/emulator/metrics/reset").raise_for_status()
    before = _emu_cpu(emu)
    seconds, cpu = run()
    server = _emu_cpu(emu) - before
    got = emu.metrics()
    routes = {
        route: f"{count} req, {got['bytes_in'].get(route, 0) / 1e6:.1f} MB in"
        for route, count in sorted(got["requests"].items())
    }
    print(
        f"{label:28s} wall {seconds:6.2f} s | client CPU {cpu:5.2f} s | emulator CPU "
        f"{server:5.2f} s | max in flight {got['max_total_in_flight']} | logins "
        f"{got['logins']} | {json.dumps(routes)}",
        flush=True,
    )


def _bare_gradual(url: str, files: list[Path], params: dict[str, str]) -> tuple[float, float]:
    """``WORKERS`` threads, each with one plain client, POST the files one by one."""
    login = httpx.post(f"{url}/data/JSESSION", auth=("admin", "admin"))
    cookie = {"JSESSIONID": login.text.strip()}
    queue = list(reversed(files))
    lock = threading.Lock()
    failures: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=url, cookies=cookie, timeout=600) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    path = queue.pop()
                with path.open("rb") as body:
                    reply = client.post(
                        "/data/services/import",
                        params=params,
                        content=body,
                        headers={"Content-Type": "application/dicom"},
                    )
                if reply.status_code != 200:
                    failures.append(reply.status_code)

    start, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"  ! bare gradual: {len(failures)} failures {sorted(set(failures))}")
    return time.perf_counter() - start, time.process_time() - cpu


def _curl_tars(url: str, tars: list[Path], project: str) -> tuple[float, float]:
    """POST each tar with its own ``curl --data-binary`` at once; wall and summed CPU."""
    query = (
        f"import-handler=DICOM-zip&project={project}&subject=SUBJ&session=SESS"
        "&overwrite=append&Direct-Archive=true&Ignore-Unparsable=true"
    )
    start = time.perf_counter()
    before = os.times()
    procs = [
        subprocess.Popen(
            [
                *("curl", "-sS", "-f", "-u", "admin:admin", "--data-binary", f"@{tar}"),
                *("-H", "Content-Type: application/x-tar", "-o", "/dev/null"),
                f"{url}/data/services/import?{query}",
            ]
        )
        for tar in tars
    ]
    codes = [proc.wait() for proc in procs]
    after = os.times()
    if any(codes):
        print(f"  ! curl exit codes {codes}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return time.perf_counter() - start, cpu


def _tars(files: list[Path], root: Path, work: Path, count: int) -> list[Path]:
    """``count`` uncompressed tars of the files, dealt round-robin (as our batches are)."""
    paths = []
    for number in range(count):
        path = work / f"split-{count}-{number}.tar"
        with tarfile.open(path, "w") as archive:
            for file in files[number::count]:
                archive.add(file, file.relative_to(root).as_posix())
        paths.append(path)
    return paths


def main() -> int:
    """Probe each ``--kind`` ``--repeat`` times (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kind", nargs="+", default=["gradual", "tar"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--xnatctl", default=None)
    parser.add_argument("--profile", default=None, help="folder for cProfile stats of ours")
    parser.add_argument("--sample", default=None, help="folder for stack samples of ours")
    parser.add_argument("--nohash", action="store_true", help="also ours without MD5 hashing")
    parser.add_argument("--split", type=int, nargs="*", default=[WORKERS])
    args = parser.parse_args()
    from xnat_prefect.testing.synthetic import generate_study

    work = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    try:
        src = work / "src"
        study = generate_study(
            src,
            project="BENCH",
            subject="SUBJ",
            session="SESS",
            series=10,
            instances_per_series=args.files // 10,
            target_file_bytes=130_000,
        )
        files = sorted(study.files)
        tars = {n: _tars(files, src, work, n) for n in {1, *args.split}}
        emu = Emulator(work / "emu", quiet_seconds=3.0)
        env = {**os.environ, "XNAT_URL": emu.url, "XNAT_USER": "admin", "XNAT_PASS": "admin"}
        env |= {"HOME": str(work), "NO_COLOR": "1"}
        try:
            for rep in range(args.repeat):
                print(f"-- repetition {rep + 1}, load {os.getloadavg()[0]:.1f}", flush=True)
                for kind in args.kind:
                    probe(emu, kind, f"{kind}{rep}", args, src=src, files=files, env=env)
                    if kind == "tar":
                        for count, paths in sorted(tars.items()):
                            project = f"CURL{count}R{rep}"
                            emu.project(project)
                            curl = functools.partial(_curl_tars, emu.url, paths, project)
                            _measured(emu, f"curl, {count} tar(s) at once", curl)
                            emu.archived(project, len(files))
        finally:
            emu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def probe(
    emu: Emulator,
    kind: str,
    tag: str,
    args: argparse.Namespace,
    *,
    src: Path,
    files: list[Path],
    env: dict[str, str],
) -> None:
    """Ours, xnatctl and (gradual) the bare loop for one kind, each into a fresh project."""
    project = f"OURS{tag.upper()}"
    emu.project(project)
    spec: dict[str, Any] = {"kind": kind, "url": emu.url, "src": str(src), "project": project}
    for option, suffix in (("profile", "prof"), ("sample", "json")):
        if getattr(args, option):
            Path(getattr(args, option)).mkdir(parents=True, exist_ok=True)
            spec[option] = str(Path(getattr(args, option)) / f"{tag}.{suffix}")

    def ours() -> tuple[float, float]:
        got = run_ours(spec)
        return got["seconds"], got["cpu_s"]

    extra = " (cProfile)" if args.profile else " (sampled)" if args.sample else ""
    _measured(emu, f"ours {kind}{extra}", ours)
    emu.archived(project, len(files))
    if args.nohash:
        project = f"NOMD5{tag.upper()}"
        emu.project(project)
        spec = {**spec, "project": project, "nohash": True}
        _measured(emu, f"ours {kind}, no MD5", ours)
        emu.archived(project, len(files))
    if kind == "gradual":
        project = f"BARE{tag.upper()}"
        emu.project(project)
        params = {"import-handler": "gradual-DICOM", "PROJECT_ID": project}
        params |= {"SUBJECT_ID": "SUBJ", "EXPT_LABEL": "SESS", "Direct-Archive": "true"}
        _measured(emu, "bare httpx loop", lambda: _bare_gradual(emu.url, files, params))
        emu.archived(project, len(files))
    if args.xnatctl and kind in ("gradual", "tar", "zip"):
        project = f"XCTL{tag.upper()}"
        emu.project(project)
        cmd = [args.xnatctl, "-q", "session", "upload", str(src), "-P", project, "-S", "SUBJ"]
        cmd += ["-E", "SESS", "--mode", kind, "-w", str(WORKERS)]

        def theirs() -> tuple[float, float]:
            run = run_timed(cmd, env)
            return run.seconds, run.cpu_seconds

        _measured(emu, f"xnatctl {kind} (incl. start)", theirs)
        emu.archived(project, len(files))


if __name__ == "__main__":
    sys.exit(main())
