"""``make_storage(config)``: the job, event and camera stores ``--database`` asks for, built in one place.

Why one place: the three stores must agree on where records live (all in SQLite files under ``--data-dir``,
or all in one shared PostgreSQL database), and a shared database brings a pool to open before the stores and
close after them, and the camera leases.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from .camera_leases import CameraLeases
from .camera_store import CameraStore
from .config import ServerConfig
from .database import Database, DatabaseSettings
from .event_store import EventRetention, EventStore
from .job_store import JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Storage:
    settings: DatabaseSettings
    database: Database | None  # the shared pool; None with SQLite
    jobs: JobStore
    events: EventStore
    cameras: CameraStore
    leases: CameraLeases | None  # None with SQLite: this front end watches every camera

    async def database_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: the pool opens (schema checked) before the stores, closes after them."""
        if self.database is None:
            yield
            return
        await self.database.open()
        log.info("records are kept in the shared database %s (this front end: %s)", self.settings.safe_url,
                 self.database.owner)
        try:
            yield
        finally:
            await self.database.aclose()


def make_storage(config: ServerConfig) -> Storage:
    settings = DatabaseSettings.parse(config.database)
    root = config.data_path
    retention = EventRetention(max_age_days=config.event_retention_days)
    if not settings.shared:
        return Storage(settings, None, JobStore(root), EventStore(root, retention), CameraStore(root), None)
    from .pg_stores import PgCameraStore, PgEventStore, PgJobStore  # asyncpg only when asked for

    database = Database(settings)
    return Storage(settings, database, PgJobStore(root, database), PgEventStore(root, database, retention),
                   PgCameraStore(root, database, config.lease_ttl_s), CameraLeases(database, config.lease_ttl_s))
