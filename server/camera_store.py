"""Cameras added through the API, on disk: one SQLite row per camera, so they are watched again after a restart.

Why a store of its own: config-file cameras come back from the config file; only the ones a user added with
``POST /api/streams`` would be lost. Each row is the camera as the user gave it (``parse_camera`` reads it
back, so a stored camera is checked exactly like a new one). The URL is kept whole, credentials included (the
server needs them to reconnect): the file is made readable by its owner only. Layout under ``root``::

    cameras.sqlite3
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from har_stream.errors import ConfigError

from .camera_spec import CameraSpec, parse_camera
from .sqlite_db import DatabaseThread, open_database

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "cameras.sqlite3"


def _document(spec: CameraSpec) -> str:
    """The camera as ``parse_camera`` takes it, with its real URL (``to_json`` hides credentials)."""
    return json.dumps({**spec.to_json(), "url": spec.url})


@dataclass(frozen=True)
class StoredCamera:
    spec: CameraSpec
    added: float  # epoch seconds


def stored_cameras(rows: Iterable[Mapping[str, Any]], where: str) -> list[StoredCamera]:
    """Rows of (name, spec, added) as cameras, checked as new ones are; a row that no longer parses is skipped with
    a warning naming ``where`` it is stored (a SQLite file or the shared database), whichever store read it."""
    cameras = []
    for row in rows:
        try:
            spec = parse_camera(json.loads(row["spec"]), f"stored camera {row['name']!r} in {where}")
        except (ConfigError, ValueError) as err:
            log.warning("%s; it is not watched (DELETE /api/streams/%s removes it)", err, row["name"])
            continue
        cameras.append(StoredCamera(spec, row["added"]))
    return cameras


class CameraStore(DatabaseThread):
    """``await open()`` before use, ``await aclose()`` after. Every write is one committed transaction."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / FILE_NAME
        super().__init__("cameras")

    async def open(self) -> list[StoredCamera]:
        """Open (or create) the database; returns the stored cameras, oldest first. A row that no longer
        parses (a hand-edited file, a field a newer version wrote) is skipped with a warning, and kept."""
        return await self._call(self._open)

    def _open(self) -> list[StoredCamera]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # owner-only from the start: the rows hold camera passwords
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as err:
            raise ConfigError(f"cannot use the data directory {self.root}: {err}; set --data-dir to a writable "
                              "folder") from err
        self._db = open_database(self.path, SCHEMA_VERSION, (
            "CREATE TABLE IF NOT EXISTS cameras (name TEXT PRIMARY KEY, spec TEXT NOT NULL, added REAL NOT NULL)",))
        return stored_cameras(self._db.execute("SELECT name, spec, added FROM cameras ORDER BY added, name"),
                              str(self.path))

    async def aclose(self) -> None:
        await self._close_database()

    async def put(self, spec: CameraSpec) -> None:
        """Insert or replace the camera named ``spec.name``."""
        def put() -> None:
            self._conn().execute("INSERT OR REPLACE INTO cameras (name, spec, added) VALUES (?, ?, ?)",
                                 (spec.name, _document(spec), time.time()))
        await self._call(put)

    async def delete(self, name: str) -> bool:
        """Forget the camera ``name``; False when none was stored."""
        def delete() -> bool:
            return self._conn().execute("DELETE FROM cameras WHERE name = ?", (name,)).rowcount > 0
        return await self._call(delete)

    async def names(self) -> list[str]:
        def names() -> list[str]:
            return [row[0] for row in self._conn().execute("SELECT name FROM cameras ORDER BY added, name")]
        return await self._call(names)
