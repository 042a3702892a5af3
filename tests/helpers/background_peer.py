"""A live aiortc peer on an event loop of its own, in a thread, for module-scoped fixtures.

Why a thread: each async test runs in its own event loop, and a peer lives on the loop that made it; a peer
that must stay connected across a whole module of tests (watched "alongside" them) needs a loop that outlives
every test's. The aioice loopback patch is applied while it connects (the server must run ``--ice-loopback``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from server.ice import ice_loopback
from tests.helpers.webrtc_client import FPS, LOOP_SECONDS, ClientPeer, motion_frames

T = TypeVar("T")


class BackgroundPeer:
    """``start()`` connects a synthetic webcam showing ``label`` to ``url``; ``labels()`` counts what came."""

    def __init__(self, url: str, label: str = "moving left") -> None:
        self.url = url.rstrip("/")
        self.label = label
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="background-peer", daemon=True)
        self.peer: ClientPeer | None = None
        self._session: aiohttp.ClientSession | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, timeout: float = 30.0) -> BackgroundPeer:
        self.thread.start()
        self._run(self._connect(), timeout)
        return self

    async def _connect(self) -> None:
        self._session = aiohttp.ClientSession()
        with ice_loopback():
            self.peer = await ClientPeer.connect(self._session, self.url,
                                                 motion_frames(self.label, seconds=LOOP_SECONDS, fps=FPS), fps=FPS)
            await self.peer.wait_for("hello", 1, timeout=20)

    async def _state(self) -> tuple[int, str]:
        assert self.peer is not None
        return len(self.peer.labels()), self.peer.pc.connectionState

    def labels(self) -> int:
        return self._run(self._state(), 10)[0]

    def state(self) -> str:
        return self._run(self._state(), 10)[1]

    def wait_for_labels(self, count: int, timeout: float) -> int:
        """Block until ``count`` labels have arrived in all, or ``timeout``; the number that did."""
        deadline = time.monotonic() + timeout
        while (got := self.labels()) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return got

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self._run(self._close(), 15)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()

    async def _close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        if self._session is not None:
            await self._session.close()
