"""Action events on disk: one SQLite row per event, one JPEG per event beside it.

Why SQLite: it ships with Python, survives crashes (WAL) and answers the events page's filters (camera,
label, time, open/closed) with indexes. One row per event is upserted by every message of it (start,
updates, end); a message older than the row (lower ``seq``) never overwrites a newer one.

Every database call runs on one thread owned by the store, so the event loop never waits on a disk flush.
``publish(event)`` is the recognition side's door: synchronous, never blocking, into a bounded queue that one
owned writer task drains (``drop_oldest`` when the disk cannot keep up, counted). Retention (age and count of
*closed* events) is applied when the store opens and whenever an event starts, so the disk cannot fill.
Layout under ``root``::

    events.sqlite3
    events/<id>.jpg      the snapshot of event <id>, written atomically (temp file + rename)

Opening the store ends events left open by a crash (``reason "interrupted"``, ended at their last update) and
removes snapshot files that no row names (a crash between the picture and the row).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from har_stream.errors import ConfigError
from har_stream.events import ActionEvent
from har_stream.fileutil import publish as publish_file
from har_stream.queues import put_drop_oldest

from .sqlite_db import DatabaseThread, open_database

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_LIMIT = 1000
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_event_id(event_id: str) -> bool:
    """Ids become file names: letters, digits, ``_`` and ``-`` only (the detector makes 32 hex digits)."""
    return bool(_ID.fullmatch(event_id))


def _epoch(moment: datetime | None) -> float | None:
    """Aware datetimes as they are; naive ones are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch is not None else None


@dataclass(frozen=True)
class EventRetention:
    """Closed events older than ``max_age_days`` (by their end) go, then the oldest beyond ``max_events``
    in all. None turns a limit off. Snapshots are ~15 KB, so 10,000 events hold about 150 MB."""

    max_age_days: float | None = 30.0
    max_events: int | None = 10_000

    def __post_init__(self) -> None:
        if self.max_age_days is not None and not self.max_age_days > 0:
            raise ConfigError(f"event retention must be a positive number of days (got {self.max_age_days})")
        if self.max_events is not None and self.max_events < 1:
            raise ConfigError(f"event retention must keep at least 1 event (got {self.max_events})")


@dataclass(frozen=True)
class EventQuery:
    """Filters for listing events, all optional. ``since``/``until`` select events that *overlap* that time
    (an open event lasts until now); naive datetimes are UTC. Results are newest first (by start)."""

    stream: str | None = None
    label: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: Literal["open", "closed"] | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be between 1 and {MAX_LIMIT} (got {self.limit})")
        if self.offset < 0:
            raise ConfigError(f"offset must be 0 or more (got {self.offset})")
        if self.state not in (None, "open", "closed"):
            raise ConfigError(f"state must be open or closed (got {self.state!r})")
        if self.since is not None and self.until is not None and _epoch(self.until) < _epoch(self.since):
            raise ConfigError("until must not be before since")

    def where(self) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if self.stream is not None:
            clauses.append("stream = ?")
            args.append(self.stream)
        if self.label is not None:
            clauses.append("label = ?")
            args.append(self.label)
        if self.since is not None:
            clauses.append("(ended_at IS NULL OR ended_at >= ?)")
            args.append(_epoch(self.since))
        if self.until is not None:
            clauses.append("started_at <= ?")
            args.append(_epoch(self.until))
        if self.state == "open":
            clauses.append("phase != 'end'")
        elif self.state == "closed":
            clauses.append("phase = 'end'")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


@dataclass(frozen=True)
class EventStoreStats:
    written: int
    dropped: int
    failed: int
    pruned: int
    queued: int
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed, "pruned": self.pruned,
                "queued": self.queued, "last_error": self.last_error}


_COLUMNS = ("id", "phase", "seq", "stream", "label", "start", "last", "end_t", "started_at", "ended_at",
            "updated_at", "peak", "mean", "peak_t", "windows", "reason", "has_snapshot")


def _row(event: ActionEvent) -> tuple[Any, ...]:
    return (event.id, event.phase, event.seq, event.stream, event.label, event.start, event.last, event.end,
            _epoch(event.started_at), _epoch(event.ended_at), _epoch(event.updated_at), event.peak_confidence,
            event.mean_confidence, event.peak_t, event.windows, event.reason, int(event.has_snapshot))


def _event(row: sqlite3.Row) -> ActionEvent:
    return ActionEvent(
        id=row["id"], phase=row["phase"], seq=row["seq"], stream=row["stream"], label=row["label"],
        start=row["start"], last=row["last"], end=row["end_t"], started_at=_moment(row["started_at"]),
        ended_at=_moment(row["ended_at"]), updated_at=_moment(row["updated_at"]), peak_confidence=row["peak"],
        mean_confidence=row["mean"], peak_t=row["peak_t"], windows=row["windows"], reason=row["reason"],
        has_snapshot=bool(row["has_snapshot"]))


class EventStore(DatabaseThread):
    """``await open()`` before use, ``await aclose()`` after. ``publish`` is the non-blocking door; the other
    methods are coroutines run on the store's thread. ``clock`` (epoch seconds) is injectable for retention
    tests."""

    def __init__(self, root: Path, retention: EventRetention = EventRetention(), *, queue_size: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        if queue_size < 1:
            raise ConfigError(f"event store queue size must be at least 1 (got {queue_size})")
        self.root = Path(root)
        self.snapshots_dir = self.root / "events"
        self.db_path = self.root / "events.sqlite3"
        self.retention = retention
        self._clock = clock
        super().__init__("events")
        self._queue: asyncio.Queue[ActionEvent] = asyncio.Queue(queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._written = self._dropped = self._failed = self._pruned = 0
        self._last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    async def open(self) -> int:
        """Open (or create) the database, apply retention, start the writer; returns how many events a crash
        had left open (now ended as ``interrupted``)."""
        interrupted = await self._call(self._open)
        self._writer = asyncio.create_task(self._write_loop(), name="har-events-writer")
        return interrupted

    def _open(self) -> int:
        try:
            self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot use the data directory {self.root}: {err}; set --data-dir to a writable "
                              "folder") from err
        db = open_database(self.db_path, SCHEMA_VERSION, (
            "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, phase TEXT NOT NULL, seq INTEGER NOT NULL,"
            " stream TEXT NOT NULL, label TEXT NOT NULL, start REAL NOT NULL, last REAL NOT NULL, end_t REAL,"
            " started_at REAL NOT NULL, ended_at REAL, updated_at REAL NOT NULL, peak REAL NOT NULL,"
            " mean REAL NOT NULL, peak_t REAL NOT NULL, windows INTEGER NOT NULL, reason TEXT,"
            " has_snapshot INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS events_started ON events (started_at)",
            "CREATE INDEX IF NOT EXISTS events_stream ON events (stream, started_at)",
            "CREATE INDEX IF NOT EXISTS events_label ON events (label, started_at)"))
        interrupted = db.execute(
            "UPDATE events SET phase = 'end', seq = seq + 1, reason = 'interrupted', end_t = last,"
            " ended_at = updated_at WHERE phase != 'end'").rowcount
        self._db = db
        self._sweep()
        self._prune()
        return interrupted

    def _sweep(self) -> None:
        """Remove temp files and snapshots no row names."""
        known = {row[0] for row in self._conn().execute("SELECT id FROM events WHERE has_snapshot = 1")}
        for path in self.snapshots_dir.iterdir():
            if path.is_file() and not (path.suffix == ".jpg" and path.stem in known):
                path.unlink(missing_ok=True)

    async def aclose(self, drain_timeout_s: float = 5.0) -> None:
        """Write what is queued (up to ``drain_timeout_s``), stop the writer, close the database."""
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout_s)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._close_database()

    # -- the recognition side's door ---------------------------------------------------------------------

    def publish(self, event: ActionEvent) -> None:
        """Queue an event for writing; never blocks. A full queue drops its oldest message (counted)."""
        if self._closed:
            self._dropped += 1
            return
        self._dropped += put_drop_oldest(self._queue, event)

    async def flush(self) -> None:
        """Wait until every event published so far is written (or has failed)."""
        await self._queue.join()

    async def _write_loop(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.put(event)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a full disk must not stop later writes, nor recognition
                self._failed += 1
                self._last_error = f"{type(err).__name__}: {err}"
                log.warning("could not store event %s of stream %s: %s", event.id, event.stream, err)
            finally:
                self._queue.task_done()

    def stats(self) -> EventStoreStats:
        return EventStoreStats(written=self._written, dropped=self._dropped, failed=self._failed,
                               pruned=self._pruned, queued=self._queue.qsize(), last_error=self._last_error)

    # -- records ----------------------------------------------------------------------------------------


    def snapshot_path(self, event_id: str) -> Path:
        if not valid_event_id(event_id):
            raise ValueError(f"not an event id: {event_id!r}")
        return self.snapshots_dir / f"{event_id}.jpg"

    def _write_snapshot(self, event_id: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.snapshots_dir, prefix=f".{event_id}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())  # on disk before the row that names it is committed
            publish_file(tmp, self.snapshot_path(event_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _put(self, event: ActionEvent) -> None:
        if not valid_event_id(event.id):
            raise ValueError(f"event id {event.id!r} is not usable as a file name")
        db = self._conn()
        if event.snapshot is not None:
            row = db.execute("SELECT seq, peak_t, has_snapshot FROM events WHERE id = ?", (event.id,)).fetchone()
            # Updates repeat the picture until a new peak: write it only when it is new (and never let an older
            # message's picture replace a newer one). Picture first: a crash leaves an orphan file, not a row
            # naming a missing picture.
            if row is None or (row["seq"] <= event.seq and (not row["has_snapshot"] or row["peak_t"] != event.peak_t)):
                self._write_snapshot(event.id, event.snapshot)
        marks = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("id", "has_snapshot"))
        db.execute(f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET "
                   f"{updates}, has_snapshot = max(has_snapshot, excluded.has_snapshot) "
                   "WHERE excluded.seq >= events.seq", _row(event))
        self._written += 1
        if event.phase == "start":
            self._prune()

    async def put(self, event: ActionEvent) -> None:
        """Insert or update an event's row (and its snapshot file when it carries one), now."""
        await self._call(self._put, event)

    async def get(self, event_id: str) -> ActionEvent | None:
        def get() -> ActionEvent | None:
            row = self._conn().execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
            return _event(row) if row is not None else None
        return await self._call(get)

    async def query(self, query: EventQuery = EventQuery()) -> list[ActionEvent]:
        """Events matching ``query``, newest first, ``limit`` at most from ``offset``."""
        where, args = query.where()

        def run() -> list[ActionEvent]:
            rows = self._conn().execute(f"SELECT * FROM events{where} ORDER BY started_at DESC, id LIMIT ? "
                                        "OFFSET ?", (*args, query.limit, query.offset))
            return [_event(r) for r in rows]
        return await self._call(run)

    async def count(self, query: EventQuery = EventQuery()) -> int:
        """How many events match ``query`` (its limit and offset aside)."""
        where, args = query.where()
        return await self._call(lambda: self._conn().execute(f"SELECT COUNT(*) FROM events{where}",
                                                             args).fetchone()[0])

    async def read_snapshot(self, event_id: str) -> bytes | None:
        """The event's JPEG, or None (unknown id, no picture, or pruned)."""
        if not valid_event_id(event_id):
            return None

        def read() -> bytes | None:
            try:
                return self.snapshot_path(event_id).read_bytes()
            except FileNotFoundError:
                return None
        return await self._call(read)

    async def delete(self, event_id: str) -> bool:
        """Remove one event and its snapshot; False when there was none."""
        return await self._call(lambda: bool(self._delete([event_id])))

    def _delete(self, ids: list[str]) -> int:
        """Rows first, then files: a crash in between leaves orphan files, which the next open sweeps."""
        if not ids:
            return 0
        db = self._conn()
        deleted = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            deleted += db.execute(f"DELETE FROM events WHERE id IN ({', '.join('?' for _ in chunk)})",
                                  chunk).rowcount
        for event_id in ids:
            if valid_event_id(event_id):
                self.snapshot_path(event_id).unlink(missing_ok=True)
        return deleted

    def _prune(self) -> int:
        db = self._conn()
        doomed: list[str] = []
        if self.retention.max_age_days is not None:
            cutoff = self._clock() - self.retention.max_age_days * 86400.0
            doomed += [r[0] for r in db.execute("SELECT id FROM events WHERE phase = 'end' AND ended_at < ?",
                                                (cutoff,))]
        if self.retention.max_events is not None:
            excess = db.execute("SELECT COUNT(*) FROM events").fetchone()[0] - len(doomed) - \
                self.retention.max_events
            if excess > 0:
                skip = set(doomed)
                oldest = db.execute("SELECT id FROM events WHERE phase = 'end' ORDER BY started_at, id LIMIT ?",
                                    (excess + len(skip),)).fetchall()
                doomed += [event_id for (event_id,) in oldest if event_id not in skip][:excess]
        pruned = self._delete(doomed)
        self._pruned += pruned
        return pruned

    async def prune(self) -> int:
        """Apply the retention now; returns how many events were removed."""
        return await self._call(self._prune)
