"""A camera's video to browsers: browsers cannot play RTSP, so the server sends the frames it already decoded
over WebRTC. One ``CameraTrack`` per camera is fed by the camera's decode (no second connection to the
camera); aiortc's ``MediaRelay`` gives every viewer its own subscription to it, so one decode feeds all.

A track keeps only the newest frame (policy: drop_oldest, one deep): a viewer that cannot keep up sees the
present, later, rather than the past. Frames are scaled down to ``max_width`` for the viewers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from har_stream.errors import OverloadedError
from har_stream.queues import put_drop_oldest

from .errors import BadRequestError
from .ice import rtc_configuration

log = logging.getLogger(__name__)

CLOCK = 90_000  # RTP video clock
TIME_BASE = fractions.Fraction(1, CLOCK)


class CameraTrack(MediaStreamTrack):
    """A video track fed with ``push(frame)`` from the camera's pipeline (on the event loop)."""

    kind = "video"

    def __init__(self, max_width: int = 640) -> None:
        super().__init__()
        self.max_width = max_width
        self._latest: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue(maxsize=1)  # None: stopped
        self._start: float | None = None
        self.pushed = 0
        self.dropped = 0

    def push(self, frame: av.VideoFrame) -> None:
        """Offer the newest frame; an unsent older one is dropped. Cheap: scaling happens only for frames a
        viewer actually takes (``recv``)."""
        if self.readyState != "live":
            return
        self.dropped += put_drop_oldest(self._latest, frame)
        self.pushed += 1

    def stop(self) -> None:
        """End the track: a ``recv`` waiting for a frame raises ``MediaStreamError``, which ends the relay's
        reader task and every viewer's copy of the track."""
        super().stop()
        put_drop_oldest(self._latest, None)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._latest.get()
        if frame is None:
            raise MediaStreamError
        if frame.width > self.max_width:
            height = round(frame.height * self.max_width / frame.width / 2) * 2
            frame = frame.reformat(width=self.max_width, height=max(2, height), format="yuv420p")
        now = time.monotonic()
        if self._start is None:
            self._start = now
        # the decoder's pts were read into the pipeline's DecodedFrame already; the frame's own are ours to set
        frame.pts = int((now - self._start) * CLOCK)
        frame.time_base = TIME_BASE
        return frame


class Viewers:
    """The WebRTC viewers of every camera: offer in, answer out; closed with their camera or on shutdown."""

    def __init__(self, max_viewers: int, ice_servers: tuple[str, ...] = ()) -> None:
        self.max_viewers = max_viewers
        self.ice_servers = ice_servers
        self._relay = MediaRelay()
        self._peers: dict[str, set[RTCPeerConnection]] = {}

    def count(self, camera: str | None = None) -> int:
        if camera is not None:
            return len(self._peers.get(camera, ()))
        return sum(len(p) for p in self._peers.values())

    async def answer(self, camera: str, track: CameraTrack, offer_sdp: str) -> str:
        """A new viewer of ``camera``: the browser's offer (receive-only video) in, the server's answer out."""
        if self.count() >= self.max_viewers:
            raise OverloadedError(f"{self.max_viewers} camera viewers are connected, the most this server "
                                  "allows; close a camera view and try again")
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        peers = self._peers.setdefault(camera, set())
        peers.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close(camera, pc)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if not any(t.kind == "video" for t in pc.getTransceivers()):
                raise BadRequestError("the viewer's offer has no video: add a receive-only video transceiver "
                                      "(pc.addTransceiver('video', {direction: 'recvonly'})) before createOffer")
            pc.addTrack(self._relay.subscribe(track, buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
        except BadRequestError:
            await self._close(camera, pc)
            raise
        except Exception as err:  # aiortc's words (ValueError, OperationError, ...) for an offer it cannot use
            await self._close(camera, pc)
            raise BadRequestError(f"the viewer's SDP offer could not be used ({type(err).__name__}: {err}); send "
                                  "the browser's pc.localDescription.sdp unchanged") from None
        except BaseException:
            await asyncio.shield(self._close(camera, pc))
            raise
        return pc.localDescription.sdp

    async def _close(self, camera: str, pc: RTCPeerConnection) -> None:
        peers = self._peers.get(camera)
        if peers is not None:
            peers.discard(pc)
            if not peers:
                self._peers.pop(camera, None)
        with contextlib.suppress(Exception):
            await pc.close()

    async def close_camera(self, camera: str) -> None:
        for pc in tuple(self._peers.get(camera, ())):
            await self._close(camera, pc)

    async def aclose(self) -> None:
        for camera in tuple(self._peers):
            await self.close_camera(camera)
