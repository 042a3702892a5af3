"""Read-only JSON endpoints and the page: health, models, status, ``/`` and ``/static``."""

from __future__ import annotations

from aiohttp import web

from .keys import CONFIG, MODELS, PEERS


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def models(request: web.Request) -> web.Response:
    return web.json_response(request.app[MODELS].describe())


async def status(request: web.Request) -> web.Response:
    peers = request.app[PEERS]
    return web.json_response({"peers": len(peers), "max_peers": peers.max_peers, "streams": peers.status()})


async def index(request: web.Request) -> web.FileResponse:
    page = request.app[CONFIG].web_dir / "index.html"
    if not page.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


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
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)
