"""One WebRTC peer: its connection, its stream through the engine, and the messages on its "labels" channel.

A peer's life is one task (``run``), owned by the ``PeerRegistry``: wait for the first frame, run a live
``StreamPipeline`` over a ``WebRTCSource``, and on any way out — the track ends, the connection fails or
closes, no frame for ``idle_timeout_s``, server shutdown — clean up in one ``finally``: the monitor task is
cancelled, the source's reader and thread stopped, the ring buffer and CLIP caches freed (the pipeline does
that), the connection closed, the model lease released. Only then does the registry forget the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamTrack

from har_stream.errors import HarStreamError
from har_stream.logs import log_context
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.sources.webrtc import WebRTCSource
from har_stream.types import LabelEvent

from .errors import BadRequestError
from .ice import rtc_configuration
from .models_service import Lease

log = logging.getLogger(__name__)

State = Literal["connecting", "warming_up", "running", "closing"]
HELLO_LABELS = 1000
CHANNEL = "labels"


@dataclass(frozen=True)
class PeerSettings:
    stride: int
    idle_timeout_s: float = 10.0
    frame_queue: int = 2
    max_in_flight: int = 2  # this peer's frames waiting for the shared encoder (see StreamSettings.max_in_flight)
    monitor_interval_s: float = 0.2
    stats_interval_s: float = 1.0
    ice_servers: tuple[str, ...] = ()  # STUN/TURN (server/ice_servers.py); none: host candidates only


class Peer:
    """Create, ``await negotiate(offer_sdp)``, then hand to the registry, which runs ``run()`` as a task."""

    def __init__(self, peer_id: str, lease: Lease, settings: PeerSettings) -> None:
        self.id = peer_id
        self.lease = lease
        self.settings = settings
        self.info = lease.worker.info
        self.pc = RTCPeerConnection(rtc_configuration(settings.ice_servers))
        self.channel: RTCDataChannel | None = None
        self.source: WebRTCSource | None = None
        self.pipeline: StreamPipeline | None = None
        self.reason: str | None = None
        self.labels_sent = 0
        self._track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._blackhole = MediaBlackhole()  # consumes extra tracks (audio), whose frames would pile up unread
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._state: State = "connecting"
        self._created = time.monotonic()

    # -- signalling ---------------------------------------------------------------------------------------

    async def negotiate(self, offer_sdp: str) -> RTCSessionDescription:
        """Apply the browser's offer and return the answer (ICE candidates included: no trickle)."""
        pc = self.pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as err:  # aiortc's SDP parser raises ValueError, KeyError, IndexError...
            raise BadRequestError(f"malformed SDP offer ({type(err).__name__}: {str(err)[:120]}); send the "
                                  "browser's pc.localDescription.sdp unchanged") from None
        if not self._track.done():
            raise BadRequestError("the offer carries no usable video track; add the camera track before createOffer")
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return pc.localDescription

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and not self._track.done():
            self._track.set_result(track)
        else:
            self._blackhole.addTrack(track)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL or self.channel is not None:
            log.info("peer %s: ignoring data channel %r (labels go on %r)", self.id, channel.label, CHANNEL)
            return
        self.channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._hello()
        else:
            channel.on("open", self._hello)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self.close(f"connection {state}")

    # -- the peer's life ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The whole stream; returns after cleaning up, whatever ended it (cancellation included)."""
        self._task = asyncio.current_task()
        log_context(peer=self.id)  # every log line of this task (and its monitor) names the peer
        monitor: asyncio.Task[None] | None = None
        try:
            if self._closing:
                return
            self.source = WebRTCSource(self._track.result(), self.id, sample_fps=self.info.fps,
                                       prepare=self.lease.worker.preparer(),  # on CUDA it leaves the resize to the GPU
                                       queue_size=self.settings.frame_queue,
                                       first_frame_timeout=self.settings.idle_timeout_s)
            self.pipeline = StreamPipeline(
                self.id, self.source, self.lease.worker,
                StreamSettings(window=self.info.frames, stride=self.settings.stride, live=True, window_queue=1,
                               fallback_queue=1, max_in_flight=self.settings.max_in_flight),
                self._on_label, self.lease.fallback)
            monitor = asyncio.get_running_loop().create_task(self._monitor(), name=f"peer-{self.id}-monitor")
            async with self.source:
                self._state = "warming_up"
                await self.pipeline.run()
            self.reason = self.reason or "the video track ended"
        except HarStreamError as err:
            self.reason = str(err)
            self.send({"type": "error", "error": str(err)})
        except Exception as err:
            log.exception("peer %s failed", self.id)
            self.reason = f"{type(err).__name__}: {err}"
            self.send({"type": "error", "error": f"the stream failed ({type(err).__name__}); reconnect, and see "
                                                 "the server log if it happens again"})
        finally:
            await self._cleanup(monitor)

    def close(self, reason: str) -> None:
        """Ask the peer to stop (idempotent, never waits): its task cleans up and then leaves the registry."""
        if self._closing:
            return
        self._closing = True
        self.reason = self.reason or reason
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _cleanup(self, monitor: asyncio.Task[None] | None) -> None:
        self._closing = True
        self._state = "closing"
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        if self.source is not None:
            await self.source.close()  # the pipeline already closed it on a normal end; this is idempotent
        with contextlib.suppress(Exception):
            await self._blackhole.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self.lease.release()
        self.pipeline = None  # drop the ring buffer, features and frames with it
        log.info("peer %s closed: %s", self.id, self.reason or "closed")

    async def _monitor(self) -> None:
        """Warm-up status, stats about once a second, and the idle watchdog."""
        last_stats = time.monotonic()
        last_frames, last_windows, last_received = -1, 0, 0
        while True:
            await asyncio.sleep(self.settings.monitor_interval_s)
            now = time.monotonic()
            pipeline, source = self.pipeline, self.source
            if pipeline is None or source is None:
                continue
            if source.last_frame_at is not None and now - source.last_frame_at > self.settings.idle_timeout_s:
                self.close(f"no video frame for {self.settings.idle_timeout_s:g} s")
                return
            channel = self.channel
            if (channel is None or channel.readyState != "open") and now - self._created > self.settings.idle_timeout_s:
                self.close(f'the "{CHANNEL}" data channel is not open after {self.settings.idle_timeout_s:g} s, so '
                           "labels cannot be delivered")
                return
            if pipeline.stats.windows == 0 and source.last_frame_at is not None:
                if pipeline.stats.frames != last_frames:
                    last_frames = pipeline.stats.frames
                    self.send({"type": "status", "state": "warming_up", "frames": last_frames,
                               "needed": pipeline.settings.window})
            elif self._state == "warming_up":
                self._state = "running"
            if now - last_stats >= self.settings.stats_interval_s:
                span = now - last_stats
                received, windows = source.frames_received, pipeline.stats.windows
                self.send({"type": "stats", "frames_received": received, "frames_dropped": source.stats.dropped,
                           "fps_in": round((received - last_received) / span, 2),
                           "windows_per_s": round((windows - last_windows) / span, 2),
                           "stride": pipeline.effective_stride, "stride_asked": pipeline.settings.stride})
                last_stats, last_received, last_windows = now, received, windows

    # -- messages -----------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> bool:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return False
        try:
            channel.send(json.dumps(message, separators=(",", ":")))
        except Exception as err:  # the transport went away under us: the connection state handler closes us
            log.debug("peer %s: send failed: %s", self.id, err)
            return False
        return True

    def _hello(self) -> None:
        self.send({"type": "hello", "peer_id": self.id, "model": self.lease.model,
                   "labels": list(self.lease.labels[:HELLO_LABELS]), "window": self.info.frames,
                   "stride": self.settings.stride, "fps": self.info.fps})

    def _on_label(self, event: LabelEvent, probs: np.ndarray) -> None:
        if self.send(event.to_json()):
            self.labels_sent += 1

    def _on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            return
        try:
            data = json.loads(message)
        except (ValueError, RecursionError):  # deep [[[[...]]]] raises RecursionError: as unreadable as the rest
            return
        if isinstance(data, dict) and data.get("type") == "ping":
            self.send({"type": "pong", "t": data.get("t")})

    # -- state --------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def status(self) -> dict[str, Any]:
        source, pipeline = self.source, self.pipeline
        return {"peer_id": self.id, "model": self.lease.model,
                "frames_received": source.frames_received if source else 0,
                "frames_dropped": source.stats.dropped if source else 0,
                "windows": pipeline.stats.windows if pipeline else 0, "state": self._state}
