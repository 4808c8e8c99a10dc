"""On-demand benchmark of the XNAT emulator (``xnat_prefect.testing``), over real loopback sockets.

a. boot: ``XNATEmulator.start()`` until ``/emulator/health`` answers and the C-STORE receiver
   answers a C-ECHO, over 10 starts (median, max); plus the round trip of a small request on a
   kept-alive HTTP connection (median of 50);
b. DICOM-zip import: a STORED zip of synthetic ~130 kB files posted raw to
   ``/data/services/import`` (``Content-Type: application/zip``) into an auto-archive project,
   timed until the session is archived (the emulator's quiet window included);
c. gradual-DICOM: single files posted by 4 threads (files/s);
d. C-STORE: pynetdicom sending synthetic files over one association (files/s);
e. zip download of the session archived in (b), deflated (the default) and stored (MB/s).

Every step checks the server state it produced (all files archived, zip complete). The figures
are printed and, unless ``--no-docs``, written to the ``## Emulator`` section of
``docs/performance.md`` (created if missing; other sections are kept).

Example:
    ```bash
    python bench/emulator.py            # ~200 MB import; under a minute on a 2-CPU VM
    python bench/emulator.py --small    # ~40 MB import
    ```
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from xnat_prefect.testing import Timing, XNATEmulator
from xnat_prefect.testing.synthetic import StudyManifest, generate_study

REPO = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = REPO / "docs" / "performance.md"
SECTION = "## Emulator"
IMPORT = "/data/services/import"
FILE_BYTES = 130_000
PER_SERIES = 150
MB = 1_000_000
QUIET_SECONDS = 0.5  # Timing.rebuild_quiet_seconds during the run
SWEEP_SECONDS = 0.05  # Timing.sweep_interval_seconds during the run


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (file counts are multiples of ``PER_SERIES``)."""

    boots: int
    zip_files: int
    gradual_files: int
    cstore_files: int
    threads: int = 4
    round_trips: int = 50


FULL = Sizes(boots=10, zip_files=1500, gradual_files=600, cstore_files=600)
SMALL = Sizes(boots=10, zip_files=300, gradual_files=300, cstore_files=300)


@dataclass
class Results:
    """Every figure of a run: seconds, byte and file counts."""

    boot_seconds: list[float] = field(default_factory=list)
    round_trip_seconds: list[float] = field(default_factory=list)
    zip_files: int = 0
    zip_bytes: int = 0
    zip_post_seconds: float = 0.0
    zip_archived_seconds: float = 0.0
    gradual_files: int = 0
    gradual_bytes: int = 0
    gradual_seconds: float = 0.0
    cstore_files: int = 0
    cstore_bytes: int = 0
    cstore_seconds: float = 0.0
    download_bytes: int = 0
    download_entries: int = 0
    download_seconds: float = 0.0
    stored_bytes: int = 0
    stored_seconds: float = 0.0


class BenchError(RuntimeError):
    """A step did not leave the server in the expected state."""


# --------------------------------------------------------------------------- helpers


def _timing() -> Timing:
    return Timing(rebuild_quiet_seconds=QUIET_SECONDS, sweep_interval_seconds=SWEEP_SECONDS)


def _open_session(url: str) -> httpx.Client:
    """A client holding one JSESSION (no Basic auth per request, so no session churn)."""
    client = httpx.Client(base_url=url, timeout=600.0)
    reply = client.post("/data/JSESSION", auth=("admin", "admin"))
    if reply.status_code != 200:
        client.close()
        raise BenchError(f"login failed: {reply.status_code} {reply.text[:200]}")
    return client


@contextmanager
def _login(url: str) -> Iterator[httpx.Client]:
    client = _open_session(url)
    try:
        yield client
    finally:
        client.close()


def _create_project(client: httpx.Client, project: str) -> None:
    for path in (f"/data/projects/{project}", f"/data/projects/{project}/prearchive_code/4"):
        reply = client.put(path)
        if reply.status_code != 200:
            raise BenchError(f"PUT {path} answered {reply.status_code}: {reply.text[:200]}")


def _rows(client: httpx.Client, path: str) -> list[dict[str, str]]:
    reply = client.get(path, params={"format": "json"})
    reply.raise_for_status()
    rows: list[dict[str, str]] = reply.json()["ResultSet"]["Result"]
    return rows


def _wait_archived(client: httpx.Client, project: str, expected_files: int) -> None:
    """Poll until ``project`` holds one archived session with every file, nothing prearchived."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sessions = _rows(client, f"/data/projects/{project}/experiments")
        if sessions and not _rows(client, f"/data/prearchive/projects/{project}"):
            files = _rows(client, f"/data/experiments/{sessions[0]['ID']}/scans/ALL/files")
            if len(files) != expected_files:
                raise BenchError(f"{project}: {len(files)} of {expected_files} files archived")
            return
        time.sleep(0.02)
    raise BenchError(f"{project} was not archived within 600 s")


def _study(root: Path, project: str, files: int, seed: int) -> StudyManifest:
    return generate_study(
        root / project,
        project=project,
        subject=f"SUBJ_{project}",
        session=f"SESS_{project}",
        series=max(1, files // PER_SERIES),
        instances_per_series=min(files, PER_SERIES),
        target_file_bytes=FILE_BYTES,
        seed=seed,
    )


def _echo(port: int) -> None:
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="XNAT")
    if not assoc.is_established:
        raise BenchError("the C-STORE receiver refused the association")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0:
        raise BenchError("C-ECHO failed")


# --------------------------------------------------------------------------- measurements


def _measure_boot(sizes: Sizes, results: Results) -> None:
    for _ in range(sizes.boots):
        started = time.perf_counter()
        with XNATEmulator(timing=_timing()) as xnat:
            if httpx.get(f"{xnat.url}/emulator/health", timeout=10).status_code != 200:
                raise BenchError("health check failed")
            _echo(xnat.dicom_port)
            results.boot_seconds.append(time.perf_counter() - started)
    with XNATEmulator(enable_dicom=False) as xnat, httpx.Client(base_url=xnat.url) as client:
        for _ in range(sizes.round_trips + 1):
            started = time.perf_counter()
            client.get("/emulator/health").raise_for_status()
            results.round_trip_seconds.append(time.perf_counter() - started)
        del results.round_trip_seconds[0]  # the first request also opens the connection


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def _measure_zip_import(url: str, work: Path, sizes: Sizes, results: Results) -> str:
    project = "BENCHZIP"
    study = _study(work, project, sizes.zip_files, seed=11)
    archive = work / "study.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
        for path in study.files:
            bundle.write(path, path.relative_to(work / project).as_posix())
    size = archive.stat().st_size
    with _login(url) as client:
        _create_project(client, project)
        started = time.perf_counter()
        reply = client.post(
            IMPORT,
            params={"project": project, "subject": study.subject, "session": study.session},
            content=_chunks(archive),
            headers={"Content-Type": "application/zip", "Content-Length": str(size)},
        )
        posted = time.perf_counter()
        if reply.status_code != 200:
            raise BenchError(f"import answered {reply.status_code}: {reply.text[:300]}")
        _wait_archived(client, project, len(study.files))
        archived = time.perf_counter()
        experiment = _rows(client, f"/data/projects/{project}/experiments")[0]["ID"]
    results.zip_files, results.zip_bytes = len(study.files), size
    results.zip_post_seconds = posted - started
    results.zip_archived_seconds = archived - started
    return experiment


def _measure_gradual(xnat: XNATEmulator, work: Path, sizes: Sizes, results: Results) -> None:
    project = "BENCHGRAD"
    study = _study(work, project, sizes.gradual_files, seed=22)
    payloads = [path.read_bytes() for path in study.files]
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def send(body: bytes) -> str:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = _open_session(xnat.url)
            with lock:
                clients.append(client)
        reply = client.post(IMPORT, content=body, headers={"Content-Type": "application/dicom"})
        if reply.status_code != 200:
            raise BenchError(f"gradual-DICOM answered {reply.status_code}: {reply.text[:200]}")
        return reply.text.strip()

    with _login(xnat.url) as admin:
        _create_project(admin, project)
        xnat.set_timing(rebuild_quiet_seconds=30.0)  # stay RECEIVING while files arrive
        try:
            with ThreadPoolExecutor(max_workers=sizes.threads) as pool:
                started = time.perf_counter()
                uris = set(pool.map(send, payloads))
                elapsed = time.perf_counter() - started
        finally:
            for client in clients:
                client.close()
        if len(uris) != 1:
            raise BenchError(f"gradual-DICOM spread one study over {len(uris)} sessions")
        xnat.set_timing(rebuild_quiet_seconds=QUIET_SECONDS)
        _wait_archived(admin, project, len(payloads))
    results.gradual_files = len(payloads)
    results.gradual_bytes = sum(len(p) for p in payloads)
    results.gradual_seconds = elapsed


def _measure_cstore(xnat: XNATEmulator, work: Path, sizes: Sizes, results: Results) -> None:
    project = "BENCHSCP"
    study = _study(work, project, sizes.cstore_files, seed=33)
    datasets = [dcmread(path) for path in study.files]
    ae = AE(ae_title="BENCHSCU")
    for sop_class in {s.sop_class_uid for s in study.series.values()}:
        ae.add_requested_context(sop_class, study.transfer_syntax)
    with _login(xnat.url) as admin:
        _create_project(admin, project)
        assoc = ae.associate("127.0.0.1", xnat.dicom_port, ae_title=xnat.dicom_ae_title)
        if not assoc.is_established:
            raise BenchError("the C-STORE receiver refused the association")
        try:
            started = time.perf_counter()
            statuses = [assoc.send_c_store(dataset) for dataset in datasets]
            elapsed = time.perf_counter() - started
        finally:
            assoc.release()
        failed = sum(1 for status in statuses if not status or status.Status != 0)
        if failed:
            raise BenchError(f"{failed} C-STOREs failed")
        _wait_archived(admin, project, len(datasets))
    results.cstore_files = len(datasets)
    results.cstore_bytes = study.total_bytes
    results.cstore_seconds = elapsed


def _download(client: httpx.Client, path: str, params: dict[str, str], target: Path) -> float:
    started = time.perf_counter()
    with client.stream("GET", path, params=params) as reply, target.open("wb") as out:
        if reply.status_code != 200:
            raise BenchError(f"zip download answered {reply.status_code}")
        for chunk in reply.iter_bytes(1 << 20):
            out.write(chunk)
    return time.perf_counter() - started


def _measure_download(url: str, experiment: str, work: Path, results: Results) -> None:
    path = f"/data/experiments/{experiment}/scans/ALL/files"
    for params, attr in (
        ({"format": "zip"}, "download"),
        ({"format": "zip", "compression": "0"}, "stored"),
    ):
        target = work / f"{attr}.zip"
        with _login(url) as client:
            elapsed = _download(client, path, params, target)
        with zipfile.ZipFile(target) as bundle:
            entries = len(bundle.namelist())
        if entries != results.zip_files:
            raise BenchError(f"the session zip holds {entries} files, not {results.zip_files}")
        setattr(results, f"{attr}_bytes", target.stat().st_size)
        setattr(results, f"{attr}_seconds", elapsed)
        results.download_entries = entries
        target.unlink()


# --------------------------------------------------------------------------- reporting


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else float("inf")


def report_rows(results: Results, sizes: Sizes) -> list[tuple[str, str]]:
    """The figures as (measurement, result) rows.

    Args:
        results: What the run measured.
        sizes: Workload sizes.

    Returns:
        Rows for the Markdown table and the console.
    """
    r = results
    boots, trips = r.boot_seconds, r.round_trip_seconds
    zip_mb = r.zip_bytes / MB
    return [
        (
            f"(a) Boot to HTTP + C-STORE ready ({len(boots)} starts)",
            f"median {statistics.median(boots) * 1e3:.0f} ms, max {max(boots) * 1e3:.0f} ms",
        ),
        (
            f"(a) Keep-alive round trip, `GET /emulator/health` ({len(trips)} requests)",
            f"median {statistics.median(trips) * 1e3:.1f} ms, max {max(trips) * 1e3:.1f} ms",
        ),
        (
            f"(b) DICOM-zip import: {r.zip_files} files, {zip_mb:.0f} MB STORED zip, "
            "raw `application/zip` body",
            f"POST answered in {r.zip_post_seconds:.1f} s "
            f"({_rate(zip_mb, r.zip_post_seconds):.0f} MB/s); archived after "
            f"{r.zip_archived_seconds:.1f} s: {_rate(zip_mb, r.zip_archived_seconds):.0f} MB/s, "
            f"{_rate(r.zip_files, r.zip_archived_seconds):.0f} files/s end to end",
        ),
        (
            f"(c) gradual-DICOM: {r.gradual_files} files, {sizes.threads} threads",
            f"{_rate(r.gradual_files, r.gradual_seconds):.0f} files/s "
            f"({_rate(r.gradual_bytes / MB, r.gradual_seconds):.0f} MB/s)",
        ),
        (
            f"(d) C-STORE: {r.cstore_files} files, pynetdicom, one association",
            f"{_rate(r.cstore_files, r.cstore_seconds):.0f} files/s "
            f"({_rate(r.cstore_bytes / MB, r.cstore_seconds):.0f} MB/s)",
        ),
        (
            f"(e) Zip download of the archived session ({r.download_entries} files, "
            f"{r.download_bytes / MB:.0f} MB), default deflate level 6",
            f"{_rate(r.download_bytes / MB, r.download_seconds):.0f} MB/s "
            f"({r.download_seconds:.1f} s)",
        ),
        (
            "(e) The same with `compression=0` (stored entries)",
            f"{_rate(r.stored_bytes / MB, r.stored_seconds):.0f} MB/s ({r.stored_seconds:.1f} s)",
        ),
    ]


def render_section(rows: Sequence[tuple[str, str]], command: str, when: dt.datetime) -> str:
    """The ``## Emulator`` section of ``docs/performance.md``.

    Args:
        rows: Report rows.
        command: The exact command that produced them.
        when: When the run finished (UTC).

    Returns:
        Markdown ending with a newline.
    """
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    quiet = QUIET_SECONDS
    return "\n".join(
        [
            SECTION,
            "",
            f"Measured {when:%Y-%m-%d %H:%M} UTC on {machine}; loopback, data dirs in the "
            "system temp folder. Command (from the repository root):",
            "",
            "```bash",
            command,
            "```",
            "",
            "| Measurement | Result |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in rows),
            "",
            f"Files are `generate_study(..., target_file_bytes={FILE_BYTES})` synthetic MR "
            f"instances, {PER_SERIES} per series. The emulator runs with "
            f"`Timing(rebuild_quiet_seconds={quiet:g}, "
            f"sweep_interval_seconds={SWEEP_SECONDS:g})`, so (b)'s "
            f'"archived after" includes a {quiet:g} s quiet window (real XNAT waits '
            "`sessionXmlRebuilderInterval`, 5 minutes by default). (c) and (d) time the sends "
            "only; each study is then checked to be archived with every file. Every client "
            "holds one JSESSION (no Basic auth per request). The figures are for spotting "
            "regressions on one machine, not a statement about real XNAT.",
            "",
        ]
    )


def update_performance_doc(section: str, path: Path = PERFORMANCE_DOC) -> None:
    """Replace (or append) the ``## Emulator`` section, keeping every other section.

    Args:
        section: The new section, starting with its heading.
        path: The Markdown file (created when missing).
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new_text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
        tail = "".join(lines[end:]) if end is not None else ""
        new_text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(new_text, encoding="utf-8")
    temp.replace(path)


# --------------------------------------------------------------------------- main


def run(sizes: Sizes) -> Results:
    """Run every measurement, each against real sockets.

    Args:
        sizes: Workload sizes.

    Returns:
        The figures.
    """
    results = Results()
    print(f"(a) booting the emulator {sizes.boots} times ...", flush=True)
    _measure_boot(sizes, results)
    with (
        tempfile.TemporaryDirectory(prefix="xnat-emulator-bench-") as scratch,
        XNATEmulator(timing=_timing()) as xnat,
    ):
        work = Path(scratch)
        print(f"(b) DICOM-zip import of {sizes.zip_files} files ...", flush=True)
        experiment = _measure_zip_import(xnat.url, work, sizes, results)
        print("(e) zip download ...", flush=True)
        _measure_download(xnat.url, experiment, work, results)
        print(f"(c) gradual-DICOM, {sizes.gradual_files} files ...", flush=True)
        _measure_gradual(xnat, work, sizes, results)
        print(f"(d) C-STORE, {sizes.cstore_files} files ...", flush=True)
        _measure_cstore(xnat, work, sizes, results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, and update ``docs/performance.md``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description="Benchmark the XNAT emulator.")
    parser.add_argument("--small", action="store_true", help="~40 MB import instead of ~200 MB")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args(argv)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    sizes = SMALL if args.small else FULL
    command = shlex.join(["python", "bench/emulator.py", *(["--small"] if args.small else [])])
    started = time.perf_counter()
    rows = report_rows(run(sizes), sizes)
    print()
    for name, value in rows:
        print(f"{name}: {value}")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if not args.no_docs:
        update_performance_doc(render_section(rows, command, dt.datetime.now(dt.UTC)))
        print(f"updated {PERFORMANCE_DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
