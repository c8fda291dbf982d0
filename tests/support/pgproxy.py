"""A TCP proxy in front of PostgreSQL that can lose the answer to one COMMIT.

The hardest outage to get right: the server commits, and the connection breaks before
the client hears so. :meth:`CommitCutter.arm` makes the proxy forward the next client
message holding ``COMMIT`` to the server, wait for the server to have processed it,
then close the connection without relaying the answer — exactly what a client sees
when the network or the server goes away at that moment.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class CommitCutter:
    """A threaded proxy ``127.0.0.1:<port>`` -> ``127.0.0.1:<target_port>``."""

    def __init__(self, target_port: int, password: str = "") -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.password = password
        self._armed = threading.Event()
        self._after: bytes | None = None
        self.cuts = 0
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="pgproxy-accept").start()

    def arm(self, after: bytes | None = None) -> None:
        """Lose the answer to the next COMMIT (whichever connection sends it).

        ``after``: only the COMMIT of a transaction that sent these bytes (for example
        ``b"INSERT INTO jobs"``), not those of the reads around it.
        """
        self._after = after
        self._armed.set()

    @property
    def armed(self) -> bool:
        """True until the armed cut has happened."""
        return self._armed.is_set()

    def url(self, database: str) -> str:
        """A database URL that goes through the proxy."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        """Stop accepting and close every proxied connection."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            cut = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, cut), daemon=True).start()
            threading.Thread(
                target=self._downstream, args=(server, client, cut), daemon=True
            ).start()

    def _upstream(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        seen = False  # this transaction sent the bytes the cut waits for
        for data in _chunks(client):
            if self._after is not None and self._after in data:
                seen = True
            if self._armed.is_set() and b"COMMIT" in data and (seen or self._after is None):
                cut.set()  # from now on nothing goes back to the client
                self._armed.clear()
                _send(server, data)
                time.sleep(0.3)  # the server reads and commits before it sees us leave
                self.cuts += 1
                _close(client)
                _close(server)
                return
            if b"COMMIT" in data or b"ROLLBACK" in data:
                seen = False
            if not _send(server, data):
                break
        _close(server)

    @staticmethod
    def _downstream(server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        for data in _chunks(server):
            if cut.is_set():
                continue
            if not _send(client, data):
                break
        _close(client)


def _send(sock: socket.socket, data: bytes) -> bool:
    """Forward ``data``; False once the socket is gone (the proxy is closing, or the peer)."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _chunks(sock: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        yield data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
