"""One deadline for a whole stop: SIGTERM must end the process within 10 s (``docker compose stop`` then kills).

Every step of a stop has its own bound (peers, cameras, the HTTP handlers, the event flush, the models), but
their sum is well past 10 s, and a thread stuck in a network read or a model call would hold the interpreter's
exit forever. So the stop shares one monotonic budget (``StopDeadline``: each step waits at most
``bound(its own)``, what is left of it), and a ``LastResort`` thread, armed at the signal, leaves the process by
``os._exit(0)`` at the deadline, logging what was still running, if the orderly stop has not ended by then.

The budget for the steps ends ``reserve_s`` before that exit, so the stores (SQLite in WAL mode with
synchronous commits: a finished job or a stored event is on disk once committed) are closed by the orderly
path first; should the last resort fire anyway, it loses no more than a ``kill -9`` would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable

from aiohttp import web

log = logging.getLogger(__name__)

STOP_BUDGET_S = 9.0  # from the signal to the exit at the latest
STORE_RESERVE_S = 1.5  # the steps' budget ends this long before the exit: the stores close in it


class StopDeadline:
    """The budget of one stop, started at the signal."""

    def __init__(self, budget_s: float = STOP_BUDGET_S, reserve_s: float = STORE_RESERVE_S) -> None:
        self.budget_s = budget_s
        self.reserve_s = reserve_s
        self.exit_at: float | None = None  # monotonic time of the last resort's exit

    def start(self) -> None:
        if self.exit_at is None:
            self.exit_at = time.monotonic() + self.budget_s

    def left(self) -> float:
        """Seconds the stop's steps may still take (the whole budget before the signal)."""
        if self.exit_at is None:
            return self.budget_s - self.reserve_s
        return max(0.0, self.exit_at - self.reserve_s - time.monotonic())

    def bound(self, own: float) -> float:
        """A step's wait: its own bound, or what is left of the stop's if that is less."""
        return max(0.0, min(own, self.left()))


STOP_DEADLINE = web.AppKey("stop_deadline", StopDeadline)  # set by the runner; steps bound their waits by it


def leave(reason: str) -> None:
    """Exit now without the interpreter's exit (which joins every thread, and destroys torch's or OpenVINO's
    under a native call): the logs flushed, code 0 (a requested stop)."""
    log.warning("leaving without the interpreter's exit: %s", reason)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def alive_threads(prefixes: Iterable[str]) -> list[str]:
    """Names of the live threads whose names start with one of ``prefixes``."""
    starts = tuple(prefixes)
    return [t.name for t in threading.enumerate() if t.name.startswith(starts) and t.is_alive()]


class LastResort:
    """A daemon thread that ends the process at ``deadline.exit_at`` if it is still there. Never disarmed: after
    the stop, the interpreter's exit joins the remaining threads, which may hang too."""

    def __init__(self, deadline: StopDeadline, loop: asyncio.AbstractEventLoop) -> None:
        self.deadline = deadline
        self.loop = loop
        self._thread = threading.Thread(target=self._wait, name="har-stop-deadline", daemon=True)

    def arm(self) -> None:
        self.deadline.start()
        self._thread.start()

    def _wait(self) -> None:
        assert self.deadline.exit_at is not None
        time.sleep(max(0.0, self.deadline.exit_at - time.monotonic()))
        leave(f"the stop ran past its {self.deadline.budget_s:g} s budget; still running: {self._running()}")

    def _running(self) -> str:
        threads = [t.name for t in threading.enumerate()
                   if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        try:  # read from another thread: good enough for a log line, and it may fail while the loop changes it
            tasks = sorted(t.get_name() for t in asyncio.all_tasks(self.loop) if not t.done())
        except RuntimeError:
            tasks = ["(could not be listed)"]
        return f"tasks {', '.join(tasks) or 'none'}; threads {', '.join(threads) or 'none'}"
