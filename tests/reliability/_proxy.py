"""A loopback TCP proxy that aborts chosen connections or throttles replies: network faults.

The emulator's fault rules act on HTTP only; its C-STORE receiver has no fault injection. This
proxy sits between a sender and the receiver and cuts the connections it is told to (after a
number of client bytes) with a TCP reset, which a C-STORE sender sees as an aborted association,
as when a firewall or a restarting receiver drops it mid-study. It can also cap the bandwidth of
replies (a slow link), so that a download is still streaming when its process is killed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class ProxyStats:
    """What the proxy did.

    Attributes:
        connections: Connections accepted.
        aborted: Connections cut on purpose.
        bytes_up: Client bytes forwarded to the receiver.
    """

    connections: int = 0
    aborted: int = 0
    bytes_up: int = 0
    cut_points: list[int] = field(default_factory=list)


class AbortingProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; reset connection ``n`` after ``cuts[n]`` bytes.

    Args:
        upstream_host: Receiver host.
        upstream_port: Receiver port.
        cuts: Connection number (0-based, in accept order) -> client bytes after which that
            connection is reset (0: right after accepting).
        down_bytes_per_second: Cap of the reply bandwidth of each connection (None: no cap);
            may be changed while running.
        up_bytes_per_second: Cap of the request bandwidth (a slow upload link).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        cuts: dict[int, int] | None = None,
        *,
        down_bytes_per_second: float | None = None,
        up_bytes_per_second: float | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cuts = dict(cuts or {})
        self.down_bytes_per_second = down_bytes_per_second
        self.up_bytes_per_second = up_bytes_per_second
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="aborting-proxy", daemon=True)

    def start(self) -> AbortingProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        self._acceptor.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def __enter__(self) -> AbortingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                number = self.stats.connections
                self.stats.connections += 1
                self._sockets.append(client)
            cut = self.cuts.get(number)
            if cut == 0:
                self._abort(client, None, 0)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.append(upstream)
            budget = [cut]
            for source, sink, up in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, up, budget), daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, up: bool, budget: list[int | None]
    ) -> None:
        try:
            while not self._stop.is_set():
                rate = self.up_bytes_per_second if up else self.down_bytes_per_second
                data = source.recv(65536 if rate is None else max(1024, int(rate / 20)))
                if not data:
                    break
                if rate is not None:
                    time.sleep(len(data) / rate)
                if up and budget[0] is not None:
                    if len(data) >= budget[0]:
                        sink.sendall(data[: budget[0]])
                        self._abort(source, sink, self.stats.bytes_up + budget[0])
                        return
                    budget[0] -= len(data)
                if up:
                    with self._lock:
                        self.stats.bytes_up += len(data)
                sink.sendall(data)
        except OSError:
            pass
        _close(sink)
        _close(source)

    def _abort(self, client: socket.socket, upstream: socket.socket | None, at: int) -> None:
        with self._lock:
            self.stats.aborted += 1
            self.stats.cut_points.append(at)
        for sock in (client, upstream):
            if sock is None:
                continue
            # SO_LINGER 0: the last close sends a TCP reset; shutdown() first wakes the other
            # pump thread blocked in recv() on the same socket, so the close really happens
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
