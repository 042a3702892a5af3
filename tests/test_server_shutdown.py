"""``har-stream serve`` as a real process: it serves a peer, and SIGTERM / SIGINT stop it within seconds, exit 0."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers.clips import REPO
from tests.helpers.webrtc_client import ClientPeer, motion_frames

pytestmark = pytest.mark.usefixtures("ice_loopback_patch")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {proc.communicate()[1]}"
        try:
            async with session.get(f"{url}/api/models") as response:
                body = await response.json()
                if next(m for m in body["models"] if m["name"] == body["default"])["status"] == "ready":
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the server did not get ready")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_with_a_connected_peer_stops_the_server_within_seconds(
        sig: signal.Signals, tiny_checkpoint: Path, cli_env: dict[str, str]) -> None:
    port = free_port()
    env = {**cli_env, "HAR_STREAM_ICE_LOOPBACK": "1", "HAR_STREAM_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "har_stream.cli", "serve", "--model", str(tiny_checkpoint),
                             "--torch-threads", "1", "--stride", "4"], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    peer = None
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, proc)
            peer = await ClientPeer.connect(session, url, motion_frames("holding still"))
            await peer.wait_for("label", 1, timeout=30)
            sent = time.monotonic()
            proc.send_signal(sig)
            while proc.poll() is None and time.monotonic() - sent < 10:
                await asyncio.sleep(0.05)
            took = time.monotonic() - sent
            out, err = proc.communicate(timeout=10)
            assert proc.returncode == 0, err
            assert took < 6.0, f"took {took:.1f} s to stop"  # ~1.5 s here; interpreter teardown is most of it
            assert "serving on http://127.0.0.1:" in err and "loading model" in err and "stopped" in err
            assert f"peer {peer.peer_id} closed: the server is shutting down" in err
            gone = time.monotonic()
            while peer.pc.connectionState not in ("closed", "failed") and time.monotonic() - gone < 15:
                await asyncio.sleep(0.1)
            assert peer.pc.connectionState in ("closed", "failed")
    finally:
        if peer is not None:
            await peer.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
