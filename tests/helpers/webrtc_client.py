"""Test side of the WebRTC client: the aiortc peer with a synthetic webcam, a real server on a free port,
and what the tests know about the clips the tiny model was trained on.

The peer itself lives in ``har_stream.bench.webrtc_client`` (``har-stream bench live`` drives the same
client), re-exported here so tests import one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from har_stream.bench.webrtc_client import IN_FRAME_STARTS, ClientPeer, SyntheticCamera, motion_frames
from server.config import ServerConfig
from server.keys import MODELS, PEERS
from server.runner import listening

__all__ = [
    "IN_FRAME_STARTS", "LOOP_FRAMES", "ClientPeer", "LiveServer", "SyntheticCamera", "clean_windows",
    "engine_threads", "label_counts", "live_server", "motion_frames", "wait_until",
]

FPS = 15.0
LOOP_SECONDS = 1.6
LOOP_FRAMES = int(round(LOOP_SECONDS * FPS))  # the webcam restarts its clip every 24 frames
LABEL_KEYS = {"type", "stream", "t", "window", "window_index", "label", "confidence", "top5", "source",
              "smoothed_label", "latency_ms"}


@dataclass
class LiveServer:
    app: web.Application
    url: str
    session: aiohttp.ClientSession

    @property
    def models(self) -> Any:
        return self.app[MODELS]

    @property
    def peers(self) -> Any:
        return self.app[PEERS]

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.json()

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, **kw) as response:
            return response.status, await response.json(content_type=None)

    async def connect(self, label: str, **kw: Any) -> ClientPeer:
        return await ClientPeer.connect(self.session, self.url, motion_frames(label, seconds=LOOP_SECONDS, fps=FPS),
                                        fps=FPS, **kw)


@contextlib.asynccontextmanager
async def live_server(config: ServerConfig, *, wait_for_default: bool = True) -> AsyncIterator[LiveServer]:
    """The real app on a free 127.0.0.1 port, with a client session; stopped (peers, models) on exit."""
    async with listening(config) as (app, url):
        if wait_for_default:
            await app[MODELS].wait_ready(app[MODELS].default, timeout=60)
        async with aiohttp.ClientSession() as session:
            yield LiveServer(app, url, session)


def window_frames(event: dict[str, Any], fps: float = FPS) -> tuple[int, int]:
    """Sender frame numbers [first, last] of a label event's window (its times are the sender's)."""
    start, end = event["window"]
    return int(round(start * fps)), int(round(end * fps)) - 1


def clean_windows(events: list[dict[str, Any]], loop_frames: int = LOOP_FRAMES) -> list[dict[str, Any]]:
    """Events whose window lies inside one pass of the looped clip: continuous motion, no restart jump."""
    return [e for e in events if window_frames(e)[0] // loop_frames == window_frames(e)[1] // loop_frames]


def label_counts(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["label"] for e in events)


async def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` (sync or async) until true or ``timeout``; returns its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or asyncio.get_running_loop().time() >= deadline:
            return bool(value)
        await asyncio.sleep(interval)


def engine_threads() -> list[str]:
    """Names of the live threads the server starts per peer (prepare threads) - none may outlive its peer."""
    return [t.name for t in threading.enumerate() if t.name.startswith("har-prep-")]
