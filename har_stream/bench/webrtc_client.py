"""An aiortc client peer with a synthetic webcam: what a browser does, without a browser.

Used by ``har-stream bench live`` and by the server tests. The webcam loops synthetic motion frames
(``har_stream.synthetic.render``) at a fixed rate; the client creates the "labels" data channel before its
offer (as the page does), posts the offer, and records every message with its arrival time, plus the
time each frame was handed to the encoder, so label round trips can be measured at the client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

from ..synthetic import render

CLOCK_RATE = 90_000
# Start positions from which the square stays in frame for a 1.6 s clip at speed 0.4 (what the tiny test
# model learnt: it never saw the square wrap around the frame edge).
IN_FRAME_STARTS: dict[str, tuple[float, float]] = {
    "moving left": (0.75, 0.3),
    "moving right": (0.05, 0.3),
    "moving up": (0.4, 0.7),
    "holding still": (0.4, 0.4),
}


def motion_frames(label: str, *, seconds: float = 1.6, fps: float = 15.0, width: int = 160, height: int = 120,
                  speed: float = 0.4, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 frames of one motion that stays in frame; loop them forward for a webcam."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * fps)))
    return render(label, n, width=width, height=height, fps=fps, speed=speed, rng=rng,
                  start=IN_FRAME_STARTS.get(label))


class SyntheticCamera(VideoStreamTrack):
    """A webcam that loops ``frames`` forward at ``fps`` (restarting the clip, never playing it backwards)."""

    kind = "video"

    def __init__(self, frames: np.ndarray, fps: float = 15.0) -> None:
        super().__init__()
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError("frames must be (n, height, width, 3) RGB")
        self.frames = frames
        self.fps = fps
        self.sent = 0
        self.sent_at: dict[int, float] = {}  # frame number -> monotonic time it was handed to the encoder
        self._start: float | None = None
        self._running = asyncio.Event()
        self._running.set()

    def pause(self) -> None:
        """Stop sending frames but keep the connection up (a frozen camera)."""
        self._running.clear()

    def resume(self) -> None:
        self._start = None  # restart the clock: no burst of frames to catch up
        self._running.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._running.wait()
        n = self.sent
        if self._start is None:
            self._start = time.monotonic() - n / self.fps
        delay = self._start + n / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self.frames[n % len(self.frames)], format="rgb24")
        frame.pts = int(round(n * CLOCK_RATE / self.fps))
        frame.time_base = Fraction(1, CLOCK_RATE)
        self.sent = n + 1
        self.sent_at[n] = time.monotonic()
        if len(self.sent_at) > 4096:  # bounded: keep the recent past only
            self.sent_at.pop(next(iter(self.sent_at)))
        return frame


@dataclass
class Received:
    t: float  # monotonic arrival at the client
    message: dict[str, Any]


@dataclass
class ClientPeer:
    """One connected client. ``messages`` grows as the server talks; ``close()`` hangs up."""

    pc: RTCPeerConnection
    camera: SyntheticCamera
    peer_id: str = ""
    channel: Any = None
    messages: list[Received] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, base_url: str, frames: np.ndarray, *, fps: float = 15.0,
                      model: str | None = None, labels: str | None = None,
                      custom_labels: Sequence[str] | None = None, stride: int | None = None,
                      timeout: float = 20.0, channel_label: str = "labels") -> ClientPeer:
        """Offer a video track and a "labels" channel; raises ``RuntimeError`` with the server's error if refused."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = cls(pc, SyntheticCamera(frames, fps))
        try:
            channel = pc.createDataChannel(channel_label)
            channel.on("message", peer._on_message)
            pc.addTrack(peer.camera)
            await pc.setLocalDescription(await pc.createOffer())
            body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
            for key, value in (("model", model), ("labels", labels), ("stride", stride)):
                if value is not None:
                    body[key] = value
            if custom_labels is not None:
                body["custom_labels"] = list(custom_labels)
            async with session.post(f"{base_url}/api/webrtc/offer", json=body,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"offer refused with HTTP {response.status}: {answer.get('error')}")
            peer.peer_id = answer["peer_id"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        except BaseException:
            await pc.close()
            raise
        peer.channel = channel
        return peer

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.messages.append(Received(time.monotonic(), json.loads(message)))
            self._changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.message for r in self.messages if r.message.get("type") == kind]

    def labels(self) -> list[dict[str, Any]]:
        """Label events from the primary model (CLIP refinements of a window excluded)."""
        return [m for m in self.of_type("label") if "refines" not in m]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages of ``kind`` have arrived; ``TimeoutError`` says how many did."""
        deadline = time.monotonic() + timeout
        while len(found := self.of_type(kind)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"peer {self.peer_id}: {len(found)} of {count} {kind!r} messages after "
                                   f"{timeout:g} s (connection {self.pc.connectionState})")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return found

    async def ping(self, timeout: float = 5.0) -> float:
        """Data-channel round trip in milliseconds (the page's ping/pong)."""
        t = time.monotonic() * 1000.0
        before = len(self.of_type("pong"))
        self.channel.send(json.dumps({"type": "ping", "t": t}))
        pongs = await self.wait_for("pong", before + 1, timeout)
        assert any(p.get("t") == t for p in pongs), "pong did not echo the ping's t"
        return time.monotonic() * 1000.0 - t

    def round_trips(self) -> list[tuple[float, float]]:
        """Per label: (arrival time, ms from the window's newest frame handed to the encoder to the label's arrival).

        The server's timestamps are the sender's (aiortc maps RTP time to seconds from the first frame), so a
        window's end ``t`` names its newest frame: number ``round(t * fps) - 1``.
        """
        out = []
        for r in self.messages:
            m = r.message
            if m.get("type") != "label" or "refines" in m:
                continue
            sent = self.camera.sent_at.get(int(round(float(m["t"]) * self.camera.fps)) - 1)
            if sent is not None:
                out.append((r.t, (r.t - sent) * 1000.0))
        return out

    def round_trips_ms(self) -> list[float]:
        return [ms for _, ms in self.round_trips()]

    async def close(self) -> None:
        self.camera.stop()
        await self.pc.close()
