"""The job, event and camera stores on a shared PostgreSQL database (``--database postgresql://…``).

Why subclasses of the SQLite stores: the rest of the server (the job manager, the event hub's bounded writer
queue, the stream manager) talks to one interface, so the seam is only which class ``server/storage.py`` builds.
What differs because several front ends share the rows:

* jobs carry the ``node`` that runs them (an id kept in its ``--data-dir``, so a container with a new host name
  on the same volume is the same node): only that node resumes its queued jobs or fails its interrupted ones at
  start, since the uploads live in its data dir. A finished job's result
  JSON is copied into the row, so any front end answers ``GET /api/jobs/{id}`` with it; the media files
  (playable/annotated video, CSV) stay on the node that ran the job and are served there only.
* an event's snapshot JPEG is a ``bytea`` in its row (they are ~15 KB), so any front end serves any picture.
  Events left open by a front end that died are closed (``interrupted``) by the front end that takes over its
  camera (server/camera_leases.py), not by whichever front end starts next.
* adding a camera inserts its row and its lease in one transaction: a name taken on any front end is a 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from har_stream.errors import ConfigError, HarStreamError
from har_stream.events import ActionEvent

from .camera_spec import CameraSpec
from .camera_store import CameraStore, StoredCamera, _document, stored_cameras
from .database import Database
from .event_store import (_COLUMNS as EVENT_COLUMNS, EventQuery, EventRetention, EventStore, _event, _row as event_row,
                          valid_event_id)
from .job_store import (_COLUMNS as JOB_COLUMNS, INTERRUPTED, JobRecord, JobStore, _record, _row as job_row,
                        sweep_orphans)

log = logging.getLogger(__name__)

NODE_FILE = "node-id"


class CameraTakenError(HarStreamError):
    """The camera name is already used on one of the front ends sharing the database."""

    http_status = 409


def _numbered(sql: str, first: int = 1) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$1, $2, …``."""
    parts = sql.split("?")
    return "".join(part + (f"${first + i}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


# -- jobs -------------------------------------------------------------------------------------------------

class PgJobStore(JobStore):
    """Job records in the shared database; files under this front end's ``root`` as with SQLite."""

    def __init__(self, root: Path, database: Database) -> None:
        super().__init__(root)
        self.database = database
        self.node = ""  # read at open()

    def _node_id(self) -> str:
        """This data dir's id among the front ends (created once, then kept with the files it names)."""
        path = self.root / NODE_FILE
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            node = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
            tmp = path.with_name(f".{NODE_FILE}.tmp")
            tmp.write_text(node + "\n", encoding="utf-8")
            tmp.replace(path)
            return node

    async def open(self) -> list[JobRecord]:
        try:
            await asyncio.to_thread(self.jobs_dir.mkdir, parents=True, exist_ok=True)
            self.node = await asyncio.to_thread(self._node_id)
        except OSError as err:
            raise ConfigError(f"cannot use the data directory {self.root}: {err}; set --data-dir to a writable "
                              "folder") from err
        pool = self.database.pool
        crashed = [_record(r) for r in await pool.fetch(
            "SELECT * FROM jobs WHERE state = 'running' AND node = $1", self.node)]
        for record in crashed:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(record.id), True)
            await self.put(replace(record, state="failed", error=INTERRUPTED, finished=time.time(), artifacts={}))
        known = {row[0] for row in await pool.fetch("SELECT id FROM jobs WHERE node = $1", self.node)}
        await asyncio.to_thread(sweep_orphans, self.jobs_dir, known)
        return [_record(r) for r in await pool.fetch(
            "SELECT * FROM jobs WHERE state = 'queued' AND node = $1 ORDER BY created", self.node)]

    async def aclose(self) -> None:
        await self._close_database()  # the file thread; the pool is the Database's

    async def put(self, record: JobRecord) -> None:
        """Insert or replace the record; a finished job's result JSON goes into the row with it."""
        result = None
        if record.state == "done" and "result" in record.artifacts:
            path = self.job_dir(record.id) / record.artifacts["result"]
            try:
                result = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except OSError as err:
                log.warning("job %s: its result file could not be copied to the database: %s", record.id, err)
        columns = (*JOB_COLUMNS, "node", "result")
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        await self.database.pool.execute(
            f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
            *job_row(record), self.node, result)

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self.database.pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return _record(row) if row is not None else None

    async def list(self, limit: int = 500) -> list[JobRecord]:
        rows = await self.database.pool.fetch("SELECT * FROM jobs ORDER BY created DESC LIMIT $1", limit)
        return [_record(r) for r in rows]

    async def delete(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
        await self.database.pool.execute("DELETE FROM jobs WHERE id = $1", job_id)

    async def read_result(self, record: JobRecord) -> Any:
        """The result document from the row (any front end), else from this front end's file."""
        text = await self.database.pool.fetchval("SELECT result FROM jobs WHERE id = $1", record.id)
        if text is None:
            return await super().read_result(record)
        return json.loads(text)


# -- events -----------------------------------------------------------------------------------------------

class PgEventStore(EventStore):
    """Events and their snapshots in the shared database; ``publish``'s bounded queue and writer are the
    SQLite store's."""

    def __init__(self, root: Path, database: Database, retention: EventRetention = EventRetention(),
                 *, queue_size: int = 1000) -> None:
        super().__init__(root, retention, queue_size=queue_size)
        self.database = database

    async def open(self) -> int:
        """Apply retention and start the writer; open events are left to the camera's next owner (0)."""
        await self.prune()
        self._writer = asyncio.create_task(self._write_loop(), name="har-events-writer")
        return 0

    async def aclose(self, drain_timeout_s: float = 5.0) -> None:
        await super().aclose(drain_timeout_s)  # drains the queue, stops the writer, ends the (idle) thread

    async def put(self, event: ActionEvent) -> None:
        if not valid_event_id(event.id):
            raise ValueError(f"event id {event.id!r} is not usable as a file name")
        columns = (*EVENT_COLUMNS, "snapshot")
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        updates = ", ".join(f"{c} = excluded.{c}" for c in EVENT_COLUMNS if c not in ("id", "has_snapshot"))
        await self.database.pool.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}, "
            "has_snapshot = GREATEST(events.has_snapshot, excluded.has_snapshot), "
            "snapshot = COALESCE(excluded.snapshot, events.snapshot) WHERE excluded.seq >= events.seq",
            *event_row(event), event.snapshot)
        self._written += 1
        if event.phase == "start":
            await self.prune()

    async def get(self, event_id: str) -> ActionEvent | None:
        row = await self.database.pool.fetchrow("SELECT * FROM events WHERE id = $1", event_id)
        return _event(row) if row is not None else None

    async def query(self, query: EventQuery = EventQuery()) -> list[ActionEvent]:
        where, args = query.where()
        sql = _numbered(f"SELECT * FROM events{where} ORDER BY started_at DESC, id LIMIT ? OFFSET ?")
        return [_event(r) for r in await self.database.pool.fetch(sql, *args, query.limit, query.offset)]

    async def count(self, query: EventQuery = EventQuery()) -> int:
        where, args = query.where()
        return await self.database.pool.fetchval(_numbered(f"SELECT COUNT(*) FROM events{where}"), *args)

    async def read_snapshot(self, event_id: str) -> bytes | None:
        if not valid_event_id(event_id):
            return None
        data = await self.database.pool.fetchval("SELECT snapshot FROM events WHERE id = $1", event_id)
        return bytes(data) if data is not None else None

    async def delete(self, event_id: str) -> bool:
        return await self.database.pool.fetchval("DELETE FROM events WHERE id = $1 RETURNING id", event_id) \
            is not None

    async def prune(self) -> int:
        """Retention over all front ends' events, in one statement each."""
        pool, pruned = self.database.pool, 0
        if self.retention.max_age_days is not None:
            cutoff = time.time() - self.retention.max_age_days * 86400.0
            pruned += len(await pool.fetch("DELETE FROM events WHERE phase = 'end' AND ended_at < $1 RETURNING id",
                                           cutoff))
        if self.retention.max_events is not None:
            pruned += len(await pool.fetch(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE phase = 'end' ORDER BY started_at, id"
                " LIMIT GREATEST(0, (SELECT COUNT(*) FROM events) - $1)) RETURNING id", self.retention.max_events))
        self._pruned += pruned
        return pruned


# -- cameras ----------------------------------------------------------------------------------------------

class PgCameraStore(CameraStore):
    """Cameras added through any front end; adding one also gives this front end its lease."""

    def __init__(self, root: Path, database: Database, lease_ttl_s: float) -> None:
        super().__init__(root)
        self.database = database
        self.lease_ttl_s = lease_ttl_s

    async def open(self) -> list[StoredCamera]:
        return await self.all()

    async def all(self) -> list[StoredCamera]:
        """Every stored camera, oldest first (a row that no longer parses is skipped with a warning)."""
        rows = await self.database.pool.fetch("SELECT name, spec, added FROM cameras ORDER BY added, name")
        return stored_cameras(rows, "the database")

    async def aclose(self) -> None:
        await self._close_database()

    async def put(self, spec: CameraSpec) -> None:
        """Insert the camera and this front end's lease on it; a name stored by any front end is a 409."""
        async with self.database.pool.acquire() as conn, conn.transaction():
            added = await conn.fetchval(
                "INSERT INTO cameras (name, spec, added) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING "
                "RETURNING name", spec.name, _document(spec), time.time())
            if added is None:
                raise CameraTakenError(f"a camera named {spec.name!r} is already stored by a front end sharing "
                                       "this database; remove it first or pick another name")
            leased = await conn.fetchval(
                "INSERT INTO camera_leases (name, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 s') "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE camera_leases.expires_at < now() OR camera_leases.owner = excluded.owner RETURNING name",
                spec.name, self.database.owner, self.lease_ttl_s)
            if leased is None:  # a config-file camera of that name, watched by another front end
                raise CameraTakenError(f"a camera named {spec.name!r} is watched by another front end sharing "
                                       "this database; pick another name")

    async def delete(self, name: str) -> bool:
        """Forget the camera and its lease; its owner stops it at its next renewal."""
        async with self.database.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM camera_leases WHERE name = $1", name)
            return await conn.fetchval("DELETE FROM cameras WHERE name = $1 RETURNING name", name) is not None

    async def names(self) -> list[str]:
        return [c.spec.name for c in await self.all()]
