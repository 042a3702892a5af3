"""Cameras added through the API are kept in ``cameras.sqlite3`` and watched again after a restart; DELETE forgets
them for good; config-file cameras stay config-file cameras (``origin``), and win a name both have."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from server.camera_spec import parse_camera
from tests.helpers.restart_checks import integrity
from tests.helpers.rtsp_server import closed_port_url
from tests.helpers.webrtc_client import LiveServer, live_server
from tests.test_server_streams import camera_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def listing(server: LiveServer) -> dict[str, dict[str, Any]]:
    status, body = await server.get("/api/streams")
    assert status == 200, body
    return {s["name"]: s for s in body["streams"]}


async def delete(server: LiveServer, name: str) -> int:
    async with server.session.delete(f"{server.url}/api/streams/{name}") as response:
        return response.status


async def test_api_cameras_come_back_after_a_restart_and_deleted_ones_do_not(
        tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_camera({"name": "cfg", "url": closed_port_url("config")})
    secret_url = closed_port_url("porch").replace("rtsp://", "rtsp://admin:hunter2@")
    config = camera_config(tiny_checkpoint, tmp_path, cameras=(cfg,), allow_private_urls=True)
    async with live_server(config) as server:
        for body in ({"name": "porch", "url": secret_url, "stride": 6, "label_filter": ["holding still"]},
                     {"name": "gone", "url": closed_port_url()}):
            status, answer = await server.post("/api/streams", json=body)
            assert status == 201, answer
        first = await listing(server)
        assert {n: s["origin"] for n, s in first.items()} == {"cfg": "config", "porch": "api", "gone": "api"}
        assert await delete(server, "gone") == 202
        assert await delete(server, "cfg") == 202  # a config camera stops until the next start
        assert set(await listing(server)) == {"porch"}

    db = config.data_path / "cameras.sqlite3"
    assert integrity(db) == "ok"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # it holds camera passwords

    started = time.monotonic()
    async with live_server(config) as server:
        again = await listing(server)
        assert {n: s["origin"] for n, s in again.items()} == {"cfg": "config", "porch": "api"}
        porch = again["porch"]
        assert porch["url"].startswith("rtsp://***@127.0.0.1:") and "hunter2" not in str(again)
        assert (porch["stride"], porch["label_filter"], porch["model"]) == (6, ["holding still"],
                                                                             first["porch"]["model"])
        # it is watched for real (with its password): it tries the address it was given
        deadline = started + 30
        while (doc := (await server.get("/api/streams/porch"))[1])["state"] != "reconnecting":
            assert time.monotonic() < deadline, doc
            await asyncio.sleep(0.1)
        assert "hunter2" not in str(doc)
        assert await delete(server, "porch") == 202

    async with live_server(config) as server:
        assert set(await listing(server)) == {"cfg"}


async def test_a_config_camera_wins_a_name_a_stored_camera_has_and_unwatched_stored_cameras_can_be_deleted(
        tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = camera_config(tiny_checkpoint, tmp_path, allow_private_urls=True)
    async with live_server(config) as server:
        for name in ("porch", "yard", "shed"):
            status, answer = await server.post("/api/streams", json={"name": name, "url": closed_port_url(name)})
            assert status == 201, answer

    # the operator now names "porch" in the config file, and allows 2 cameras at once
    porch = parse_camera({"name": "porch", "url": closed_port_url("from-config")})
    config = camera_config(tiny_checkpoint, tmp_path, cameras=(porch,), max_streams=2, allow_private_urls=True)
    async with live_server(config) as server:
        cameras = await listing(server)
        assert {n: s["origin"] for n, s in cameras.items()} == {"porch": "config", "yard": "api"}
        assert cameras["porch"]["url"].endswith("/from-config")
        assert "stored camera porch" in caplog.text and "config file now has a camera of that name" in caplog.text
        assert "stored camera shed is not watched: max_streams (2)" in caplog.text
        assert await delete(server, "shed") == 202  # stored, not watched: forgotten all the same
        assert await delete(server, "shed") == 404

    config = camera_config(tiny_checkpoint, tmp_path, max_streams=4, allow_private_urls=True)
    async with live_server(config) as server:  # without the config camera: only what the store still has
        assert {n: s["origin"] for n, s in (await listing(server)).items()} == {"yard": "api"}
