"""Waiting for a worker thread from async code, without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
import time


async def join_thread(thread: threading.Thread, timeout: float) -> bool:
    """Poll until ``thread`` ends (backing off from 1 ms to 20 ms); False if it is still alive at ``timeout``.

    ``Thread.join`` would block the loop, and a thread stuck in a blocking read can outlive any join: the
    caller decides what to log, the thread ends at its own read timeout.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while thread.is_alive():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True
