"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1 that records every POST.

``statuses`` scripts its answers (``[500, 500]``: the first two requests get 500, the rest 200), so tests can
show retries without mocks. ``port`` may be chosen up front (``free_port()``), so a test can publish to a
receiver that is down and start it later on the same address.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's pick, released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, port: int | None = None, statuses: Iterable[int] = ()) -> None:
        self.port = port if port is not None else free_port()
        self.statuses = list(statuses)
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx, in arrival order."""
        return [r.json for r in self.requests if 200 <= r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append(Received(dict(request.headers), await request.read(), status))
        async with self._changed:
            self._changed.notify_all()
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, delivered: int, timeout: float = 20.0) -> None:
        """Until ``delivered`` requests were answered 2xx (a generous ``timeout``: machines are shared)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(self.delivered) < delivered:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the receiver got {len(self.delivered)} deliveries, expected {delivered}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    pass
