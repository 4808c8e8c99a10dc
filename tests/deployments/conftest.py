"""A real Prefect stack for the deployment tests: `prefect server start` and process workers.

Everything runs as subprocesses of the project's interpreter (``sys.executable -m prefect``)
with a private ``PREFECT_HOME`` (and so a private SQLite database) under the test's temporary
directory, or a private PostgreSQL cluster for the ``postgres`` tests. Every process started
here is stopped through its own ``Popen`` handle (its process group, for the flow-run
processes a worker spawns); PostgreSQL through ``pg_ctl stop`` on its own data directory.

Opt-in tests:

* ``postgres`` (``XNAT_PREFECT_POSTGRES=1 pytest -m postgres tests/deployments``) needs the
  PostgreSQL 15 binaries and is not run in CI.
* ``dask`` (``XNAT_PREFECT_DASK=1 pytest -m dask tests/deployments``) needs the optional
  ``prefect-dask`` package.

Without their variable these tests are *deselected* (reported as such in pytest's summary
line), never skipped: a skip would look like a pass that proved nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

PG_BIN = Path(os.environ.get("XNAT_PREFECT_PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"

#: marker -> (environment variable that enables it, what it needs)
OPT_IN_MARKERS: dict[str, tuple[str, str]] = {
    "postgres": ("XNAT_PREFECT_POSTGRES", "a private PostgreSQL cluster (initdb/pg_ctl)"),
    "dask": ("XNAT_PREFECT_DASK", "prefect-dask and a dask LocalCluster"),
}


def pytest_configure(config: pytest.Config) -> None:
    for marker, (variable, needs) in OPT_IN_MARKERS.items():
        config.addinivalue_line(
            "markers", f"{marker}: needs {needs}; runs only with {variable}=1 (deselected else)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Opt-in tests are deselected, not skipped, when their variable is not 1: they need
    # things CI does not provide (a PostgreSQL cluster, prefect-dask), and a skip would count
    # as a pass that proved nothing. pytest reports them in its "N deselected" count and the
    # terminal summary below says how to run them.
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        blocked = [
            marker
            for marker, (variable, _) in OPT_IN_MARKERS.items()
            if item.get_closest_marker(marker) and os.environ.get(variable) != "1"
        ]
        (dropped if blocked else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config.stash[_DESELECTED] = [item.nodeid for item in dropped]


_DESELECTED = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    dropped = config.stash.get(_DESELECTED, [])
    if dropped:
        hints = ", ".join(f"{v}=1 pytest -m {m}" for m, (v, _) in OPT_IN_MARKERS.items())
        terminalreporter.write_line(
            f"tests/deployments: {len(dropped)} opt-in test(s) deselected; run them with {hints}"
        )


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop_process(proc: subprocess.Popen[bytes], *, first: int, grace: float) -> None:
    """Stop one process we started (and its process group) by its handle."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(first)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            # e.g. a worker that inherited an ignored SIGINT: its SIGTERM handler re-sends
            # SIGINT to itself (Prefect 3.8.8), which then does nothing.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # flow-run processes a worker spawned and the uvicorn child of `prefect server start`
    # share the group we created for the process (start_new_session=True).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class PrefectStack:
    """A Prefect API server and workers running as subprocesses, with their logs.

    Attributes:
        root: Directory holding PREFECT_HOME, logs and the working directory of the CLI.
        database_url: ``PREFECT_API_DATABASE_CONNECTION_URL`` (None: SQLite in PREFECT_HOME).
        port: Port of the API server.
    """

    root: Path
    database_url: str | None = None
    port: int = field(default_factory=free_port)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def logs(self) -> Path:
        path = self.root / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self) -> dict[str, str]:
        """Environment of every subprocess: no PREFECT_* leaks in from the caller."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.root / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="false",
            # the defaults (poll every 10 s, scheduler loop 60 s) are right for production;
            # a test wants the runs picked up quickly.
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
            # the production settings docs/deploying.md recommends: a task waiting for a slot
            # of a global limit (uploads...) retries within ~5 s instead of up to 30 s, and a
            # run waiting for its deployment's concurrency slot is retried after 5 s, not 30 s
            PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="5",
            PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="5",
            PREFECT_LOGGING_LEVEL="INFO",
            XNAT_PREFECT_LEDGER_DIR=str(self.root / "ledger"),
            PYTHONUNBUFFERED="1",
        )
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            cwd=self.root,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def start_server(self, *, timeout: float = 120.0) -> float:
        """Start ``prefect server start`` and wait for /api/health.

        Returns:
            Seconds until the server answered healthy.
        """
        (self.root / "prefect-home").mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        proc = self._spawn(
            "server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited early:\n{self.tail('server')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise RuntimeError(f"prefect server not healthy after {timeout} s:\n{self.tail('server')}")

    def prefect(self, *args: str, timeout: float = 180.0) -> str:
        """Run one Prefect CLI command against the server; fail the test on a non-zero exit.

        Returns:
            The command's output.
        """
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed ({done.returncode}):\n{output}")
        return output

    def start_worker(self, name: str, *, pool: str = "xnat-process", limit: int = 3) -> None:
        """Start ``prefect worker start --pool POOL --limit LIMIT`` as ``name``."""
        self._spawn(
            name,
            "worker",
            "start",
            "--pool",
            pool,
            "--name",
            name,
            "--limit",
            str(limit),
            "--type",
            "process",
        )

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return f"(no {name} log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def all_tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.tail(n)}" for n, _ in self.procs)

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point this process's Prefect client at the server (inside a harness or not)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    def stop(self) -> None:
        """Stop workers first (SIGINT, then SIGKILL after 10 s), then the server."""
        for name, proc in reversed(self.procs):
            if name != "server":
                _stop_process(proc, first=signal.SIGINT, grace=10)
        for name, proc in self.procs:
            if name == "server":
                _stop_process(proc, first=signal.SIGTERM, grace=20)


@pytest.fixture(scope="module")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Build PrefectStacks; every one is stopped at the end of the module."""
    stacks: list[PrefectStack] = []

    def make(name: str = "stack", *, database_url: str | None = None) -> PrefectStack:
        stack = PrefectStack(tmp_path_factory.mktemp(name), database_url=database_url)
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            stack.stop()


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster: initdb, pg_ctl start on a loopback port, pg_ctl stop."""

    root: Path
    port: int = field(default_factory=free_port)
    started: bool = False

    def _run(self, *args: str) -> str:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the cluster as `nobody`.
            command = ["runuser", "-u", "nobody", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def query(self, sql: str) -> str:
        """Run one SQL statement in the ``prefect`` database; its unaligned output."""
        address = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
        return self._run("psql", *address, "-d", "prefect", "-tAc", sql).strip()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise AssertionError(f"no PostgreSQL binaries in {PG_BIN} (set XNAT_PREFECT_PG_BIN)")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody", "nogroup")
            self.root.chmod(0o700)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.root / "pg.log"), "-w", "-o", options, "start"
        )
        self.started = True
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "prefect")

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
            self.started = False


# --- a deployed stack: the yaml's deployments, two workers, an emulator ------------------------

INGEST_PROJECT = "P1"  # auto-archive (prearchive code 4); the yaml's own project is manual (0)
IMPORT_KEY = "POST /data/services/import"
FAST_SETTLE = {"stall_seconds": 30.0, "max_wait_seconds": 90.0, "poll_interval_seconds": 0.5}
_SCHEDULER_BUG = "Can't evaluate bulk DML statement"


def site_settings() -> dict[str, str]:
    """The ``definitions.site`` values of prefect.yaml (credentials block name, project)."""
    site: dict[str, str] = yaml.safe_load(PREFECT_YAML.read_text())["definitions"]["site"]
    return site


def zip_of(files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, f"{path.parent.name}/{path.name}")
    return buffer.getvalue()


@dataclass
class Deployed:
    """A stack with prefect.yaml deployed, workers running and an emulator to work against."""

    stack: PrefectStack
    xnat: Any
    rest: httpx.Client
    credentials_block: str
    project: str

    @property
    def work(self) -> Path:
        return self.stack.root / "work"

    @property
    def server_key(self) -> str:
        return self.xnat.url.split("://", 1)[1]

    def wait(self, check: Callable[[], Any], *, timeout: float, what: str) -> Any:
        """Poll ``check`` each second until truthy; fail with every log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(1.0)
        hint = ""
        if _SCHEDULER_BUG in self.stack.tail("server", 100_000):
            hint = (
                "\nPrefect's scheduler cannot insert scheduled runs: Prefect 3.8.8 with "
                "SQLAlchemy >= 2.1 (pin sqlalchemy<2.1)"
            )
        raise AssertionError(f"{what}: not within {timeout} s{hint}\n{self.stack.all_tails()}")

    def runs(self, client: Any, ids: list[Any]) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        found: list[Any] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        return found

    def runs_of(self, client: Any, deployment_id: Any) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        found: list[Any] = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        return found

    def wait_final(self, client: Any, ids: list[Any], *, timeout: float) -> list[Any]:
        def final() -> list[Any] | None:
            runs = self.runs(client, ids)
            done = len(runs) == len(ids) and all(r.state and r.state.is_final() for r in runs)
            return runs if done else None

        runs: list[Any] = self.wait(final, timeout=timeout, what=f"{len(ids)} flow runs final")
        return runs

    def import_study(self, project: str, subject: str, *, seed: int, **params: str) -> None:
        """Send a small study to XNAT's import service with plain REST (no event emitted)."""
        from xnat_prefect.testing.synthetic import generate_study

        manifest = generate_study(
            self.work / f"rest-{subject}",
            project=project,
            subject=subject,
            session=f"{subject}_MR1",
            series=1,
            instances_per_series=2,
            seed=seed,
        )
        query = {"import-handler": "DICOM-zip", "project": project, "subject": subject}
        reply = self.rest.post(
            "/data/services/import",
            params={**query, "session": f"{subject}_MR1", **params},
            content=zip_of(manifest.files),
            headers={"Content-Type": "application/zip"},
        )
        assert reply.status_code == 200, reply.text

    def experiment_id(self, project: str, label: str) -> str:
        reply = self.rest.get(f"/data/projects/{project}/experiments", params={"format": "json"})
        assert reply.status_code == 200, reply.text
        rows = [r for r in reply.json()["ResultSet"]["Result"] if r["label"] == label]
        assert len(rows) == 1, rows
        return str(rows[0]["ID"])

    def ingest_concurrently(
        self,
        runs: int,
        *,
        batches: int,
        upload_slots: int,
        catalog_runs: int = 0,
        prefix: str = "SUBJ",
        emit_events: bool = True,
        timeout: float = 240.0,
    ) -> tuple[float, list[Any], dict[str, Any]]:
        """Start ``runs`` ingest (+ ``catalog_runs`` refresh) deployment runs at once; wait.

        Returns:
            (seconds from the first run created to the last one final, the runs, metrics).
        """
        from prefect.client.orchestration import get_client

        from xnat_prefect.tasks.limits import limit_name, set_limit
        from xnat_prefect.testing.synthetic import generate_study

        labels = [f"{prefix}{k:02d}" for k in range(runs)]
        for k, subject in enumerate(labels):
            generate_study(
                self.work / subject,
                project=INGEST_PROJECT,
                subject=subject,
                session=f"{subject}_MR1",
                series=batches,
                instances_per_series=3,
                seed=1000 + k if prefix != "SUBJ" else k,
            )
        self.xnat.reset_metrics()
        # slower imports: the runs overlap however the worker processes get scheduled
        self.xnat.add_fault(r"^POST /data/services/import", "latency", latency_ms=(400, 600))
        try:
            with self.stack.client_settings(), get_client(sync_client=True) as client:
                set_limit(limit_name(self.server_key, "uploads"), upload_slots)
                ingest = client.read_deployment_by_name("xnat-ingest-dicom/ingest-dicom").id
                catalog = client.read_deployment_by_name(
                    "xnat-refresh-catalogs/refresh-catalogs-nightly"
                ).id
                started = time.monotonic()
                ids = [
                    client.create_flow_run_from_deployment(
                        ingest,
                        parameters={
                            "source": str(self.work / subject),
                            "project": INGEST_PROJECT,
                            "subject": subject,
                            "session": f"{subject}_MR1",
                            "batches": batches,
                            "max_workers": batches,
                            "emit_events": emit_events,
                            **FAST_SETTLE,
                        },
                    ).id
                    for subject in labels
                ]
                ids += [
                    client.create_flow_run_from_deployment(
                        catalog, parameters={} if k % 2 else {"project": INGEST_PROJECT}
                    ).id
                    for k in range(catalog_runs)
                ]
                final = self.wait_final(client, ids, timeout=timeout)
                elapsed = time.monotonic() - started
        finally:
            self.xnat.clear_faults()
        return elapsed, final, self.xnat.metrics()

    def runs_by_worker(self, *workers: str) -> dict[str, set[str]]:
        """Flow run ids each worker submitted, from its log."""
        pattern = r"submitting flow run '([0-9a-f-]{36})'"
        return {w: set(re.findall(pattern, self.stack.tail(w, 100_000))) for w in workers}


@contextlib.contextmanager
def deploy_stack(stack: PrefectStack, *, worker_limit: int = 3) -> Iterator[Deployed]:
    """Start the server, create the pool, deploy prefect.yaml, start two workers and XNAT.

    Everything is stopped on exit: workers and server by their handles, then the emulator.
    """
    from pydantic import SecretStr

    from xnat_prefect.blocks import XNATCredentials
    from xnat_prefect.testing import Timing, XNATEmulator

    site = site_settings()
    stack.extra_env["HOME"] = str(stack.root / "home")  # ~/xnat-staging of the yaml lands here
    xnat = XNATEmulator(timing=Timing(rebuild_quiet_seconds=0.3))
    rest = httpx.Client(timeout=30, auth=("admin", "admin"))
    try:
        stack.start_server()
        stack.prefect("work-pool", "create", "xnat-process", "--type", "process")
        xnat.start()
        rest.base_url = httpx.URL(xnat.url)
        for project, code in ((INGEST_PROJECT, 4), (site["project"], 0)):
            assert rest.put(f"/data/projects/{project}").status_code in (200, 201)
            reply = rest.put(f"/data/projects/{project}/prearchive_code/{code}")
            assert reply.status_code == 200, reply.text
        with stack.client_settings():
            XNATCredentials(
                url=xnat.url, username="admin", password=SecretStr("admin"), timeout_seconds=30
            ).save(site["credentials"], overwrite=True)
        output = stack.prefect("deploy", "--prefect-file", str(PREFECT_YAML), "--all")
        assert "stage-archived-session" in output, output
        stack.start_worker("worker-1", limit=worker_limit)
        stack.start_worker("worker-2", limit=worker_limit)
        yield Deployed(stack, xnat, rest, site["credentials"], site["project"])
    finally:
        stack.stop()  # workers before the emulator they talk to
        rest.close()
        xnat.stop()


@pytest.fixture(scope="module")
def deployed(stack_factory: Callable[..., PrefectStack]) -> Iterator[Deployed]:
    """prefect.yaml deployed on a real server with its SQLite database, two workers, XNAT."""
    with deploy_stack(stack_factory("sqlite-stack")) as ready:
        yield ready


@pytest.fixture(scope="module")
def deploy() -> Callable[..., Any]:
    """:func:`deploy_stack`, for modules that build their own stack (PostgreSQL)."""
    return deploy_stack


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster on a loopback port, stopped and removed afterwards.

    Its directory is made with mkdtemp in /tmp, not pytest's tmp_path: the cluster runs as
    ``nobody`` when the tests run as root, and pytest's directories are private to their owner.
    """
    import tempfile

    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="xnat-prefect-pg-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
