"""Opening one of the server's SQLite files the same way everywhere: WAL, a schema version, clear errors.

Why one place: the job store and the event store each keep a database in the data directory, and a user who
points ``--data-dir`` at the wrong folder, or runs an older har-stream on a newer database, must get the same
one-line answer from both.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from har_stream.errors import ConfigError

T = TypeVar("T")


def open_database(path: Path, schema_version: int, schema: Sequence[str]) -> sqlite3.Connection:
    """Connect (autocommit, usable from the owner's one thread), switch to WAL with ``synchronous=FULL`` (each
    commit is fsynced before it returns, so a kill or a power cut after a write keeps it), refuse a newer
    schema, run the ``CREATE … IF NOT EXISTS`` statements in ``schema`` and record the version."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as err:
        raise ConfigError(f"cannot use the data directory {path.parent}: {err}; set --data-dir to a writable "
                          "folder") from err
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # every commit reaches the disk: a finished job is never lost
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version:
            raise ConfigError(f"{path} was written by a newer har-stream (schema {version}); upgrade, or point "
                              "--data-dir elsewhere")
        for statement in schema:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {int(schema_version)}")
    except (sqlite3.DatabaseError, ConfigError) as err:
        db.close()
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path} is not a usable database ({err}); move it away or set --data-dir to another "
                          "folder") from err
    return db


class DatabaseThread:
    """One SQLite connection used from one thread this object owns: the stores' common plumbing.

    ``_call(fn, *args)`` runs ``fn`` on that thread (so the event loop never waits on a disk flush); ``_conn()``
    is the connection, for code already on the thread; ``_close_database()`` ends both.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"har-{what}-db")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the {self._what} store is not open")
        return self._db

    async def _close_database(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        await self._call(close)
        self._thread.shutdown(wait=True)
