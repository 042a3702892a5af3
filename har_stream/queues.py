"""The ``drop_oldest`` policy for an ``asyncio.Queue``: live paths and event deliveries must never wait."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


def put_drop_oldest(queue: asyncio.Queue[T], item: T) -> int:
    """``put_nowait`` that first makes room by dropping the oldest items; returns how many it dropped.

    Dropped items are marked done, so a ``join()`` (a flush) never waits for something that will not come."""
    dropped = 0
    while queue.full():
        queue.get_nowait()
        queue.task_done()
        dropped += 1
    queue.put_nowait(item)
    return dropped
