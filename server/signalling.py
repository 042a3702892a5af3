"""``POST /api/webrtc/offer``: check the request, admit the peer, answer the browser's SDP offer.

Everything a client can get wrong is caught here, before any connection exists, with a 4xx and a one-line
message: a body that is not JSON, a missing or malformed SDP, an offer without video or without the
"labels" data channel, an unknown model or label set, a model that is not ready, too many peers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import BadRequestError
from .json_body import read_json as read_json_body
from .keys import CONFIG, MODELS, PEERS
from .peer import CHANNEL, Peer, PeerSettings

log = logging.getLogger(__name__)

MAX_SDP_CHARS = 64_000
MAX_STRIDE = 64


@dataclass(frozen=True)
class OfferRequest:
    sdp: str
    model: str | None = None
    labels: str | None = None
    custom_labels: tuple[str, ...] | None = None
    stride: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> OfferRequest:
        if not isinstance(body, dict):
            raise BadRequestError('the body must be a JSON object: {"sdp": "...", "type": "offer", ...}')
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not sdp.strip():
            raise BadRequestError('"sdp" is missing or empty; send the offer\'s sdp string')
        if kind != "offer":
            raise BadRequestError(f'"type" must be "offer", got {kind!r}')
        model = _optional_str(body, "model")
        labels = _optional_str(body, "labels")
        custom = body.get("custom_labels")
        if custom is not None:
            if not isinstance(custom, list) or not all(isinstance(x, str) for x in custom):
                raise BadRequestError('"custom_labels" must be a list of strings, e.g. ["waving", "clapping"]')
            custom = tuple(custom) if custom else None  # an empty list means: no free-text labels
        stride = body.get("stride")
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int)
                                   or not 1 <= stride <= MAX_STRIDE):
            raise BadRequestError(f'"stride" must be an integer from 1 to {MAX_STRIDE} (frames between windows), '
                                  f"got {stride!r}")
        return cls(sdp=sdp, model=model, labels=labels, custom_labels=custom, stride=stride)


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequestError(f'"{key}" must be a string or null, got {type(value).__name__}')
    return value


def check_offer_sdp(sdp: str, *, need_channel: bool = True) -> None:
    """Refuse, with the reason, an SDP that cannot make a working peer (aiortc would fail less clearly).
    A camera viewer's offer (``need_channel=False``) receives video and needs no data channel."""
    if len(sdp) > MAX_SDP_CHARS:
        raise BadRequestError(f"the SDP offer is {len(sdp)} characters; an offer is a few kilobytes, send the "
                              "browser's pc.localDescription.sdp")
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise BadRequestError('malformed SDP offer: it must start with "v=0"; send the browser\'s '
                              "pc.localDescription.sdp unchanged")
    media = [line[2:].split() for line in lines if line.startswith("m=")]
    if not media or any(len(m) < 3 for m in media):
        raise BadRequestError("malformed SDP offer: no valid media (m=) line; send the browser's "
                              "pc.localDescription.sdp unchanged")
    if not any(m[0] == "video" and m[1] != "0" for m in media):
        raise BadRequestError("the SDP offer has no video (no m=video line); add the camera's video track to the "
                              "connection before createOffer" if need_channel else "the SDP offer has no video "
                              "(no m=video line); add a receive-only video transceiver before createOffer")
    if need_channel and not any(m[0] == "application" for m in media):
        raise BadRequestError(f'the SDP offer has no data channel; create a data channel named "{CHANNEL}" before '
                              "createOffer, labels arrive on it")


async def read_json(request: web.Request) -> Any:
    """The JSON body: 413 past the app's body limit, 400 when not JSON or nested too deeply (``json_body``)."""
    return await read_json_body(request, "send a JSON object such as {\"sdp\": \"...\", \"type\": \"offer\"}")


async def offer(request: web.Request) -> web.Response:
    """Answer an offer; the peer then runs until it closes, fails, goes idle or the server stops."""
    body = OfferRequest.from_json(await read_json(request))
    check_offer_sdp(body.sdp)
    app = request.app
    config, models, peers = app[CONFIG], app[MODELS], app[PEERS]
    with peers.reserve():
        lease = await models.acquire(body.model, body.labels, body.custom_labels)
        stride = body.stride or config.stride
        peer_id = peers.new_id()
        try:
            peer = Peer(peer_id, lease, PeerSettings(stride=stride, idle_timeout_s=config.peer_idle_timeout_s,
                                                     frame_queue=config.frame_queue,
                                                     ice_servers=config.ice_servers))
        except BaseException:
            lease.release()
            raise
        try:
            answer = await peer.negotiate(body.sdp)
        except BaseException:
            await peer.pc.close()
            lease.release()
            raise
        peers.start(peer)
    log.info("peer %s: answered (%s, stride %d, %s)", peer_id, lease.model, stride, request.remote)
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "peer_id": peer_id})
