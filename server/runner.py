"""Run the app until SIGINT/SIGTERM, then shut down in order: peers, then models. Exits within seconds.

Our own small runner rather than ``web.run_app``: it logs the address actually bound (``--port 0`` picks a
free one) and turns both signals into the same orderly stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator

from aiohttp import web

from .app import create_app
from .auth import check_exposure
from .config import ServerConfig
from .keys import MODELS
from .models_service import LOAD_THREAD_PREFIX
from .tls import ssl_context

log = logging.getLogger(__name__)


async def serve(config: ServerConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set or a SIGINT/SIGTERM arrives."""
    check_exposure(config)  # no token on a non-loopback address: refuse, saying why
    tls = ssl_context(config)
    app = create_app(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
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
        app[MODELS].stop_loading()  # a load in progress stops at its next safe point while the rest closes
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


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
    asyncio.run(serve(config))
    # Everything is closed by now (jobs recorded, stores closed). Left to the interpreter, the final garbage
    # collection walks the whole torch heap: 2-4 s of a 10 s stop budget on a busy machine, 0.5 s frozen.
    gc.freeze()
    loading = [t.name for t in threading.enumerate() if t.name.startswith(LOAD_THREAD_PREFIX) and t.is_alive()]
    if loading:
        # A load stuck in a native step past its bound (logged above): the interpreter's exit would destroy
        # torch's or OpenVINO's threads under it and abort ("terminate called without an active exception").
        log.warning("leaving without the interpreter's exit: %s still inside a native call", ", ".join(loading))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
