"""The model service: offline it lists what is missing (with the import command) and serves what is there;
online it downloads missing weights in the background and CLIP then serves label sets, free text, fallback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from har_stream.weights import WeightStore, sha256_file
from server.config import ServerConfig
from tests.helpers.http_server import StaticServer
from tests.helpers.tiny_clip import make_tiny_clip
from har_stream.synthetic import LABELS
from tests.helpers.webrtc_client import (
    ClientPeer,
    live_server,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")


async def test_offline_missing_default_is_listed_with_its_import_command_and_others_serve(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    WeightStore(home, offline=True).import_file("cnn-lstm", tiny_checkpoint)  # a checkpoint someone imported
    config = ServerConfig(model="s3d", offline=True, home=home, port=0, stride=4)
    async with live_server(config, wait_for_default=False) as server:
        await server.models.wait_ready("cnn-lstm", timeout=30)
        await server.models.wait_ready("s3d", timeout=30)
        status, body = await server.get("/api/models")
        assert status == 200 and body["default"] == "s3d" and body["label_sets"] == ["ucf101", "kinetics400"]
        models = {m["name"]: m for m in body["models"]}
        assert [m["name"] for m in body["models"]][0] == "s3d"
        s3d = models["s3d"]
        assert s3d["status"] == "missing" and s3d["family"] == "torchvision" and s3d["progress"] is None
        assert s3d["import_command"] == "har-stream weights import s3d /path/to/s3d-d76dad2f.pth"
        assert s3d["import_command"] in s3d["message"] and (s3d["labels"], s3d["num_labels"]) == ("kinetics400", 400)
        assert models["clip"]["status"] == "missing" and "har-stream weights import clip" in models["clip"]["message"]
        cnn = models["cnn-lstm"]
        assert (cnn["status"], cnn["labels"], cnn["num_labels"], cnn["clip_fallback"]) == (
            "ready", "synthetic-motion", 4, False)
        for m in body["models"]:
            assert set(m) >= {"name", "family", "status", "progress", "message", "labels", "num_labels",
                              "clip_fallback"}

        got, error = await server.post("/api/webrtc/offer", json={"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n"
                                                                  "m=application 9 DTLS/SCTP 5000\r\n",
                                                                  "type": "offer"})
        assert got == 503 and "s3d" in error["error"] and "har-stream weights import s3d" in error["error"]

        peer = await server.connect("moving left", model="cnn-lstm")  # the model that is there can be chosen
        try:
            events = await peer.wait_for("label", 4, timeout=20)
            assert peer.of_type("hello")[0]["model"] == "cnn-lstm"
            assert events[0]["label"] == "moving left"
        finally:
            await peer.close()


@pytest.fixture
def clip_online(tmp_path: Path) -> Iterator[Path]:
    """A manifest whose `clip` entry is a tiny CLIP (+ 4 MB of padding) served by a local HTTP server."""
    with StaticServer(tmp_path / "www") as http:
        folder = make_tiny_clip(tmp_path / "www" / "clip")
        (folder / "padding.bin").write_bytes(bytes(4 * 1024 * 1024 + 123))
        files = [{"name": f.name, "url": http.url(f"clip/{f.name}"), "sha256": sha256_file(f),
                  "size": f.stat().st_size} for f in sorted(folder.iterdir())]
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"version": 1, "models": {
            "clip": {"family": "clip", "description": "tiny test CLIP", "files": files}}}))
        yield manifest


async def test_missing_clip_downloads_in_the_background_then_serves_fallback_and_free_text(
        tiny_checkpoint: Path, tmp_path: Path, clip_online: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server")
    config = ServerConfig(model=str(tiny_checkpoint), offline=False, home=tmp_path / "home", manifest=clip_online,
                          port=0, stride=4, clip_threshold=1.0)
    async with live_server(config) as server:
        await server.models.wait_ready("clip", timeout=60)
        _, body = await server.get("/api/models")
        models = {m["name"]: m for m in body["models"]}
        assert models["clip"]["status"] == "ready", models["clip"]
        assert models[tiny_checkpoint.stem]["clip_fallback"] is True
        progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("downloading clip:")]
        assert len(progress) >= 3 and progress[-1].startswith("downloading clip: 100%"), progress
        assert (tmp_path / "home" / "weights" / "clip" / "model.safetensors").is_file()

        plain = await server.connect("moving left")
        free = await server.connect("holding still", custom_labels=["waving", "clapping", "  sitting  down "])
        try:
            for e in await refinements(plain):
                assert e["source"] == "clip" and e["label"] in LABELS and e["refines"] <= e["window_index"]
            events = await free.wait_for("label", 3, timeout=30)
            hello = free.of_type("hello")[0]
            assert (hello["model"], hello["labels"]) == ("clip", ["waving", "clapping", "sitting down"])
            for e in events:
                assert e["source"] == "clip" and e["label"] in hello["labels"] and len(e["top5"]) == 3
            assert ("waving", "clapping", "sitting down") in server.models.clip_label_sets
        finally:
            await free.close()
            await plain.close()
        assert await wait_until(lambda: len(server.peers) == 0, timeout=5)
        assert await wait_until(lambda: ("waving", "clapping", "sitting down") not in server.models.clip_label_sets,
                                timeout=5), "the free-text CLIP view outlived its only peer"


async def refinements(peer: ClientPeer, count: int = 3, timeout: float = 30.0) -> list[dict[str, Any]]:
    """CLIP refinements (events with ``refines``) of a peer whose model asks CLIP about every window."""
    await wait_until(lambda: sum("refines" in m for m in peer.of_type("label")) >= count, timeout=timeout)
    found = [m for m in peer.of_type("label") if "refines" in m]
    assert len(found) >= count, f"only {len(found)} CLIP refinements"
    return found


async def test_a_download_that_failed_is_reported_with_the_import_command_not_as_downloading(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Online in config but the host is unreachable: the first request starts a download; once it has failed,
    requests (a peer's offer, a new camera) say what /api/models says, import command included, instead of
    "it is downloading now" again (and again)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": {"r2plus1d-18": {
        "family": "torchvision", "description": "unreachable test weights",
        "files": [{"name": "r2plus1d.pth", "url": f"http://127.0.0.1:{port}/r2plus1d.pth", "sha256": "0" * 64,
                   "size": 10}]}}}))
    config = ServerConfig(model=str(tiny_checkpoint), offline=False, home=tmp_path / "home", manifest=manifest,
                          port=0, clip_threshold=0.0, data_dir=tmp_path / "data", preload=False)
    offer = {"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\nm=application 9 DTLS/SCTP 5000\r\n", "type": "offer",
             "model": "r2plus1d-18"}
    async with live_server(config) as server:
        got, first = await server.post("/api/webrtc/offer", json=offer)
        assert got == 503 and "downloading now" in first["error"]
        slot = server.models.slots["r2plus1d-18"]
        assert await wait_until(lambda: slot.status == "missing" and slot.download_failed_at is not None, timeout=30)
        listed = {m["name"]: m for m in (await server.get("/api/models"))[1]["models"]}["r2plus1d-18"]
        assert "har-stream weights import r2plus1d-18" in listed["message"]
        for _ in range(2):  # and it stays so: no new download started behind the user's back
            got, again = await server.post("/api/webrtc/offer", json=offer)
            assert got == 503 and "downloading now" not in again["error"], again
            assert listed["message"] in again["error"]
            assert slot.status == "missing"
        got, camera = await server.post("/api/streams", json={"name": "cam", "url": "rtsp://127.0.0.1:1/x",
                                                               "model": "r2plus1d-18"})
        assert got == 503 and "har-stream weights import r2plus1d-18" in camera["error"], camera
