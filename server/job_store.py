"""Analysis jobs on disk: one SQLite table of job records, one folder of files per job.

Why SQLite: it ships with Python, survives crashes (WAL, one commit per state change) and lets a restarted
server list every job it ever finished. Only state changes are written; progress lives in memory.

Every call runs on one thread owned by the store, so the event loop never waits on a disk flush and the
connection is only ever used from one thread. Layout under ``root``::

    jobs.sqlite3
    jobs/<id>/input.<ext>      the upload (URL jobs have none)
    jobs/<id>/result.json, result.csv, playable.mp4, annotated.mp4
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from har_stream.errors import ConfigError

from .sqlite_db import DatabaseThread, open_database

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
SCHEMA_VERSION = 1
INTERRUPTED = ("interrupted: the server stopped unexpectedly while this job was running; its files were removed, "
               "submit it again")
STOPPED = ("interrupted: the server was stopped while this job was running; its files were removed, submit it "
           "again")


@dataclass(frozen=True)
class JobOptions:
    """What the user asked for; ``model=None`` means the server's default at the time the job runs."""

    model: str | None = None
    labels: str | None = None
    custom_labels: tuple[str, ...] | None = None
    stride: int = 8
    clip_threshold: float = 0.4
    annotate: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "labels": self.labels,
                "custom_labels": list(self.custom_labels) if self.custom_labels is not None else None,
                "stride": self.stride, "clip_threshold": self.clip_threshold, "annotate": self.annotate}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOptions:
        custom = data.get("custom_labels")
        return cls(model=data.get("model"), labels=data.get("labels"),
                   custom_labels=tuple(custom) if custom is not None else None, stride=int(data["stride"]),
                   clip_threshold=float(data["clip_threshold"]), annotate=bool(data["annotate"]))


@dataclass(frozen=True)
class JobSource:
    """Where a job's video comes from. ``ref`` is the URL (credentials included: never shown) or the upload's
    file name inside the job folder; ``name`` is what pages show."""

    kind: Literal["upload", "url"]
    name: str
    ref: str
    size: int | None = None


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table. ``artifacts`` maps what a job produced (media, annotated, result, csv) to
    file names in its folder."""

    id: str
    state: JobState
    created: float
    source: JobSource
    options: JobOptions
    started: float | None = None
    finished: float | None = None
    duration: float | None = None
    error: str | None = None
    artifacts: Mapping[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


_COLUMNS = ("id", "state", "created", "started", "finished", "source_kind", "source_name", "source_ref",
            "source_size", "options", "duration", "error", "artifacts")


def _row(record: JobRecord) -> tuple[Any, ...]:
    return (record.id, record.state, record.created, record.started, record.finished, record.source.kind,
            record.source.name, record.source.ref, record.source.size, json.dumps(record.options.to_json()),
            record.duration, record.error, json.dumps(dict(record.artifacts)))


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], state=row["state"], created=row["created"], started=row["started"],
        finished=row["finished"],
        source=JobSource(row["source_kind"], row["source_name"], row["source_ref"], row["source_size"]),
        options=JobOptions.from_json(json.loads(row["options"])), duration=row["duration"], error=row["error"],
        artifacts=json.loads(row["artifacts"]),
    )


def sweep_orphans(jobs_dir: Path, known: set[str]) -> None:
    """Remove what ``jobs_dir`` holds for no known job: the folder of an upload cut off by a crash before its row
    was written has nothing that could ever show or remove it."""
    for folder in jobs_dir.iterdir():
        if folder.name not in known:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            else:
                folder.unlink(missing_ok=True)


class JobStore(DatabaseThread):
    """``await open()`` before use, ``await aclose()`` after. Methods are coroutines run on the store's thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        super().__init__("jobs")

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # -- lifecycle --------------------------------------------------------------------------------------

    async def open(self) -> list[JobRecord]:
        """Open (or create) the database; returns the jobs that were queued when the server last stopped.

        Jobs still marked ``running`` were cut off by a crash: they are marked failed with a reason, and
        their files removed (as for any failed job). Job folders no row names (a crash during an upload, or
        between a folder's removal and its row's) are removed too."""
        return await self._call(self._open)

    def _open(self) -> list[JobRecord]:
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot use the data directory {self.root}: {err}; set --data-dir to a writable "
                              "folder") from err
        db = open_database(self.root / "jobs.sqlite3", SCHEMA_VERSION, (
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL,"
            " started REAL, finished REAL, source_kind TEXT NOT NULL, source_name TEXT NOT NULL,"
            " source_ref TEXT NOT NULL, source_size INTEGER, options TEXT NOT NULL, duration REAL,"
            " error TEXT, artifacts TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created)"))
        self._db = db
        crashed = [_record(r) for r in db.execute("SELECT * FROM jobs WHERE state = 'running'")]
        for record in crashed:
            shutil.rmtree(self.job_dir(record.id), ignore_errors=True)
            self._put(replace(record, state="failed", error=INTERRUPTED, finished=time.time(), artifacts={}))
        sweep_orphans(self.jobs_dir, {row[0] for row in db.execute("SELECT id FROM jobs")})
        return [_record(r) for r in db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created")]

    async def aclose(self) -> None:
        await self._close_database()

    # -- records ----------------------------------------------------------------------------------------

    def _put(self, record: JobRecord) -> None:
        marks = ", ".join("?" for _ in _COLUMNS)
        self._conn().execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})",
                             _row(record))

    async def put(self, record: JobRecord) -> None:
        """Insert or replace a job's record (one transaction)."""
        await self._call(self._put, record)

    async def get(self, job_id: str) -> JobRecord | None:
        def get() -> JobRecord | None:
            row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return _record(row) if row is not None else None
        return await self._call(get)

    async def list(self, limit: int = 500) -> list[JobRecord]:
        """The newest ``limit`` jobs, newest first."""
        def list_() -> list[JobRecord]:
            rows = self._conn().execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
            return [_record(r) for r in rows]
        return await self._call(list_)

    async def delete(self, job_id: str) -> None:
        """Remove the record and the job's folder (files first: a crash in between leaves a record whose files
        are gone, which reads as a finished job without downloads, never as orphaned files)."""
        def delete() -> None:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
            self._conn().execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        await self._call(delete)

    async def remove_files(self, job_id: str) -> None:
        await self._call(shutil.rmtree, self.job_dir(job_id), True)

    async def read_result(self, record: JobRecord) -> Any:
        """The job's result document (its ``result.json``); OSError or ValueError when gone or unreadable.
        A method of the store because a shared database keeps a copy in the row (server/pg_stores.py)."""
        path = self.job_dir(record.id) / record.artifacts["result"]
        return json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
