"""Pushing a changing document to a websocket watcher: the job progress and camera pages both need it.

Policy: conflate. The watcher gets the newest document, at most every ``interval`` seconds, never a backlog;
a slow watcher skips intermediate states (never the final one). The client sends nothing; what it sends is
read and dropped, so pings are answered and its close is noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from .keys import WEBSOCKETS

Snapshot = Callable[[], Awaitable[tuple[Any, bool] | None]]  # (document, final?) or None: stop


async def push_changes(request: web.Request, snapshot: Snapshot, change_event: Callable[[], asyncio.Event],
                       interval: float = 0.2, idle_s: float = 5.0) -> web.WebSocketResponse:
    """Send ``snapshot()``'s document whenever it differs from the last one sent, until it is final, it says
    stop, the client leaves or the server shuts down (which closes every socket in ``WEBSOCKETS``).

    ``change_event()`` is the event the next change sets; it is taken before each snapshot, so a change that
    lands while the document is sent, or during the pause, is never missed. Without changes, the document is
    read again every ``idle_s``."""
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    reader = asyncio.get_running_loop().create_task(_drain(ws), name="ws-reader")
    try:
        last: Any = None
        while not ws.closed and not reader.done():
            event = change_event()
            got = await snapshot()
            if got is None:
                break
            doc, final = got
            if doc != last:
                await ws.send_json(doc)
                last = doc
            if final:
                break
            await asyncio.sleep(interval)
            waiting = asyncio.ensure_future(event.wait())
            await asyncio.wait({reader, waiting}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
    except (ConnectionResetError, RuntimeError):
        pass  # the watcher went away
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        request.app[WEBSOCKETS].discard(ws)
        await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
