"""Read-only JSON endpoints and the pages: health, models, status, ``/``, ``/analyse``, ``/cameras``, ``/events`` and
``/static``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from .keys import CONFIG, MODELS, PEERS


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def models(request: web.Request) -> web.Response:
    return web.json_response(request.app[MODELS].describe())


async def status(request: web.Request) -> web.Response:
    peers = request.app[PEERS]
    # "tasks": asyncio tasks alive in the server now; the soak test watches it for leaks (tests/test_soak.py)
    return web.json_response({"peers": len(peers), "max_peers": peers.max_peers, "streams": peers.status(),
                              "tasks": len(asyncio.all_tasks())})


def page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    """The handler of one of the pages in ``web/`` (``/``, ``/analyse``, ``/cameras``, ``/events``)."""
    async def handler(request: web.Request) -> web.FileResponse:
        path = request.app[CONFIG].web_dir / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
    return handler


async def static(request: web.Request) -> web.FileResponse:
    """A file under ``web/``; our own handler so a missing file is a JSON 404 like every other error."""
    root = request.app[CONFIG].web_dir.resolve()
    path = (root / request.match_info["path"]).resolve()
    if root not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/models", models)
    app.router.add_get("/api/status", status)
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/analyse", page("analyse.html"))
    app.router.add_get("/cameras", page("cameras.html"))
    app.router.add_get("/events", page("events.html"))
    app.router.add_get("/static/{path:.+}", static)
