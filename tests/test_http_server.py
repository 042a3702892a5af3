"""The shared test HTTP server really speaks HTTP with Range (other tests stream media through it)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.http_server import StaticServer

BODY = bytes(range(256)) * 40  # 10240 bytes


def fetch(url: str, range_header: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def served(http_server: StaticServer) -> StaticServer:
    (http_server.root / "clip.bin").write_bytes(BODY)
    return http_server


def test_full_and_ranged_reads(served: StaticServer) -> None:
    url = served.url("clip.bin")
    status, headers, body = fetch(url)
    assert (status, body, headers["Accept-Ranges"], headers["Content-Length"]) == (200, BODY, "bytes", "10240")

    status, headers, body = fetch(url, "bytes=100-199")
    assert (status, body, headers["Content-Range"]) == (206, BODY[100:200], "bytes 100-199/10240")
    assert fetch(url, "bytes=10000-")[2] == BODY[10000:]
    assert fetch(url, "bytes=-16")[2] == BODY[-16:]
    assert fetch(url, "bytes=10200-99999")[2] == BODY[10200:]  # end clamped to the file
    assert fetch(url, "bytes=20000-")[0] == 416
    assert fetch(served.url("missing.bin"))[0] == 404
    assert fetch(served.base_url + "/../../etc/passwd")[0] == 404

    assert served.count("/clip.bin") == 6
    assert [r.range for r in served.requests][:2] == [None, "bytes=100-199"]


def test_overrides_serve_other_bytes(served: StaticServer) -> None:
    served.serve_bytes("clip.bin", b"tampered")
    assert fetch(served.url("clip.bin"))[2] == b"tampered"
    assert fetch(served.url("clip.bin"), "bytes=2-4")[2] == b"mpe"


def test_stop_frees_the_port(tmp_path: Path) -> None:
    with StaticServer(tmp_path) as server:
        url = server.url("x")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_runs_as_a_separate_process(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    script = Path(__file__).parent / "helpers" / "http_server.py"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        assert fetch(base + "/a.txt")[2] == b"hello"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stop_closes_idle_keep_alive_connections(tmp_path: Path) -> None:
    import http.client
    import threading

    (tmp_path / "a.txt").write_bytes(b"hi")
    server = StaticServer(tmp_path).start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/a.txt")
    assert conn.getresponse().read() == b"hi"  # the connection stays open (HTTP/1.1 keep-alive)
    before = threading.active_count()
    server.stop()  # must not hang on, or leave behind, the handler thread waiting on this connection
    assert threading.active_count() < before
    conn.close()


def _exchange(sock: socket.socket, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on an open socket and read exactly one response from it."""
    sock.sendall(request.encode("latin-1"))
    response = http.client.HTTPResponse(sock, method=request.split(" ", 1)[0])
    response.begin()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, response.read()


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed its end (EOF); False when the socket stays open for more requests."""
    sock.settimeout(0.3)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


# (request, whether the server must close afterwards): clients that ask to close, HTTP/1.0 clients, errors.
CONNECTION_CASES = [
    ("GET /clip.bin HTTP/1.1\r\nHost: t\r\n\r\n", False),
    ("GET /clip.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", True),
    ("GET /clip.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=257-\r\nConnection: close\r\n\r\n", True),
    ("HEAD /clip.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", True),
    ("GET /missing.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", True),
    ("GET /clip.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=99999-\r\nConnection: close\r\n\r\n", True),
    ("GET /clip.bin HTTP/1.1\r\nHost: t\r\nConnection: Close, TE\r\nTE: trailers\r\n\r\n", True),
    ("GET /clip.bin HTTP/1.0\r\n\r\n", True),
    ("GET /clip.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
]


@pytest.mark.parametrize(("request_text", "closes"), CONNECTION_CASES,
                         ids=["keep-alive", "close", "range+close", "head+close", "404+close", "416+close",
                              "close-in-list", "http1.0", "http1.0-keep-alive"])
def test_response_announces_whether_the_connection_closes(served: StaticServer, request_text: str,
                                                          closes: bool) -> None:
    """A server that closes without ``Connection: close`` makes FFmpeg send its next seek on a dead socket
    (an mp4 with its index at the end then decodes 75 of 90 frames); one that closes an HTTP/1.0
    keep-alive connection must say so too."""
    with socket.create_connection((served.host, served.port), timeout=5) as sock:
        status, headers, _ = _exchange(sock, request_text)
        assert status in (200, 206, 404, 416)
        announced = headers.get("connection", "").lower()
        assert _closed_by_server(sock) is closes
        assert announced == ("close" if closes else ("keep-alive" if "HTTP/1.0" in request_text else ""))
        if not closes:  # a persistent connection really serves the next request, a seek, on the same socket
            sock.settimeout(5)
            status, headers, body = _exchange(sock, "GET /clip.bin HTTP/1.1\r\nHost: t\r\n"
                                                    "Range: bytes=10000-\r\nConnection: close\r\n\r\n")
            assert (status, body, headers["connection"]) == (206, BODY[10000:], "close")
            assert _closed_by_server(sock)
    assert served.count("/clip.bin", method=None) + served.count("/missing.bin") == (1 if closes else 2)
