"""Camera leases: with a shared database, each camera is watched by exactly one front end at a time.

Why leases in the database rather than a coordinator: the database is already the one thing every front end
shares, and a row with an expiry needs nothing else to run. A lease is ``(camera name, owner, expires_at)``,
``expires_at`` in the database's clock (so the front ends' clocks do not matter). Its owner renews it every
``lease_renew_s``; one not renewed for ``lease_ttl_s`` may be taken by any front end. So a front end that stops
cleanly hands its cameras over within one renewal period (it deletes its leases), and one that dies within
``lease_ttl_s + lease_renew_s``. A front end that cannot renew (the database is unreachable) for ``lease_ttl_s``
stops its cameras itself, so two front ends never watch one camera for long.

``LeaseKeeper`` is the loop that does it for the ``StreamManager``: renew, stop what was lost or deleted, take
what is free, and remember who owns the rest (``GET /api/streams`` lists those too, with their owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .camera_spec import CameraSpec
from .database import Database

if TYPE_CHECKING:
    from .pg_stores import PgCameraStore

log = logging.getLogger(__name__)


class CameraLeases:
    """The lease rows of one front end (``database.owner``)."""

    def __init__(self, database: Database, ttl_s: float) -> None:
        self.database = database
        self.ttl_s = ttl_s

    @property
    def owner(self) -> str:
        return self.database.owner

    async def acquire(self, name: str) -> bool:
        """Take the lease when it is free, expired or already ours. Taking it over from a front end that died
        also closes the events it left open on that camera (``interrupted``)."""
        async with self.database.pool.acquire() as conn, conn.transaction():
            previous = await conn.fetchval("SELECT owner FROM camera_leases WHERE name = $1", name)
            taken = await conn.fetchval(
                "INSERT INTO camera_leases (name, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 s') "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE camera_leases.expires_at < now() OR camera_leases.owner = excluded.owner RETURNING name",
                name, self.owner, self.ttl_s)
            if taken is None:
                return False
            if previous is not None and previous != self.owner:
                closed = await conn.execute(
                    "UPDATE events SET phase = 'end', seq = seq + 1, reason = 'interrupted', end_t = last,"
                    " ended_at = updated_at WHERE stream = $1 AND phase != 'end'", name)
                log.info("camera %s taken over from %s (its lease expired)%s", name, previous,
                         "" if closed.endswith(" 0") else f"; its open events were closed ({closed})")
            return True

    async def renew(self, names: Iterable[str]) -> set[str]:
        """Push the expiry of our leases on ``names`` out; returns the ones still ours."""
        rows = await self.database.pool.fetch(
            "UPDATE camera_leases SET expires_at = now() + $3 * interval '1 s' WHERE owner = $1 AND name = ANY($2)"
            " RETURNING name", self.owner, list(names), self.ttl_s)
        return {row["name"] for row in rows}

    async def release(self, names: Iterable[str]) -> None:
        await self.database.pool.execute("DELETE FROM camera_leases WHERE owner = $1 AND name = ANY($2)",
                                         self.owner, list(names))

    async def owners(self) -> dict[str, str]:
        """Camera name → owner, for the leases not expired."""
        rows = await self.database.pool.fetch("SELECT name, owner FROM camera_leases WHERE expires_at > now()")
        return {row["name"]: row["owner"] for row in rows}


@dataclass(frozen=True)
class RemoteCamera:
    """A camera another front end watches: what this one lists for it."""

    spec: CameraSpec
    origin: str
    owner: str | None  # None: no front end has room for it now


class LeasedCameras(Protocol):
    """What the keeper needs of the ``StreamManager``."""

    def watched(self) -> dict[str, str]: ...  # local camera name → origin

    def can_watch(self, name: str) -> bool: ...

    def watch(self, spec: CameraSpec, origin: str) -> None: ...

    def unwatch(self, name: str, why: str) -> None: ...

    def remote_changed(self) -> None: ...  # the pages' websocket pushes the list again


class LeaseKeeper:
    """Runs the lease loop for one ``StreamManager``. ``start()`` after the store opens; ``await stop()`` before
    the cameras stop; ``await release_all()`` after."""

    def __init__(self, leases: CameraLeases, store: PgCameraStore, config_cameras: tuple[CameraSpec, ...],
                 cameras: LeasedCameras, renew_s: float) -> None:
        self.leases = leases
        self.store = store
        self.config_cameras = config_cameras
        self.cameras = cameras
        self.renew_s = renew_s
        self.remote: dict[str, RemoteCamera] = {}
        self._held: set[str] = set()  # leases this front end holds (acquired, or written with a new camera)
        self._renewed = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str:
        return self.leases.owner

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="camera-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def release_all(self) -> None:
        """Hand every lease back, so another front end takes the cameras at its next renewal."""
        held, self._held = self._held, set()
        if held:
            with contextlib.suppress(Exception):  # unreachable: they expire by themselves
                await self.leases.release(held)
                log.info("released %d camera lease(s) to the other front ends", len(held))

    def adopt(self, name: str) -> None:
        """A camera this front end just added (its lease was written with it)."""
        self._held.add(name)
        self.remote.pop(name, None)

    def forget(self, name: str) -> None:
        """A camera removed through this front end (its rows are gone)."""
        self._held.discard(name)
        if self.remote.pop(name, None) is not None:
            self.cameras.remote_changed()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.leases.ttl_s):  # a hung database must not outlast the TTL
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the database is away: keep trying; give the cameras up past the TTL
                log.warning("camera leases: %s: %s", type(err).__name__, err or "timed out")
                if time.monotonic() - self._renewed > self.leases.ttl_s:
                    for name in sorted(self._held & set(self.cameras.watched())):
                        self.cameras.unwatch(name, "its lease could not be renewed (database unreachable)")
                    self._held.clear()
            await asyncio.sleep(self.renew_s)

    async def tick(self) -> None:
        """One round: renew, drop what was lost or deleted, take what is free, refresh the remote list."""
        local = self.cameras.watched()
        mine = self._held & set(local)
        kept = await self.leases.renew(mine)
        self._renewed = time.monotonic()
        for name in sorted(mine - kept):
            self._held.discard(name)
            self.cameras.unwatch(name, "its lease is gone (the camera was removed through another front end, or "
                                       "another front end took the lease)")
        stored = {camera.spec.name: camera.spec for camera in await self.store.all()}
        for name, origin in self.cameras.watched().items():
            if origin == "api" and name in self._held and name not in stored:  # deleted through another front end
                self._held.discard(name)
                self.cameras.unwatch(name, "it was removed through another front end")
                await self.leases.release([name])
        wanted: dict[str, tuple[CameraSpec, str]] = {name: (spec, "api") for name, spec in stored.items()}
        wanted.update({spec.name: (spec, "config") for spec in self.config_cameras})  # the config file wins
        owners = await self.leases.owners()
        remote = {}
        for name, (spec, origin) in wanted.items():
            owner = owners.get(name)
            if name in self.cameras.watched():
                continue
            if (owner is None or owner == self.owner) and self.cameras.can_watch(name) \
                    and await self.leases.acquire(name):
                self._held.add(name)
                if name not in self.cameras.watched():  # not added here meanwhile
                    self.cameras.watch(spec, origin)
                    log.info("camera %s: this front end holds its lease and watches it", name)
            else:  # watched elsewhere, or by nobody while every front end is full (owner None)
                remote[name] = RemoteCamera(spec, origin, owner if owner != self.owner else None)
        if remote != self.remote:
            self.remote = remote
            self.cameras.remote_changed()
