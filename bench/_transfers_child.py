"""Child side of ``bench/transfers.py``: one of our transfers in a fresh process.

``run_ours(spec)`` starts ``python bench/_transfers_child.py SPEC`` under ``/usr/bin/time``; the
child runs the transfer ``spec["kind"]`` names and prints one JSON line with the seconds of the
service call, its RSS right before the call (``VmRSS``) and its peak (``VmHWM``). The peak used
is the larger of ``VmHWM`` and ``time``'s ``%M`` (both the child's own; see ``_measure``).

With ``spec["profile"]`` set to a path, the service call runs under ``cProfile`` (main thread
only) and the stats are dumped there; with ``spec["sample"]``, every thread's stack is sampled
every 5 ms (:class:`Sampler`) and the counts are written there as JSON. Both are for
investigations (``bench/transfers_probe.py``); the timing then includes their overhead.
``spec["nohash"]`` is an experiment: the upload streams skip their MD5 (see :func:`_no_md5`).

Example:
    ```python
    got = run_ours({"kind": "gradual", "url": url, "src": src, "project": "P"})
    print(got["seconds"], got["rss_mb"], got["base_mb"])
    ```
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from _measure import run_timed, status_mib

WORKERS = 4


class Sampler:
    """Samples every thread's stack every ``interval`` s: where the wall time goes.

    Each sample of a thread counts once for its leaf function and once for the innermost
    ``xnat_prefect`` function on its stack (``file:function``), so idle waits show as the
    library call that waits (``_transfer_retry:run_in_passes`` → ``threading:wait``).
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                leaf, ours = frame, None
                current: FrameType | None = frame
                while current is not None and ours is None:
                    if "xnat_prefect" in current.f_code.co_filename:
                        ours = current
                    current = current.f_back
                key = f"{_where(ours)} -> {_where(leaf)}"
                self.counts[key] = self.counts.get(key, 0) + 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _where(frame: Any) -> str:
    if frame is None:
        return "-"
    return f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_name}"


class _NoDigest:
    def update(self, data: bytes) -> None:
        del data

    def hexdigest(self) -> str:
        return ""


def _no_md5() -> None:
    """Experiment: make the upload streams skip their MD5 (unused with the ledger off)."""
    import types

    from xnat_prefect.services import _transfer_streams

    stub = types.SimpleNamespace(md5=lambda **_: _NoDigest())
    setattr(_transfer_streams, "hashlib", stub)  # noqa: B010 (mypy: a module attribute)


def _operation(spec: dict[str, Any]) -> Any:
    """Run the transfer ``spec`` names; returns (seconds, base MiB, CPU seconds, summary)."""
    from xnat_prefect.client import XNATClient
    from xnat_prefect.services.downloads import DownloadService
    from xnat_prefect.services.ledger import TransferLedger
    from xnat_prefect.services.uploads import UploadService

    kind, src = spec["kind"], Path(spec.get("src", "."))
    if spec.get("nohash"):
        _no_md5()
    ledger: TransferLedger | bool = (
        TransferLedger(Path(spec["ledger"])) if spec.get("ledger") else False
    )
    with XNATClient(spec["url"], "admin", "admin", timeout=600) as client:
        uploads = UploadService(client, ledger=ledger)
        downloads = DownloadService(client, ledger=False)
        calls: dict[str, Any] = {
            "tar": lambda: uploads.upload_dicom_parallel(
                src,
                spec["project"],
                "SUBJ",
                "SESS",
                upload_workers=WORKERS,
                archive_workers=WORKERS,
                archive_format=kind,
            ),
            "gradual": lambda: uploads.upload_dicom_gradual(
                src, spec["project"], "SUBJ", "SESS", workers=WORKERS
            ),
            "cstore": lambda: uploads.upload_dicom_store(
                src, "127.0.0.1", "XNAT", port=spec["dicom_port"], workers=WORKERS
            ),
            "download": lambda: downloads.download_session(
                spec["session"],
                Path(spec["out"]),
                workers=spec.get("workers", WORKERS),
                verify=True,
            ),
            "download-zip": lambda: downloads.download_scans(
                spec["session"], ["ALL"], Path(spec["out"])
            ),
        }
        calls["zip"] = calls["tar"]
        if kind not in calls:
            raise SystemExit(f"unknown kind {kind}")
        base = status_mib("VmRSS")
        start, cpu = time.perf_counter(), time.process_time()
        if spec.get("profile"):
            import cProfile

            with cProfile.Profile() as prof:
                result = calls[kind]()
            prof.dump_stats(spec["profile"])
        elif spec.get("sample"):
            with Sampler() as sampler:
                result = calls[kind]()
            top = sorted(sampler.counts.items(), key=lambda kv: -kv[1])[:40]
            report = {"samples": sampler.samples, "interval": sampler.interval, "top": top}
            Path(spec["sample"]).write_text(json.dumps(report, indent=1))
        else:
            result = calls[kind]()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, base, cpu, result


def child(spec: dict[str, Any]) -> None:
    """Run one transfer in this (fresh) process and print a JSON result line.

    Args:
        spec: What to run (``kind``, ``url`` and the kind's parameters).
    """
    seconds, base, cpu, result = _operation(spec)
    ok = bool(result.success) and (spec["kind"] != "download" or bool(result.verified))
    line = {
        "seconds": seconds,
        "hwm_mb": status_mib("VmHWM"),
        "base_mb": base,
        "cpu_s": cpu,
        "ok": ok,
        "detail": result.model_dump(mode="json", exclude={"paths"}),
    }
    print(json.dumps(line), flush=True)


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec`` in a fresh child process under ``/usr/bin/time``.

    Args:
        spec: What to run (see :func:`child`).

    Returns:
        The child's JSON line, with ``rss_mb`` = max(``VmHWM``, ``time``'s ``%M``).

    Raises:
        RuntimeError: The child crashed or printed no result.
    """
    run = run_timed([sys.executable, __file__, json.dumps(spec)])
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode or not lines:
        raise RuntimeError(f"child {spec['kind']} failed: {run.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["rss_mb"] = max(result["hwm_mb"], run.peak_mib)
    if not result["ok"]:
        print(f"  ! {spec['kind']} reported failures: {result['detail']}", file=sys.stderr)
    return result


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
