"""HTTP face of the cameras and their events: ``/api/streams…`` and ``/api/events…`` (the pages: ``api.py``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from har_stream.errors import ConfigError

from .camera_spec import parse_camera
from .errors import BadRequestError, NotFoundError
from .event_store import EventQuery, valid_event_id
from .keys import CONFIG, EVENTS, STREAMS
from .signalling import check_offer_sdp, read_json
from .ws_push import push_changes

WS_MIN_INTERVAL_S = 0.2


# -- cameras ------------------------------------------------------------------------------------------------

async def add_stream(request: web.Request) -> web.Response:
    spec = parse_camera(await read_json(request))
    camera = await request.app[STREAMS].add(spec)
    return web.json_response(request.app[STREAMS].describe(camera.spec.name), status=201,
                             headers={"Location": f"/api/streams/{camera.spec.name}"})


async def list_streams(request: web.Request) -> web.Response:
    return web.json_response({"streams": request.app[STREAMS].list_all(),
                              "max_streams": request.app[CONFIG].max_streams})


async def get_stream(request: web.Request) -> web.Response:
    return web.json_response(request.app[STREAMS].describe(request.match_info["name"]))


async def delete_stream(request: web.Request) -> web.Response:
    """202 at once: the camera is off the list and forgotten; its stream closes in the background (a camera
    stuck in a network read takes seconds), and its name is refused with 409 until it has."""
    name = request.match_info["name"]
    await request.app[STREAMS].remove(name)
    return web.json_response({"deleted": name}, status=202)


async def viewer(request: web.Request) -> web.Response:
    """A browser's offer to watch a camera (receive-only video) → the answer with the relayed track."""
    streams = request.app[STREAMS]
    streams.get(request.match_info["name"])  # 404 before reading the SDP
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
        raise BadRequestError('send {"sdp": "<the browser\'s offer>", "type": "offer"}')
    check_offer_sdp(body["sdp"], need_channel=False)
    sdp = await streams.answer_viewer(request.match_info["name"], body["sdp"])
    return web.json_response({"sdp": sdp, "type": "answer"})


async def streams_ws(request: web.Request) -> web.WebSocketResponse:
    """Every camera's document on every change (labels, states), at most every ``WS_MIN_INTERVAL_S``."""
    streams = request.app[STREAMS]

    async def snapshot() -> tuple[dict[str, Any], bool]:
        return {"streams": streams.list_all()}, False

    return await push_changes(request, snapshot, streams.change_event, WS_MIN_INTERVAL_S)


# -- events -------------------------------------------------------------------------------------------------

def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestError(f"{name} must be an ISO time such as 2026-11-26T13:00:00Z, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer, got {value!r}") from None


async def list_events(request: web.Request) -> web.Response:
    q = request.query
    unknown = set(q) - {"stream", "label", "since", "until", "state", "limit", "offset"}
    if unknown:
        raise BadRequestError(f"unknown filter(s) {', '.join(sorted(unknown))}; use stream, label, since, until, "
                              "state, limit, offset")
    try:
        query = EventQuery(stream=q.get("stream") or None, label=q.get("label") or None,
                           since=_time(q.get("since"), "since"), until=_time(q.get("until"), "until"),
                           state=q.get("state") or None,  # type: ignore[arg-type]
                           limit=_int(q.get("limit"), "limit", 100), offset=_int(q.get("offset"), "offset", 0))
    except ConfigError as err:
        raise BadRequestError(str(err)) from None
    store = request.app[EVENTS].store
    events, total = await store.query(query), await store.count(query)
    return web.json_response({"events": [e.to_json() for e in events], "total": total})


async def _event(request: web.Request) -> Any:
    event_id = request.match_info["id"]
    event = await request.app[EVENTS].store.get(event_id) if valid_event_id(event_id) else None
    if event is None:
        raise NotFoundError(f"no event {event_id!r}; GET /api/events lists them")
    return event


async def get_event(request: web.Request) -> web.Response:
    return web.json_response((await _event(request)).to_json())


async def event_snapshot(request: web.Request) -> web.StreamResponse:
    event = await _event(request)
    data = await request.app[EVENTS].store.read_snapshot(event.id)
    if data is None:
        raise NotFoundError(f"event {event.id} has no snapshot")
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-cache"})


async def events_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[EVENTS].stats())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/streams", add_stream)
    app.router.add_get("/api/streams", list_streams)
    app.router.add_get("/api/streams/ws", streams_ws)
    app.router.add_get("/api/streams/{name}", get_stream)
    app.router.add_delete("/api/streams/{name}", delete_stream)
    app.router.add_post("/api/streams/{name}/viewer", viewer)
    app.router.add_get("/api/events", list_events)
    app.router.add_get("/api/events/status", events_status)
    app.router.add_get("/api/events/{id}", get_event)
    app.router.add_get("/api/events/{id}/snapshot.jpg", event_snapshot)
