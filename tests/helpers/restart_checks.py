"""What a restart test checks on a ``har-stream serve`` data directory, and the pieces it starts the server with:
a config file with quick reconnects and short events, a camera that changes action every loop, job uploads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import CHANGE_SCRIPT
from tests.helpers.rtsp_server import motion_loop

TEMP_MARKS = (".part", ".tmp")


def write_config(path: Path, cameras: dict[str, str] | None = None) -> Path:
    """A TOML config for test servers: fast reconnects, events of half a second, updates every second."""
    lines = ["reconnect_initial_s = 0.3", "reconnect_max_s = 1.5", "first_frame_timeout_s = 8.0",
             "stall_timeout_s = 3.0", "event_min_s = 0.5", "event_update_s = 1.0", "clip_threshold = 0.0",
             "preload = false", "allow_private_urls = true"]
    for name, url in (cameras or {}).items():
        lines += ["", "[[cameras]]", f'name = "{name}"', f'url = "{url}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def changing_frames() -> np.ndarray:
    """A loop of two actions the tiny model knows, so a camera on it opens and closes events every few seconds."""
    return np.concatenate([motion_loop("moving left", frames=32), motion_loop("holding still", frames=32)])


def long_clip(path: Path) -> Path:
    """115 s of video (written in ≈ 2 s): a job on it is still running when a test stops the server."""
    return write_motion_clip(path, CHANGE_SCRIPT * 36, seed=3, speed=0.4, start=(0.75, 0.3))


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database file, opened as a fresh reader would."""
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def temp_files(root: Path) -> list[str]:
    """Half-written files under ``root``: temp files of atomic writes and unfinished uploads."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and any(mark in p.name for mark in TEMP_MARKS))


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def submit_job(session: aiohttp.ClientSession, base: str, clip: Path, **fields: Any) -> dict[str, Any]:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, str(value))
    form.add_field("video", clip.read_bytes(), filename=clip.name, content_type="application/octet-stream")
    async with session.post(f"{base}/api/jobs", data=form) as response:
        body = await response.json()
        assert response.status == 202, body
        return body


async def all_events(session: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    status, body = await get_json(session, f"{base}/api/events?limit=1000")
    assert status == 200, body
    return {e["id"]: e for e in body["events"]}
