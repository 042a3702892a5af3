"""An HTTP server on 127.0.0.1 that answers every GET with a large ``Content-Length`` and then trickles the
body (a few bytes at a time, forever): a weights download that is slow but alive, so a client is always in
the middle of it.

    with TrickleServer() as slow:
        url = slow.url("weights.pth")     # http://127.0.0.1:<port>/weights.pth
        slow.sent                          # body bytes sent so far, all connections together

One owned thread per connection (daemon: a connection ends when the client goes); all stop on exit.
"""

from __future__ import annotations

import http.server
import threading
import time
from types import TracebackType

LENGTH = 50_000_000  # announced, never reached


class TrickleServer:
    def __init__(self, chunk: int = 2048, interval_s: float = 0.02) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(LENGTH))
                self.end_headers()
                try:
                    while not owner._stop.is_set():
                        self.wfile.write(bytes(chunk))
                        self.wfile.flush()
                        with owner._lock:
                            owner.sent += chunk
                        time.sleep(interval_s)
                except OSError:  # the client went away
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
                pass

        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.sent = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="trickle-http", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def __enter__(self) -> TrickleServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
