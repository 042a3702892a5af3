"""Every bad request gets its 4xx/5xx and a one-line JSON error, while a connected peer keeps its labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from yarl import URL

from har_stream.bench.webrtc_client import SyntheticCamera
from server.config import ServerConfig
from tests.helpers.webrtc_client import live_server

pytestmark = pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")


async def offer_sdp(*, video: bool, channel: bool) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if channel:
            pc.createDataChannel("labels")
        if video:
            pc.addTrack(SyntheticCamera(np.zeros((1, 120, 160, 3), np.uint8)))
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


@pytest.fixture
async def server(tiny_checkpoint: Path, tmp_path: Path) -> AsyncIterator:
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0, stride=4,
                          max_peers=2)
    async with live_server(config) as live:
        yield live


async def test_bad_requests_get_json_errors_and_the_live_peer_keeps_going(server) -> None:
    peer = await server.connect("holding still")
    try:
        await peer.wait_for("label", 1, timeout=20)
        good = await offer_sdp(video=True, channel=True)
        cases = [
            ({"data": b"this is not json", "headers": {"Content-Type": "application/json"}}, 400, "not JSON"),
            ({"data": b"\xff\xfe\x00", "headers": {"Content-Type": "application/json"}}, 400, "not"),
            ({"json": ["sdp", "offer"]}, 400, "JSON object"),
            ({"json": {"type": "offer"}}, 400, '"sdp" is missing'),
            ({"json": {"sdp": good, "type": "answer"}}, 400, '"type" must be "offer"'),
            ({"json": {"sdp": "hello, I am not SDP", "type": "offer"}}, 400, "malformed SDP"),
            ({"json": {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=application 9 UDP/DTLS/SCTP "
                              "webrtc-datachannel\r\n", "type": "offer"}}, 400, "malformed SDP offer (ValueError"),
            ({"json": {"sdp": await offer_sdp(video=False, channel=True), "type": "offer"}}, 400, "no video"),
            ({"json": {"sdp": await offer_sdp(video=True, channel=False), "type": "offer"}}, 400,
             'no data channel; create a data channel named "labels"'),
            ({"json": {"sdp": good, "type": "offer", "model": "no-such-model"}}, 400, "unknown model 'no-such-model'"),
            ({"json": {"sdp": good, "type": "offer", "model": "/etc/passwd"}}, 400, "unknown model"),
            ({"json": {"sdp": good, "type": "offer", "labels": "imagenet"}}, 400, "unknown label set 'imagenet'"),
            ({"json": {"sdp": good, "type": "offer", "labels": "/etc/hostname"}}, 400, "unknown label set"),
            ({"json": {"sdp": good, "type": "offer", "custom_labels": "waving"}}, 400, "list of strings"),
            ({"json": {"sdp": good, "type": "offer", "custom_labels": ["waving", "waving"]}}, 400, "repeats"),
            ({"json": {"sdp": good, "type": "offer", "stride": 0}}, 400, '"stride" must be an integer'),
            ({"json": {"sdp": good, "type": "offer", "model": "s3d"}}, 503, "har-stream weights import s3d"),
            ({"json": {"sdp": good, "type": "offer", "labels": "ucf101"}}, 503, "need CLIP"),
            ({"json": {"sdp": "v=0\r\n" + "a=x\r\n" * 70_000, "type": "offer"}}, 413, "too large"),
        ]
        for kwargs, status, message in cases:
            got, body = await server.post("/api/webrtc/offer", **kwargs)
            assert (got, set(body)) == (status, {"error"}), (kwargs.get("json", kwargs.get("data")), body)
            assert message in body["error"] and "\n" not in body["error"], body["error"]

        got, body = await server.get("/api/nothing-here")
        assert got == 404 and "nothing at /api/nothing-here" in body["error"]
        got, body = await server.post("/api/health")
        assert got == 405 and set(body) == {"error"}

        second = await server.connect("moving left")  # 2 of 2 places
        try:
            with pytest.raises(RuntimeError, match="HTTP 429: too many peers: 2 of 2"):
                await server.connect("moving up")
            got, body = await server.get("/api/status")
            assert body["peers"] == 2
        finally:
            await second.close()

        before = len(peer.labels())
        await peer.wait_for("label", before + 3, timeout=10)  # still labelled, and still right
        assert {e["label"] for e in peer.labels()[-3:]} == {"holding still"}
        assert not peer.of_type("error")
    finally:
        await peer.close()


async def test_errors_outside_the_api_are_json_too(server) -> None:
    got, body = await server.get("/static/does-not-exist.js")
    assert got == 404 and set(body) == {"error"}
    got, body = await server.get("/api/health")
    assert (got, body) == (200, {"ok": True})


async def test_page_and_static_files_are_served_and_nothing_outside_web_dir(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>har-stream</title>")
    (web / "js" / "app.js").write_text("export const ok = true;\n")
    (tmp_path / "secret.txt").write_text("no")
    config = ServerConfig(model="s3d", offline=True, home=tmp_path / "home", port=0, web_dir=web)
    async with live_server(config, wait_for_default=False) as live:
        async with live.session.get(live.url + "/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "<title>har-stream</title>" in await response.text()
        async with live.session.get(live.url + "/static/js/app.js") as response:
            assert response.status == 200 and "javascript" in response.content_type
        for path in ("/static/%2E%2E/secret.txt", "/static/js/%2E%2E%2F%2E%2E%2Fsecret.txt", "/static/js"):
            async with live.session.get(URL(live.url + path, encoded=True)) as response:
                assert response.status == 404, path
                assert set(await response.json()) == {"error"}
