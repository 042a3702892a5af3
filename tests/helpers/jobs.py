"""Talking to the jobs API in tests: the real app behind aiohttp's test client, uploads, waiting on the websocket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import ServerConfig
from server.keys import MODELS


@contextlib.asynccontextmanager
async def jobs_client(config: ServerConfig, *, wait_for_default: bool = True) -> AsyncIterator[TestClient]:
    """The real app (models, jobs, database) on a test server, with its client; stopped on exit."""
    app = create_app(config)
    async with TestClient(TestServer(app)) as client:
        if wait_for_default:
            await app[MODELS].wait_ready(app[MODELS].default, timeout=60)
        yield client


def jobs_config(checkpoint: Path, tmp: Path, **kw: Any) -> ServerConfig:
    """A server on the tiny test model, offline, with its own data directory (``tmp / "data"``)."""
    settings: dict[str, Any] = dict(model=str(checkpoint), offline=True, home=tmp / "home", port=0, stride=4,
                                    data_dir=tmp / "data", preload=False, clip_threshold=0.0)
    settings.update(kw)
    return ServerConfig(**settings)


async def upload(client: TestClient, path: Path, *, field: str = "video", filename: str | None = None,
                 target: str = "/api/jobs", **fields: Any) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, str(value))
    form.add_field(field, Path(path).read_bytes(), filename=filename or Path(path).name,
                   content_type="application/octet-stream")
    return await client.post(target, data=form)


async def submit(client: TestClient, path: Path, **fields: Any) -> dict[str, Any]:
    response = await upload(client, path, **fields)
    body = await response.json()
    assert response.status == 202, body
    return body


async def watch(client: TestClient, job_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every document the job's websocket pushes, until it closes (after the final state)."""
    seen: list[dict[str, Any]] = []
    async with client.ws_connect(f"/api/jobs/{job_id}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        while True:
            msg = await ws.receive(timeout=timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            seen.append(msg.json())
    return seen


async def finished(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The job's full document (with ``result`` when done) once it is final."""
    docs = await watch(client, job_id, timeout)
    assert docs and docs[-1]["state"] in ("done", "failed", "cancelled"), docs[-1:]
    response = await client.get(f"/api/jobs/{job_id}")
    assert response.status == 200
    return await response.json()


def job_files(config: ServerConfig) -> list[str]:
    """Every file under the data directory's job folders, relative: nothing may be left behind."""
    root = config.data_path / "jobs"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
