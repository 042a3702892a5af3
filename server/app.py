"""``create_app(config)``: the aiohttp application behind ``har-stream serve``.

Every long-lived thing has an owner here: ``cleanup_ctx`` starts the model service (and the aioice loopback
patch when asked for) and stops it last; the job manager starts after it and stops before it; the peer
registry and the jobs' websockets are closed on shutdown, before the models, so no stream or job outlives the
workers it uses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import weakref

from aiohttp import WSCloseCode, web

from . import api, health, jobs_api, metrics, signalling, streams_api
from .config import ServerConfig
from .auth import auth_middleware, setup_auth
from .errors import error_middleware
from .ice import ice_host_addresses, resolve_interfaces
from .event_hub import EventHub
from .jobs import JobManager
from .keys import CONFIG, EVENTS, JOBS, MODELS, PEERS, STREAMS, WEBSOCKETS
from .models_service import ModelService
from .peers import PeerRegistry
from .streams import StreamManager
from .stop_deadline import STOP_DEADLINE
from .storage import make_storage

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


def create_app(config: ServerConfig) -> web.Application:
    """Build the app; models start loading when it starts (e.g. in ``web.AppRunner.setup``), not here."""
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONFIG] = config
    setup_auth(app, config)  # reads the token file now: a missing one fails before anything starts
    app[PEERS] = PeerRegistry(config.max_peers)
    app[MODELS] = ModelService(config)  # checks the model options now: a typo fails before anything starts
    storage = make_storage(config)  # --database: SQLite files under --data-dir, or a shared PostgreSQL
    app[JOBS] = JobManager(config, app[MODELS], storage.jobs)
    app[EVENTS] = EventHub(config, storage.events)  # checks the webhook and MQTT settings now
    app[STREAMS] = StreamManager(config, app[MODELS], app[EVENTS], store=storage.cameras, leases=storage.leases)
    app[WEBSOCKETS] = weakref.WeakSet()
    if config.ice_loopback or config.ice_interfaces:
        app.cleanup_ctx.append(_ice_addresses_ctx)
    app.cleanup_ctx.append(storage.database_ctx)  # before the stores open, closed after them
    app.cleanup_ctx.append(_models_ctx)
    app.cleanup_ctx.append(_jobs_ctx)  # cleaned up before the models (cleanup runs in reverse)
    app.cleanup_ctx.append(_streams_ctx)  # cameras stop first, then their events' destinations
    app.on_shutdown.append(_stop_jobs)  # first: no job starts or finishes while the rest stops
    app.on_shutdown.append(_close_peers)
    app.on_shutdown.append(_close_websockets)
    api.add_routes(app)
    health.add_routes(app)  # /healthz, /readyz
    metrics.add_routes(app)  # /metrics, read from the objects above at scrape time
    jobs_api.add_routes(app)
    streams_api.add_routes(app)
    app.router.add_post("/api/webrtc/offer", signalling.offer)
    return app


async def _ice_addresses_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    addresses = (["127.0.0.1"] if config.ice_loopback else []) + resolve_interfaces(config.ice_interfaces)
    with ice_host_addresses(dict.fromkeys(addresses)):
        log.info("ICE: offering %s only%s", ", ".join(dict.fromkeys(addresses)),
                 " (loopback mode)" if config.ice_loopback and not config.ice_interfaces else "")
        yield


async def _models_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[MODELS]
    await service.start()
    try:
        yield
    finally:
        await _close_peers(app)  # also when shutdown was skipped (e.g. a test server's plain cleanup)
        await service.aclose()


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    jobs = app[JOBS]
    await jobs.start()  # opens the database: a bad --data-dir fails the start, with its reason
    try:
        yield
    finally:
        await jobs.aclose()  # running jobs are marked failed ("interrupted: …"); queued ones stay queued


async def _streams_ctx(app: web.Application) -> AsyncIterator[None]:
    hub, streams = app[EVENTS], app[STREAMS]
    await hub.start()
    try:
        await streams.start()  # the config file's cameras
        try:
            yield
        finally:
            await streams.aclose()  # each camera closes its open event on the way out
    finally:
        await hub.aclose()


async def _stop_jobs(app: web.Application) -> None:
    await app[JOBS].stop()  # a running job is recorded as failed ("interrupted: …"); queued ones stay queued


async def _close_websockets(app: web.Application) -> None:
    for ws in tuple(app[WEBSOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _close_peers(app: web.Application) -> None:
    timeout = app[CONFIG].shutdown_timeout_s
    if (deadline := app.get(STOP_DEADLINE)) is not None:  # `har-stream serve`: what is left of the stop's budget
        timeout = deadline.bound(timeout)
    await app[PEERS].aclose(timeout=timeout)
