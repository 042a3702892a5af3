"""A real static file server on 127.0.0.1 for tests: HTTP/1.1, ``Range`` requests, a request log.

Runs in one owned thread and stops on context exit, so sync tests, async tests and subprocesses (a CLI,
ffmpeg, yt-dlp) can all fetch from it by URL. ``overrides`` serves chosen paths with other bytes (a
tampered download) without touching the files; ``redirects`` answers chosen paths with a 302; ``requests``
records every request for assertions such as "the second call did not download again".

    with StaticServer(tmp_path) as server:
        url = server.url("clip.mp4")
        ...
        assert server.count("/clip.mp4") == 1

Connections are persistent (HTTP/1.1 keep-alive) unless the client asks otherwise; every response after
which the server closes the connection says ``Connection: close``, because clients such as FFmpeg reuse a
socket the server did not announce closing and lose the next (seek) request on it.

Run as a script to serve a folder from a separate process: ``python tests/helpers/http_server.py DIR``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    range: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive client cannot hold a handler thread for ever
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        if "close" in _connection_tokens(self.headers.get_all("Connection", [])):
            self.close_connection = True  # the stdlib only honours an exact "close", not "close, TE"
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.server.owner._record(RequestRecord(self.command, path, self.headers.get("Range")))
        location = self.server.owner.redirects.get(path)
        if location is not None:
            self._empty(302, {"Location": location})
            return
        body = self.server.owner.overrides.get(path)
        file_path = None
        if body is None:
            file_path = (self.server.owner.root / path.lstrip("/")).resolve()
            if self.server.owner.root not in file_path.parents or not file_path.is_file():
                self._empty(404)
                return
            size = file_path.stat().st_size
        else:
            size = len(body)
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header:
            match = _RANGE.match(range_header.strip())
            if not match or (not match.group(1) and not match.group(2)):
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(size - int(match.group(2)), 0)
            if start >= size or start > end:
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self._end_headers()
        if not send_body or length == 0:
            return
        try:
            if body is not None:
                self.wfile.write(body[start:end + 1])
            else:
                assert file_path is not None
                with open(file_path, "rb") as handle:
                    handle.seek(start)
                    remaining = length
                    while remaining > 0:
                        block = handle.read(min(_CHUNK, remaining))
                        if not block:
                            break
                        self.wfile.write(block)
                        remaining -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up mid-body (e.g. a player seeking): not an error

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self._end_headers()

    def _end_headers(self) -> None:
        """Announce what happens to the connection after this response, then end the headers.

        A server that closes silently leaves a keep-alive client (FFmpeg seeking in an mp4) to send its
        next request on a dead socket; an HTTP/1.0 client assumes a close unless told ``keep-alive``.
        """
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()


def _connection_tokens(values: list[str]) -> set[str]:
    """The options of all ``Connection`` headers, lower-cased (the header is a comma-separated list)."""
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


class _Server(ThreadingHTTPServer):
    """Handler threads are joined on ``server_close``; open keep-alive sockets are shut first so none lingers."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: StaticServer) -> None:
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._open_lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StaticServer:
    """Serves ``root`` on ``http://127.0.0.1:<port>/`` (port 0 picks a free one) until ``stop()``."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.overrides: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self._requests: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._httpd = _Server((host, port), self)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(path.lstrip('/'))}"

    def start(self) -> StaticServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"static-http-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.drop_connections()
        self._httpd.server_close()  # joins the handler threads

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._requests)

    def count(self, path: str | None = None, method: str | None = "GET") -> int:
        """Requests seen, optionally for one URL path (``/name``) and method (None: any method)."""
        return sum(1 for r in self.requests
                   if (path is None or r.path == path) and (method is None or r.method == method))

    def serve_bytes(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path`` instead of any file there; returns its URL."""
        self.overrides["/" + path.lstrip("/")] = body
        return self.url(path)

    def redirect(self, path: str, location: str) -> str:
        """Answer ``path`` with ``302 Found`` to ``location``; returns its URL."""
        self.redirects["/" + path.lstrip("/")] = location
        return self.url(path)

    def add_file(self, source: Path, name: str | None = None) -> str:
        """Copy a file under the served root; returns its URL."""
        target = self.root / (name or Path(source).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return self.url(target.relative_to(self.root).as_posix())


def main(argv: list[str]) -> int:
    """``http_server.py DIR [PORT]``: serve DIR until interrupted, printing the base URL first."""
    root = Path(argv[1]) if len(argv) > 1 else Path(os.getcwd())
    port = int(argv[2]) if len(argv) > 2 else 0
    server = StaticServer(root, port=port).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
