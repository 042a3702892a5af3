"""``--database``: where jobs, events and cameras are recorded, and the shared PostgreSQL pool when it is one.

Why a seam: one front end keeps its records in SQLite files under ``--data-dir`` (nothing to run beside it);
several front ends behind one page share one PostgreSQL database instead, so any of them lists any job, event
or camera, and camera leases (server/camera_leases.py) decide which one watches each camera. The URL is checked
when the config is built; the connection is opened (and the schema created or migrated, under an advisory lock
so two front ends starting together do not race) when the app starts. Every failure is one ``ConfigError``
line that names the database without its password.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from har_stream.errors import ConfigError

SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 10.0
_MIGRATION_LOCK = 0x4A525354  # pg_advisory_xact_lock key: one front end migrates at a time

# Each entry brings the schema from version i to i + 1; a new version appends, never edits, an entry.
MIGRATIONS: tuple[Sequence[str], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, node TEXT NOT NULL, state TEXT NOT NULL,"
        " created DOUBLE PRECISION NOT NULL, started DOUBLE PRECISION, finished DOUBLE PRECISION,"
        " source_kind TEXT NOT NULL, source_name TEXT NOT NULL, source_ref TEXT NOT NULL, source_size BIGINT,"
        " options TEXT NOT NULL, duration DOUBLE PRECISION, error TEXT, artifacts TEXT NOT NULL, result TEXT)",
        "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created)",
        "CREATE INDEX IF NOT EXISTS jobs_node ON jobs (node, state)",
        "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, phase TEXT NOT NULL, seq INTEGER NOT NULL,"
        " stream TEXT NOT NULL, label TEXT NOT NULL, start DOUBLE PRECISION NOT NULL,"
        " last DOUBLE PRECISION NOT NULL, end_t DOUBLE PRECISION, started_at DOUBLE PRECISION NOT NULL,"
        " ended_at DOUBLE PRECISION, updated_at DOUBLE PRECISION NOT NULL, peak DOUBLE PRECISION NOT NULL,"
        " mean DOUBLE PRECISION NOT NULL, peak_t DOUBLE PRECISION NOT NULL, windows INTEGER NOT NULL,"
        " reason TEXT, has_snapshot INTEGER NOT NULL, snapshot BYTEA)",
        "CREATE INDEX IF NOT EXISTS events_started ON events (started_at)",
        "CREATE INDEX IF NOT EXISTS events_stream ON events (stream, started_at)",
        "CREATE INDEX IF NOT EXISTS events_label ON events (label, started_at)",
        "CREATE TABLE IF NOT EXISTS cameras (name TEXT PRIMARY KEY, spec TEXT NOT NULL,"
        " added DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS camera_leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " expires_at TIMESTAMPTZ NOT NULL)",
    ),
)


@dataclass(frozen=True)
class DatabaseSettings:
    """``kind`` sqlite: files under ``--data-dir``; postgresql: ``url`` (password included, never shown)."""

    kind: Literal["sqlite", "postgresql"]
    url: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> DatabaseSettings:
        if text is None or text.strip() in ("", "sqlite"):
            return cls("sqlite")
        parts = urlsplit(text.strip())
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"--database must be sqlite or postgresql://USER@HOST[:PORT]/DB, got "
                              f"{_safe(text)!r}; correct it")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ConfigError(f"--database {_safe(text)}: the port is not a number; correct it") from None
        if not parts.hostname or not parts.path.strip("/"):
            raise ConfigError(f"--database {_safe(text)} needs a host and a database name "
                              "(postgresql://USER@HOST[:PORT]/DB); correct it")
        return cls("postgresql", text.strip())

    @property
    def shared(self) -> bool:
        return self.kind == "postgresql"

    @property
    def safe_url(self) -> str:
        return _safe(self.url) if self.url else "sqlite"


def _safe(url: str) -> str:
    """The URL without its password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def front_end_id() -> str:
    """This process among the front ends: ``host:pid:random`` (a restarted one is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Database:
    """The PostgreSQL pool the stores share. ``await open()`` before the stores open, ``await aclose()`` after
    they close."""

    def __init__(self, settings: DatabaseSettings, pool_size: int = 8) -> None:
        if not settings.shared:
            raise ValueError("Database is the shared (PostgreSQL) database; SQLite needs none")
        self.settings = settings
        self.owner = front_end_id()
        self._pool_size = pool_size
        self._pool: Any = None

    @property
    def pool(self) -> Any:
        """The ``asyncpg.Pool``."""
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    async def open(self) -> None:
        import asyncpg

        where = self.settings.safe_url
        try:
            self._pool = await asyncio.wait_for(asyncpg.create_pool(
                self.settings.url, min_size=1, max_size=self._pool_size, timeout=CONNECT_TIMEOUT_S,
                command_timeout=30.0), CONNECT_TIMEOUT_S + 5.0)
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as err:
            raise ConfigError(f"the database {where} refused the login ({err}); check the user and password "
                              "in --database") from None
        except asyncpg.InvalidCatalogNameError as err:
            raise ConfigError(f"the database {where} does not exist ({err}); create it (createdb) or correct "
                              "--database") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            raise ConfigError(f"cannot reach the database {where} ({type(err).__name__}: {err or 'timed out'}); "
                              "is PostgreSQL running there? check --database") from None
        try:
            await self._migrate()
        except BaseException:
            await self.aclose()
            raise

    async def _migrate(self) -> None:
        import asyncpg

        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute("CREATE TABLE IF NOT EXISTS har_stream_schema (version INTEGER NOT NULL)")
                version = await conn.fetchval("SELECT max(version) FROM har_stream_schema") or 0
                if version > SCHEMA_VERSION:
                    raise ConfigError(f"the database {self.settings.safe_url} was written by a newer har-stream "
                                      f"(schema {version}); upgrade this one, or point --database elsewhere")
                for step in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[step]:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO har_stream_schema (version) VALUES ($1)", step + 1)
        except asyncpg.PostgresError as err:
            raise ConfigError(f"cannot set up the tables in {self.settings.safe_url} ({err}); the user needs "
                              "CREATE rights there") from None

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except TimeoutError:
                pool.terminate()
