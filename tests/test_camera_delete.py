"""Removing a camera answers at once, even one stuck on a port that accepts and never answers; its teardown
finishes in the background, and the name is refused (409, saying why) until it has."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.rtsp_server import closed_port_url
from tests.helpers.silent_tcp import SilentListener
from tests.helpers.webrtc_client import live_server, wait_until
from tests.test_server_streams import camera_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def decode_threads(listener: SilentListener) -> list[str]:
    """The decode threads connected to ``listener`` (a source's thread is named after its host)."""
    return [t.name for t in threading.enumerate() if t.name == f"har-decode-127.0.0.1:{listener.port}"]


async def test_deleting_a_camera_stuck_on_a_silent_port_returns_at_once_and_frees_the_name_after_teardown(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = camera_config(tiny_checkpoint, tmp_path, allow_private_urls=True)  # a read ends after 3 s, a join 4 s
    with SilentListener() as hung:
        async with live_server(config) as server:
            status, body = await server.post("/api/streams", json={"name": "hung", "url": hung.url()})
            assert status == 201, body
            assert await asyncio.to_thread(hung.wait_accepted, 1, 20), "the camera never connected"
            assert await wait_until(lambda: decode_threads(hung), 10)  # its open is now stuck in a read

            sent = time.monotonic()
            async with server.session.delete(server.url + "/api/streams/hung") as response:
                took = time.monotonic() - sent
                assert response.status == 202 and await response.json() == {"deleted": "hung"}
            assert took < 2.5, f"DELETE took {took:.1f} s"  # it waited for the teardown: 4 s here, ≈ 6 s by default
            assert (await server.get("/api/streams"))[1]["streams"] == []
            assert (await server.get("/api/streams/hung"))[0] == 404
            async with server.session.delete(server.url + "/api/streams/hung") as again:
                assert again.status == 404

            # the decode thread is still stuck in its read: the name is refused until it has ended
            assert decode_threads(hung)
            status, body = await server.post("/api/streams", json={"name": "hung", "url": hung.url()})
            assert status == 409 and "still stopping" in body["error"], body
            status, body = await server.post("/api/streams", json={"name": "other", "url": closed_port_url()})
            assert status == 201, body  # other names are not held up

            deadline = time.monotonic() + 30
            while (status := (await server.post("/api/streams", json={"name": "hung", "url": hung.url()}))[0]) \
                    == 409:
                assert time.monotonic() < deadline, "the teardown never ended"
                await asyncio.sleep(0.2)
            assert status == 201
            names = {s["name"]: s["origin"] for s in (await server.get("/api/streams"))[1]["streams"]}
            assert names == {"hung": "api", "other": "api"}
        # the exit awaited every teardown task; the stuck decode thread itself ends at its read timeout
        assert await wait_until(lambda: not decode_threads(hung), 15), \
            [t.name for t in threading.enumerate()]
