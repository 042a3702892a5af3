"""Python's own ``http.server`` in a subprocess on 127.0.0.1: a plain server with no ``Range`` support.

FFmpeg cannot learn the length of an MPEG-TS file from such a server (it would have to seek), so a ``.ts``
served this way looks like a live stream of unknown length: the case where a watched recording used to be
decoded as fast as the CPU allows (issue 13).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.rtsp_server import free_port


@contextmanager
def plain_http_server(folder: Path, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``folder``; yields the base URL (``http://127.0.0.1:PORT/``). Stopped on exit."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"python -m http.server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
