"""The shared test HTTP server really speaks HTTP with Range (other tests stream media through it)."""

from __future__ import annotations

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
