"""Opening one of the server's SQLite files the same way everywhere: WAL, a schema version, clear errors.

Why one place: the job store and the event store each keep a database in the data directory, and a user who
points ``--data-dir`` at the wrong folder, or runs an older har-stream on a newer database, must get the same
one-line answer from both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from har_stream.errors import ConfigError


def open_database(path: Path, schema_version: int, schema: Sequence[str]) -> sqlite3.Connection:
    """Connect (autocommit, usable from the owner's one thread), switch to WAL, refuse a newer schema, run the
    ``CREATE … IF NOT EXISTS`` statements in ``schema`` and record the version."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as err:
        raise ConfigError(f"cannot use the data directory {path.parent}: {err}; set --data-dir to a writable "
                          "folder") from err
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA journal_mode=WAL")
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
