"""``/healthz`` and ``/readyz`` through a real server: alive at once; not ready (503, with the reason
``/api/models`` gives) while the default model downloads or when its weights are missing offline; ready
(200) once it has loaded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from har_stream.weights import sha256_file
from server.config import ServerConfig
from tests.helpers.tiny_clip import make_tiny_clip
from tests.helpers.webrtc_client import LiveServer, live_server, wait_until

PADDING = 2 * 1024 * 1024


@dataclass
class GatedFiles:
    """A real HTTP server for a model's files; ``padding.bin`` stops half-way until ``gate`` is set."""

    base: str
    gate: asyncio.Event


@pytest.fixture
async def gated_clip(tmp_path: Path) -> AsyncIterator[tuple[GatedFiles, Path]]:
    folder = make_tiny_clip(tmp_path / "www" / "clip")
    (folder / "padding.bin").write_bytes(bytes(PADDING))
    gate = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        path = folder / request.match_info["name"]
        data = path.read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        if path.name == "padding.bin":
            await response.write(data[: len(data) // 2])
            await gate.wait()
            data = data[len(data) // 2:]
        await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/clip/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    files = [{"name": f.name, "url": f"{base}/clip/{f.name}", "sha256": sha256_file(f), "size": f.stat().st_size}
             for f in sorted(folder.iterdir())]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": {
        "clip": {"family": "clip", "description": "tiny test CLIP", "files": files}}}))
    try:
        yield GatedFiles(base, gate), manifest
    finally:
        gate.set()
        await runner.cleanup()


async def readyz(server: LiveServer) -> tuple[int, dict]:
    status, body = await server.get("/readyz")
    assert body["default_model"] == server.models.default
    assert body["ready"] is (status == 200) and (status == 200) is (body["reasons"] == [])
    return status, body


async def test_not_ready_while_the_default_model_downloads_then_ready(
        tmp_path: Path, gated_clip: tuple[GatedFiles, Path]) -> None:
    files, manifest = gated_clip
    config = ServerConfig(model="clip", offline=False, home=tmp_path / "home", manifest=manifest, port=0,
                          data_dir=tmp_path / "data", preload=False, clip_threshold=0.0, precision="fp32")
    async with live_server(config, wait_for_default=False) as server:
        assert (await server.get("/healthz"))[0] == 200  # alive from the start

        seen: dict = {}

        async def half_way() -> bool:
            status, body = await readyz(server)
            seen.update(body)
            return status == 503 and any("downloading 50%" in r for r in body["reasons"])
        assert await wait_until(half_way, timeout=30), seen
        assert seen["reasons"] == ["model clip: downloading 50%"], seen
        assert (await server.get("/healthz"))[0] == 200  # a download is no reason to restart the server

        files.gate.set()
        await server.models.wait_ready("clip", timeout=60)
        status, body = await readyz(server)
        assert (status, body["reasons"]) == (200, []), body


async def test_not_ready_with_the_import_command_when_the_default_weights_are_missing(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = ServerConfig(model="s3d", offline=True, home=tmp_path / "home", port=0, data_dir=tmp_path / "data",
                          preload=False, clip_threshold=0.0)
    async with live_server(config, wait_for_default=False) as server:
        await server.models.wait_ready("s3d", timeout=30)
        status, body = await readyz(server)
        assert status == 503 and len(body["reasons"]) == 1, body
        reason = body["reasons"][0]
        assert reason.startswith("model s3d: weights missing: ") and "har-stream weights import s3d" in reason
        _, models = await server.get("/api/models")
        s3d = next(m for m in models["models"] if m["name"] == "s3d")
        assert s3d["status"] == "missing" and s3d["message"] in reason  # the words /api/models uses
        health_status, health = await server.get("/healthz")
        assert health_status == 200 and health["ok"] is True and health["uptime_s"] >= 0
        assert (await server.get("/api/health"))[0] == 200  # the old endpoint still answers


async def test_ready_once_the_default_model_has_loaded(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0,
                          data_dir=tmp_path / "data", preload=False, clip_threshold=0.0, precision="fp32")
    async with live_server(config, wait_for_default=False) as server:
        first, body = await readyz(server)
        if first == 503:  # still loading: says so
            assert body["reasons"][0].startswith(f"model {tiny_checkpoint.stem}: loading"), body
        await server.models.wait_ready(server.models.default, timeout=60)
        assert (await readyz(server))[0] == 200
