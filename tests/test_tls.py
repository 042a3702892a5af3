"""``--tls-cert/--tls-key``: the server speaks https and wss itself, with a self-signed certificate made here by
the openssl CLI (as docs/security.md shows); the session cookie is Secure; unusable files fail the start."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from har_stream.errors import ConfigError
from server.auth import SESSION_COOKIE
from server.config import ServerConfig, load_config
from server.tls import ssl_context
from tests.helpers.serve_cli import serve_cli
from tests.helpers.webrtc_client import live_server

TOKEN = "tls-test-token-0123456789"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (the docs' command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl program is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=har-stream",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))  # trusts exactly this certificate; names are checked


async def test_https_and_wss_with_a_self_signed_certificate(certificate: tuple[Path, Path], tiny_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    cert, key = certificate
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", data_dir=tmp_path / "d",
                          port=8443, token=TOKEN, tls_cert=cert, tls_key=key)
    assert config.url == "https://127.0.0.1:8443"
    async with live_server(config) as live:
        assert live.url.startswith("https://127.0.0.1:")
        trusted = client_context(cert)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async with session.post(live.url + "/api/auth/login", json={"token": TOKEN}, ssl=trusted) as reply:
                assert reply.status == 200
                set_cookie = reply.headers["Set-Cookie"]
                assert "Secure" in set_cookie and "HttpOnly" in set_cookie  # never sent over plain http
            cookie = {"Cookie": f"{SESSION_COOKIE}={reply.cookies[SESSION_COOKIE].value}"}
            async with session.get(live.url + "/api/jobs", headers=cookie, ssl=trusted) as reply:
                assert reply.status == 200 and (await reply.json())["jobs"] == []
            wss = live.url.replace("https://", "wss://") + "/api/streams/ws"
            async with session.ws_connect(wss, headers={"Authorization": f"Bearer {TOKEN}"}, ssl=trusted) as ws:
                assert (await ws.receive_json(timeout=10))["streams"] == []
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # not trusted by default: self-signed
                async with session.get(live.url + "/api/auth"):
                    pass
            with pytest.raises(aiohttp.ClientError):  # plain http to the https port gets no answer
                async with session.get(live.url.replace("https://", "http://") + "/api/auth") as reply:
                    await reply.read()


def test_serve_says_https_and_answers_it(certificate: tuple[Path, Path], cli_env: dict[str, str],
                                         tiny_checkpoint: Path) -> None:
    cert, key = certificate
    with serve_cli(["--port", "0", "--model", str(tiny_checkpoint), "--tls-cert", str(cert), "--tls-key", str(key)],
                   cli_env, context=client_context(cert)) as served:
        assert served.url.startswith("https://")
        assert served.get_json("/api/auth", context=client_context(cert)) == {"required": False,
                                                                                "authenticated": True}


def test_unusable_tls_files_fail_the_start_saying_why(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    with pytest.raises(ConfigError, match="give both --tls-cert and --tls-key"):
        load_config({"tls_cert": cert}, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        ssl_context(load_config({"tls_cert": tmp_path / "none.pem", "tls_key": key}, env={}))
    with pytest.raises(ConfigError, match="could not use the TLS certificate"):
        ssl_context(load_config({"tls_cert": key, "tls_key": cert}, env={}))  # swapped
    env = {"HAR_STREAM_TLS_CERT": str(cert), "HAR_STREAM_TLS_KEY": str(key)}
    assert ssl_context(load_config({}, env=env)) is not None


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def served_certificate(url: str) -> bytes:
    """The DER certificate a new TLS connection to ``url``'s port is shown."""
    port = int(url.rsplit(":", 1)[1])
    anything = ssl.create_default_context()
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anything)
    try:
        return writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


async def test_a_renewed_certificate_is_served_without_a_restart(certificate: tuple[Path, Path],
                                                                 tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Let's Encrypt renews every 60-90 days; a server running for weeks picks the new files up at the next
    connection after they change, and keeps the old certificate while a renewal is half written."""
    first = certificate
    second = make_certificate(tmp_path / "second", "har-stream-renewed")
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    cert, key = live_dir / "cert.pem", live_dir / "key.pem"
    shutil.copyfile(first[0], cert)
    shutil.copyfile(first[1], key)
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", data_dir=tmp_path / "d",
                          port=0, tls_cert=cert, tls_key=key)
    async with live_server(config, wait_for_default=False) as live:
        assert await served_certificate(live.url) == der(first[0])
        shutil.copyfile(second[0], tmp_path / "new-cert.pem")
        os.replace(tmp_path / "new-cert.pem", cert)  # half a renewal: the new certificate, the old key
        assert await served_certificate(live.url) == der(first[0])  # unusable pair: the old one stays
        shutil.copyfile(second[1], tmp_path / "new-key.pem")
        os.replace(tmp_path / "new-key.pem", key)
        assert await served_certificate(live.url) == der(second[0])  # the next connection, no restart
        async with live.session.get(live.url + "/api/auth", ssl=client_context(second[0])) as reply:
            assert reply.status == 200  # and it serves over it
