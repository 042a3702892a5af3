"""A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte: a camera that hangs.

    with SilentListener() as hung:
        url = hung.url("rtsp")          # rtsp://127.0.0.1:<port>/cam
        hung.wait_accepted(1, 10)       # a client has connected (and now waits for an answer forever)
        hung.open_connections           # connections the client has not closed yet

What a client sends is read and thrown away, so a connection stays open until the client closes it; one
thread owns the sockets and closes them all on exit.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from types import TracebackType


class SilentListener:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, name="silent-tcp", daemon=True)

    def url(self, scheme: str = "rtsp", path: str = "cam") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def wait_accepted(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.accepted < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    self._selector.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self._open.add(conn)
                        self.accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # the client hung up
                    self._selector.unregister(sock)
                    sock.close()
                    with self._lock:
                        self._open.discard(sock)

    def __enter__(self) -> SilentListener:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
        self._selector.close()
        self._listener.close()
