"""Worker threads seen from async code: waiting for one without blocking the event loop, and asking one to stop.

A thread cannot be killed. One that is inside torch, OpenVINO or ONNX Runtime when the interpreter shuts down
takes the process with it (``terminate called without an active exception``: a C++ thread pool destroyed
under a running call), so whoever starts a long worker thread asks it to stop with a ``CancelToken`` and
waits for it (``join_thread``) before the process may exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import HarStreamError

T = TypeVar("T")


class Cancelled(HarStreamError):
    """Work stopped at a safe point because its ``CancelToken`` was set (the server is stopping)."""

    http_status = 503


class CancelToken:
    """A one-way stop request shared between the event loop and one worker thread.

    The worker checks it between steps (``raise_if_set``); a step blocked in I/O registers ``on_cancel`` to be
    woken (a download shuts its socket down). Thread-safe; setting it twice does nothing more.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.reason = "stopped"

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, reason: str = "stopped") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):  # best effort: waking a blocked read must not stop the stop
                callback()

    def raise_if_set(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)

    @contextlib.contextmanager
    def on_cancel(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call ``callback`` (from the setting thread) if the token is set while the block runs; at once if it
        already is."""
        with self._lock:
            now = self._event.is_set()
            if not now:
                self._callbacks.append(callback)
        if now:
            with contextlib.suppress(Exception):
                callback()
        try:
            yield
        finally:
            with self._lock:
                with contextlib.suppress(ValueError):
                    self._callbacks.remove(callback)


def start_thread(fn: Callable[[], T], name: str) -> tuple[threading.Thread, asyncio.Future[T]]:
    """Run ``fn`` in a named daemon thread; returns the thread (to join on shutdown) and a future of its result.

    Call on the event loop. Daemon, so a thread stuck in a network read cannot keep the process alive; the
    owner still joins it (``join_thread``) so that no thread is inside native code when the process exits.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def post(setter: Callable[[Any], None], value: Any) -> None:
        if not fut.done():
            setter(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(post, fut.set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(post, fut.set_result, result)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, fut


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
