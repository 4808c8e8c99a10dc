"""Run the emulator: an HTTP server (uvicorn, threaded) plus a DICOM C-STORE receiver.

Example:
    ```python
    from xnat_prefect.testing import XNATEmulator

    with XNATEmulator() as xnat:
        print(xnat.url, xnat.dicom_port)   # http://127.0.0.1:PORT, the SCP's port
    ```
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from xnat_prefect.testing.app import EmulatorApp
from xnat_prefect.testing.config import EmulatorConfig, EmulatorOptions, Timing, User
from xnat_prefect.testing.faults import FaultKind, FaultRule
from xnat_prefect.testing.routes import MODULES, all_routes, all_schemas, all_ticks
from xnat_prefect.testing.state import EmulatorState

LOG = logging.getLogger(__name__)


class XNATEmulator:
    """A running emulated XNAT 1.9 server (HTTP + DICOM SCP) backed by a data dir.

    Args:
        data_dir: Where state lives (SQLite + files). None: a temp dir removed on stop. Reusing
            a dir restarts with everything it held.
        host: Address to bind (loopback by default).
        port: HTTP port (0 picks a free one).
        dicom_port: DICOM port (0 picks a free one).
        dicom_ae_title: The receiver's AE title (``XNAT`` like a fresh XNAT).
        enable_dicom: Start the C-STORE receiver.
        admin_user: Administrator login created on first start.
        admin_password: Its password.
        site_id: XNAT site ID (prefix of accession numbers).
        timing: Asynchronous timings (see :class:`Timing`).
        seed: Seed of the fault-injection random draws.
        honor_range: Answer HTTP ``Range`` requests with 206 (real XNAT does not: off by
            default, so a Range request gets the whole file with 200). See
            :class:`EmulatorOptions`; change later with :meth:`set_options`.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        dicom_port: int = 0,
        dicom_ae_title: str = "XNAT",
        enable_dicom: bool = True,
        admin_user: str = "admin",
        admin_password: str = "admin",
        site_id: str = "XNAT",
        timing: Timing | None = None,
        seed: int = 0,
        honor_range: bool = False,
    ) -> None:
        self._owns_dir = data_dir is None
        folder = (
            Path(tempfile.mkdtemp(prefix="xnat-emulator-")) if data_dir is None else Path(data_dir)
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.config = EmulatorConfig(
            data_dir=folder,
            host=host,
            port=port,
            dicom_port=dicom_port,
            dicom_ae_title=dicom_ae_title,
            enable_dicom=enable_dicom,
            admin_user=admin_user,
            admin_password=admin_password,
            site_id=site_id,
            seed=seed,
            timing=timing or Timing(),
            options=EmulatorOptions(honor_range=honor_range),
        )
        self.state: EmulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._receiver: Any = None
        self._socket: socket.socket | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> XNATEmulator:
        """Start HTTP, the sweeper and the DICOM receiver; return when all accept traffic.

        Returns:
            self.

        Raises:
            RuntimeError: When the HTTP server does not come up within 10 s.
        """
        config = self.config
        state = EmulatorState(config, all_schemas(), all_ticks())
        self.state = state
        try:
            sock = self._listen(config.host, config.port)
        except OSError:
            state.close()
            self.state = None
            if self._owns_dir:
                shutil.rmtree(config.data_dir, ignore_errors=True)
            raise
        self._socket = sock
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        state.url = f"http://{host}:{port}"
        app = EmulatorApp(state, all_routes())
        app.connection_closer = self._abort_connection
        uv_config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            limit_concurrency=None,
            backlog=512,
        )
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self._run_http, name=f"xnat-emulator-http-{port}", daemon=True
        )
        self._stop.clear()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the XNAT emulator's HTTP server did not start within 10 s")
            time.sleep(0.005)
        self._sweeper = threading.Thread(
            target=self._sweep, name="xnat-emulator-sweeper", daemon=True
        )
        self._sweeper.start()
        if config.enable_dicom:
            self._start_receiver(state)
        LOG.info("XNAT emulator serving %s (data dir %s)", state.url, config.data_dir)
        return self

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # protocol says TCP, and without it every kept-alive request waits ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _abort_connection(self, client: Any) -> bool:
        """Abort the open HTTP connection whose peer is ``client`` (the ``drop`` fault).

        Runs on the server's event loop (called from the ASGI app).

        Args:
            client: The ASGI scope's ``client`` (host, port).

        Returns:
            Whether the connection was found and aborted.
        """
        server = self._server
        if server is None or not client:
            return False
        peer = tuple(client)
        for connection in list(server.server_state.connections):
            if getattr(connection, "client", None) == peer:
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                    return True
        return False

    def _run_http(self) -> None:
        assert self._server is not None and self._socket is not None
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            loop.close()

    def _start_receiver(self, state: EmulatorState) -> None:
        from xnat_prefect.testing.routes.imports import store_received_file
        from xnat_prefect.testing.scp import DicomReceiver
        from xnat_prefect.testing.scp_faults import DicomFaults

        workspace = state.store.tmp_dir / "scp"
        workspace.mkdir(parents=True, exist_ok=True)

        def on_stored(path: Path, context: Any) -> None:
            store_received_file(state, path, calling_ae=str(getattr(context, "calling_ae", "")))

        self._receiver = DicomReceiver(
            ae_title=self.config.dicom_ae_title,
            host=self.config.host,
            port=self.config.dicom_port,
            on_stored=on_stored,
            workspace=workspace,
            faults=DicomFaults(state.faults, state.metrics),
        )
        self._receiver.start()
        state.dicom_port = int(self._receiver.port)

    def _sweep(self) -> None:
        assert self.state is not None
        while not self._stop.wait(self.state.timing.sweep_interval_seconds):
            try:
                self.state.run_ticks()
            except Exception:  # a sweep failure must not kill the sweeper thread
                LOG.exception("emulator background sweep failed")

    def stop(self) -> None:
        """Stop every server and thread this emulator started (idempotent)."""
        self._stop.set()
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
        if self.state is not None:
            self.state.close()
            self.state = None
        if self._owns_dir:
            shutil.rmtree(self.config.data_dir, ignore_errors=True)

    def __enter__(self) -> XNATEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- facts

    @property
    def _live(self) -> EmulatorState:
        if self.state is None:
            raise RuntimeError("the XNAT emulator is not running; call start() first")
        return self.state

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return self._live.url

    @property
    def dicom_port(self) -> int:
        """Port of the C-STORE receiver (0 when disabled)."""
        return self._live.dicom_port

    @property
    def dicom_ae_title(self) -> str:
        """AE title of the C-STORE receiver."""
        return self.config.dicom_ae_title

    @property
    def data_dir(self) -> Path:
        """The data dir."""
        return self.config.data_dir

    @property
    def admin_user(self) -> str:
        """Administrator login."""
        return self.config.admin_user

    @property
    def admin_password(self) -> str:
        """Administrator password."""
        return self.config.admin_password

    # ----------------------------------------------------------------- control

    def add_user(self, login: str, password: str, *, admin: bool = False, **names: str) -> User:
        """Create a site user.

        Args:
            login: Username.
            password: Password.
            admin: Site administrator.
            **names: ``firstname``, ``lastname``, ``email``.

        Returns:
            The user.
        """
        return self._live.add_user(login, password, is_admin=admin, **names)

    def set_timing(self, **values: Any) -> None:
        """Change asynchronous timings (see :class:`Timing` for the names).

        Args:
            **values: New values.
        """
        self._live.timing.update(**values)

    def set_options(self, **values: Any) -> None:
        """Change behaviour switches (see :class:`EmulatorOptions`), e.g. ``honor_range=True``.

        Args:
            **values: New values.
        """
        self._live.options.update(**values)

    def add_fault(self, route: str, kind: FaultKind, **options: Any) -> FaultRule:
        """Inject a fault (see :mod:`xnat_prefect.testing.faults`).

        HTTP kinds match ``"METHOD /path"``; the ``dicom_*`` kinds match the DICOM receiver's
        targets (``"ASSOCIATE calling called"``, ``"C-ECHO …"``, ``"C-STORE calling called
        sop_class sop_instance"``; see :mod:`xnat_prefect.testing.scp_faults`).

        Args:
            route: Regex searched in the target.
            kind: Fault kind.
            **options: Other :class:`FaultRule` fields (rate, times, status, body,
                latency_ms, reject, reject_source, reject_reason, store_status, after_stores…).

        Returns:
            The active rule.

        Raises:
            ValueError: An unknown kind, a bad option value or an invalid regex.

        Example:
            >>> xnat.add_fault(r"^C-STORE ", "dicom_status", store_status=0xA700, times=1)
        """
        return self._live.faults.add(FaultRule(route=route, kind=kind, **options))

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._live.faults.clear()

    def metrics(self) -> dict[str, Any]:
        """Request metrics (counts, statuses, bytes, peak concurrency per route).

        Returns:
            A snapshot.
        """
        return self._live.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Zero the metrics."""
        self._live.metrics.reset()

    def expire_sessions(self, login: str | None = None) -> list[str]:
        """Invalidate HTTP sessions as an idle timeout would.

        Args:
            login: Only this user's.

        Returns:
            The killed session ids.
        """
        return self._live.expire_sessions(login)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Run background work until nothing is pending (or the timeout passes).

        Args:
            timeout: Seconds.

        Returns:
            True when idle.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._live.run_ticks():
                return True
            time.sleep(self._live.timing.sweep_interval_seconds)
        return False

    def __repr__(self) -> str:
        where = self.state.url if self.state else "stopped"
        return f"XNATEmulator({where}, data_dir={str(self.config.data_dir)!r})"


__all__ = ["MODULES", "XNATEmulator"]
