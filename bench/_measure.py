"""Measuring helpers shared by the benchmarks in ``bench/``.

* :func:`status_mib`: ``VmRSS`` / ``VmHWM`` of the calling process from ``/proc/self/status``.
* :func:`run_timed`: run a command under ``/usr/bin/time -f %M``; wall seconds and peak RSS.
* :class:`Emulator`: ``xnat-emulator serve`` in its own process plus an admin HTTP client.
* :func:`write_section`: replace (or add) one ``## `` section of ``docs/performance.md``.

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in a child: on Linux a process keeps the
high-water mark of the image it was exec'd from, so a 10 MB child started from a 300 MB parent
reports 311 MB. ``VmHWM`` belongs to the current address space only (reset by ``exec``), and a
command started by ``/usr/bin/time`` is forked from a ~2 MB process, so ``%M`` is its own peak.

Example:
    ```python
    from _measure import run_timed, status_mib

    run = run_timed(["curl", "-sS", "-o", "/dev/null", url])
    print(run.seconds, run.peak_mib, status_mib("VmHWM"))
    ```
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"


def status_mib(field_name: str) -> float:
    """One memory field of this process's ``/proc/self/status``, in MiB.

    Args:
        field_name: ``"VmRSS"`` (resident now) or ``"VmHWM"`` (peak resident since ``exec``).

    Returns:
        The value in MiB, 0.0 when the field is missing (not Linux).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Timed:
    """One command run under ``/usr/bin/time``."""

    seconds: float
    peak_mib: float
    cpu_seconds: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def failure(self) -> str:
        """``""`` on success, else ``FAILED (exit N): <last line mentioning an error>``."""
        if not self.returncode:
            return ""
        lines = [ln for ln in (self.stdout + self.stderr).splitlines() if "rror" in ln]
        return f"FAILED (exit {self.returncode}): {lines[-1][:160] if lines else ''}"


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd`` under ``/usr/bin/time -f %M`` and capture its output.

    Args:
        cmd: The command and its arguments.
        env: Environment for the command (default: inherited).

    Returns:
        Wall seconds, peak RSS in MiB and CPU seconds (user + system) of the command alone,
        exit code and output. A failed
        command (non-zero exit) is returned, with :attr:`Timed.failure` saying why, and
        reported on stderr.

    Raises:
        RuntimeError: The command did not run at all (``time`` printed no figures).
    """
    full = ["/usr/bin/time", "-f", "@@TIME %e %M %U %S", *cmd]
    proc = subprocess.run(full, capture_output=True, text=True, env=env, check=False)
    match = re.search(r"@@TIME ([\d.]+) (\d+) ([\d.]+) ([\d.]+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"{shlex.join(cmd[:3])} did not run: {proc.stderr[-1500:]}")
    seconds, peak, user, system = (float(g) for g in match.groups())
    run = Timed(seconds, peak / 1024, user + system, proc.returncode, proc.stdout, proc.stderr)
    if run.failure:
        print(f"  ! {shlex.join(cmd[:4])}: {run.failure}", file=sys.stderr)
    return run


class Emulator:
    """``xnat-emulator serve`` in its own process, plus an admin HTTP client.

    Args:
        data_dir: The emulator's data folder.
        quiet_seconds: Quiet time before a received session is archived.

    Raises:
        RuntimeError: The emulator did not print its ready line.
    """

    def __init__(self, data_dir: Path, *, quiet_seconds: float = 2.0) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "xnat_prefect.testing.cli", "serve", "--port", "0"),
                *("--dicom-port", "0", "--data-dir", str(data_dir)),
                *("--rebuild-quiet-seconds", str(quiet_seconds)),
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
        self.http = httpx.Client(base_url=self.url, auth=("admin", "admin"), timeout=600)

    def rows(self, path: str) -> list[dict[str, Any]]:
        """The ``ResultSet.Result`` rows of a JSON listing."""
        reply = self.http.get(path, params={"format": "json"})
        reply.raise_for_status()
        rows: list[dict[str, Any]] = reply.json()["ResultSet"]["Result"]
        return rows

    def project(self, name: str) -> None:
        """Create project ``name`` (no-op when it exists)."""
        self.http.put(f"/data/projects/{name}").raise_for_status()

    def metrics(self) -> dict[str, Any]:
        """The emulator's request/byte counters (``GET /emulator/metrics``)."""
        reply = self.http.get("/emulator/metrics")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def archived(
        self, project: str, expected: int, *, label: str | None = None, timeout: float = 1800
    ) -> str:
        """Wait until ``project`` has a session (``label``, if given) with ``expected`` files.

        Args:
            project: Project ID.
            expected: Number of scan files the session must have.
            label: Session label to match; any session of the project when None.
            timeout: Seconds to wait.

        Returns:
            The session's ID.

        Raises:
            RuntimeError: No such session within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for row in self.rows(f"/data/projects/{project}/experiments"):
                if label is not None and row.get("label") != label:
                    continue
                files = self.http.get(
                    f"/data/experiments/{row['ID']}/scans/ALL/files", params={"format": "json"}
                )
                if files.status_code == 200 and len(files.json()["ResultSet"]["Result"]) == (
                    expected
                ):
                    return str(row["ID"])
            time.sleep(0.5)
        raise RuntimeError(f"{project}/{label or '*'}: not archived with {expected} files")

    def delete_session(self, session_id: str) -> None:
        """Delete one session with its files."""
        self.http.delete(
            f"/data/experiments/{session_id}", params={"removeFiles": "true"}
        ).raise_for_status()

    def delete_sessions(self, project: str) -> None:
        """Delete every session of ``project`` with its files."""
        for row in self.rows(f"/data/projects/{project}/experiments"):
            self.delete_session(str(row["ID"]))

    def stop(self) -> None:
        """Close the client and stop the emulator process."""
        if hasattr(self, "http"):
            self.http.close()
        self.proc.terminate()
        self.proc.wait(60)


def write_section(section: str, *, after: str | None = None, doc: Path = DOC) -> None:
    """Replace the ``## `` section that ``section`` starts with, atomically.

    Args:
        section: Markdown whose first line is the section heading (``## Title``).
        after: Heading to insert after when the section is missing (at the end when None or
            not found).
        doc: The Markdown file.
    """
    heading = section.splitlines()[0].rstrip()
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    heads = [i for i, line in enumerate(lines) if line.startswith("## ")]
    start = next((i for i in heads if lines[i].rstrip() == heading), None)
    if start is not None:
        end = next((i for i in heads if i > start), len(lines))
    else:
        anchor = next((i for i in heads if after and lines[i].rstrip() == after), None)
        following = next((i for i in heads if anchor is not None and i > anchor), None)
        start = end = following if following is not None else len(lines)
    body = section.rstrip("\n") + "\n"
    if end < len(lines):
        body += "\n"
    if start == len(lines) and lines and not lines[-1].endswith("\n\n"):
        body = "\n" + body
    lines[start:end] = [body]
    temp = doc.with_name(f".{doc.name}.tmp")
    temp.write_text("".join(lines), encoding="utf-8")
    temp.replace(doc)
