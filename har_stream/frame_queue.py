"""A bounded queue from a producer thread (a decoder) to asyncio consumers, with a named overflow policy.

Why not ``asyncio.Queue`` or ``queue.Queue``: the producer is a plain thread that must block (offline) or
drop (live) without touching the event loop, and the consumer must await without blocking the loop. One
lock guards the items; a blocked producer waits on a ``threading.Condition``; a waiting consumer awaits a
future that the producer resolves with ``loop.call_soon_threadsafe``.

Policies:

* ``"block"`` - offline: ``put`` waits for room, nothing is ever lost.
* ``"drop_oldest"`` - live: ``put`` never waits; when full the oldest item is discarded and counted in
  ``dropped``, so the consumer always sees the most recent frames.

Consume with ``async for item in queue``: iteration ends after ``close()`` once the items already queued
are drained; after ``put_error(exc)`` it drains the items and then raises ``exc`` (once).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, Literal, TypeVar

from .errors import ConfigError

T = TypeVar("T")
Policy = Literal["block", "drop_oldest"]
POLICIES: tuple[Policy, ...] = ("block", "drop_oldest")

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class FrameQueue(Generic[T]):
    """Bounded thread-to-asyncio queue. ``put`` from any thread that is not the consumer's loop thread."""

    def __init__(self, maxsize: int, policy: Policy) -> None:
        check_settings(maxsize, policy)
        self.maxsize = maxsize
        self.policy: Policy = policy
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._dropped = 0

    # -- producer side (any thread) -------------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue ``item`` per the policy. Returns False (item not queued) once the queue is closed.

        With ``"block"`` this waits for room, and returns False at once if ``close()`` happens meanwhile,
        which is how a consumer that stopped reading releases a blocked decoder.
        """
        with self._lock:
            if self.policy == "block":
                while len(self._items) >= self.maxsize and not self._closed:
                    self._not_full.wait()
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            woken = self._take_waiters(all_=False)
        _wake(woken)
        return True

    def put_error(self, exc: BaseException) -> bool:
        """Close the queue with an error: consumers get the queued items, then ``exc`` is raised."""
        with self._lock:
            if self._closed:
                return False
            self._error = exc
            woken = self._close_locked()
        _wake(woken)
        return True

    def close(self) -> None:
        """Stop the queue: blocked and later ``put`` calls return False, consumers drain and stop."""
        with self._lock:
            woken = self._close_locked()
        _wake(woken)

    # -- consumer side (asyncio) ----------------------------------------------------------------------

    def __aiter__(self) -> FrameQueue[T]:
        return self

    async def __anext__(self) -> T:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    self._not_full.notify()
                    return item
                if self._error is not None:
                    exc, self._error = self._error, None
                    raise exc
                if self._closed:
                    raise StopAsyncIteration
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            try:
                await fut
            except asyncio.CancelledError:
                with self._lock:
                    # if a producer already woke us (not in the list any more), pass the wake-up on
                    with contextlib.suppress(ValueError):
                        self._waiters.remove((loop, fut))
                    woken = self._take_waiters(all_=False) if self._items else []
                _wake(woken)
                raise

    # -- state ----------------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Items discarded by ``drop_oldest`` so far."""
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def _close_locked(self) -> list[_Waiter]:
        self._closed = True
        self._not_full.notify_all()
        return self._take_waiters(all_=True)

    def _take_waiters(self, *, all_: bool) -> list[_Waiter]:
        if all_:
            woken = list(self._waiters)
            self._waiters.clear()
            return woken
        return [self._waiters.popleft()] if self._waiters else []


def check_settings(maxsize: int, policy: str | None) -> None:
    """Raise ``ConfigError`` for a size or policy no queue can have (``None``: policy decided later)."""
    if maxsize < 1:
        raise ConfigError(f"queue size must be at least 1, got {maxsize}")
    if policy is not None and policy not in POLICIES:
        raise ConfigError(f"unknown queue policy {policy!r}; use one of {', '.join(POLICIES)}")


def _wake(waiters: list[_Waiter]) -> None:
    for loop, fut in waiters:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
