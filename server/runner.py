"""Run the app until SIGINT/SIGTERM, then shut down in order: jobs, peers, cameras, then models. Exits within 10 s
(``stop_deadline.py``: one budget shared by the steps, and a last resort at its end).

Our own small runner rather than ``web.run_app``: it logs the address actually bound (``--port 0`` picks a
free one) and turns both signals into the same orderly stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from har_stream.worker import INFER_THREAD_PREFIX

from .app import create_app
from .auth import check_exposure
from .config import ServerConfig
from .keys import MODELS
from .models_service import LOAD_THREAD_PREFIX
from .stop_deadline import STOP_DEADLINE, LastResort, StopDeadline, alive_threads, leave
from .tls import ssl_context

log = logging.getLogger(__name__)

IO_THREAD_PREFIX = "har-io"  # the loop's default executor (asyncio.to_thread): URL resolving, probes, writes
DECODE_THREAD_PREFIX = "har-decode-"  # a source's decode thread (har_stream/sources/base.py)
IO_STOP_S = 2.0  # how long a stop waits for those threads (a yt-dlp read may take its 20 s timeout)


async def serve(config: ServerConfig, stop: asyncio.Event | None = None, *, exit_at_deadline: bool = False) -> None:
    """Serve until ``stop`` is set or a SIGINT/SIGTERM arrives. ``exit_at_deadline``: the process's own run
    (``run``), whose stop may end by ``os._exit`` at its deadline; never in a process that hosts others."""
    check_exposure(config)  # no token on a non-loopback address: refuse, saying why
    tls = ssl_context(config)
    loop = asyncio.get_running_loop()
    io = ThreadPoolExecutor(thread_name_prefix=IO_THREAD_PREFIX)  # ours, so a stop need not join a stuck read
    loop.set_default_executor(io)
    app = create_app(config)
    stop = stop or asyncio.Event()
    deadline = StopDeadline()
    app[STOP_DEADLINE] = deadline
    last_resort = LastResort(deadline, loop)

    async def bound_handlers(_: web.Application) -> None:  # the last on_shutdown hook: after jobs and peers
        runner._shutdown_timeout = deadline.bound(config.shutdown_timeout_s)  # aiohttp's wait for handlers

    app.on_shutdown.append(bound_handlers)
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout_s,
                           handler_cancellation=True)  # a client that hangs up cancels its /predict job
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, ssl_context=tls)
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            log.info("serving on %s://%s:%d (Ctrl-C to stop)", "https" if tls else "http",
                     f"[{host}]" if ":" in host else host, port)
        await stop.wait()
        log.info("stopping: recording running jobs, closing peers, cameras and models")
    finally:
        if exit_at_deadline:
            last_resort.arm()  # from here: out within STOP_BUDGET_S, whatever hangs
        deadline.start()
        app[MODELS].stop_loading()  # a load in progress stops at its next safe point while the rest closes
        for sig in signals:
            loop.remove_signal_handler(sig)
        try:
            await runner.cleanup()
        finally:
            await _close_io(loop, io, deadline)
        log.info("stopped")  # the last resort stays armed: the interpreter's exit still joins threads


async def _close_io(loop: asyncio.AbstractEventLoop, io: ThreadPoolExecutor, deadline: StopDeadline) -> None:
    """Shut the default executor down, waiting a bounded time for its threads. ``asyncio.run`` would wait for
    them without a limit (a URL job's yt-dlp read): it gets a fresh, idle executor to shut down instead, and
    ``run`` leaves without joining a thread still busy."""
    io.shutdown(wait=False, cancel_futures=True)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{IO_THREAD_PREFIX}-last"))
    end = time.monotonic() + deadline.bound(IO_STOP_S)
    while (busy := alive_threads([f"{IO_THREAD_PREFIX}_"])) and time.monotonic() < end:
        await asyncio.sleep(0.02)
    if busy:
        log.warning("stopping: not waiting for %s (still in a blocking call, e.g. a URL being resolved)",
                    ", ".join(busy))


@contextlib.asynccontextmanager
async def listening(config: ServerConfig) -> AsyncIterator[tuple[web.Application, str]]:
    """The app serving on a free 127.0.0.1 port, for in-process use (tests, ``bench live``); yields (app, url)
    and stops it (peers, then models) on exit."""
    tls = ssl_context(config)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        yield app, f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        app[MODELS].stop_loading()
        await runner.cleanup()


def run(config: ServerConfig) -> int:
    asyncio.run(serve(config, exit_at_deadline=True))
    # Everything is closed by now (jobs recorded, stores closed). Left to the interpreter, the final garbage
    # collection walks the whole torch heap: 2-4 s of a 10 s stop budget on a busy machine, 0.5 s frozen.
    gc.freeze()
    # Threads the stop gave up on (each logged above): a load stuck in a native step past its bound, a model
    # call the watchdog gave up on, a blocking read, a camera's decode thread still in FFmpeg's network read.
    # The interpreter's exit would join them (forever, for a call that never returns) or finalize under their
    # native calls: torch's or OpenVINO's threads destroyed ("terminate called without an active exception"),
    # once a segmentation fault after "stopped".
    stuck = alive_threads([LOAD_THREAD_PREFIX, INFER_THREAD_PREFIX, f"{IO_THREAD_PREFIX}_", DECODE_THREAD_PREFIX])
    if stuck:
        leave(f"{', '.join(stuck)} still inside a blocking or native call")
    return 0
