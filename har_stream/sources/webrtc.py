"""A WebRTC video track (aiortc) as a ``FrameSource``: a browser's camera feeding the live engine.

aiortc decodes in its own thread and hands frames to the event loop through an *unbounded* queue inside the
track, so this source reads the track without pause and sheds load itself: a reader task on the loop takes
each frame the moment it arrives (its ``arrival`` is that monotonic time), samples it to the model's frame
rate, and passes the kept ones to one named prepare thread through a small ``drop_oldest`` inbox. The
thread resizes them to the model's input (off the event loop) and queues them for the pipeline in a
``drop_oldest`` ``FrameQueue``. When the engine falls behind, the oldest frames are dropped, at either
queue, and counted in ``stats.dropped``: a live view must stay current, never lag.

The track ending (the peer hung up) ends ``frames()``; ``close()`` stops the reader and the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import InputError, SourceUnreachableError
from ..frame_queue import FrameQueue, check_settings
from ..sampling import FpsSampler
from ..threads import join_thread
from ..types import DecodedFrame, SourceInfo
from .base import FrameSource, Prepare, SourceStats

log = logging.getLogger(__name__)

T = TypeVar("T")


class DropOldestInbox(Generic[T]):
    """Bounded hand-off from the event loop to one consumer thread. Policy ``drop_oldest``, counted.

    ``put`` never blocks (it runs on the loop). ``finish`` lets the thread drain what is queued and stop;
    ``fail`` does the same and then hands it an error; ``close`` discards everything and stops it at once.
    """

    def __init__(self, maxsize: int) -> None:
        check_settings(maxsize, "drop_oldest")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, item: T) -> bool:
        with self._cond:
            if self._finished:
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
        return True

    def get(self) -> T | None:
        """The next item, waiting for one; None once finished and drained."""
        with self._cond:
            while not self._items and not self._finished:
                self._cond.wait()
            return self._items.popleft() if self._items else None

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if not self._finished:
                self._finished = True
                self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._finished = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def error(self) -> BaseException | None:
        return self._error

    def __len__(self) -> int:
        return len(self._items)


_Item = tuple[int, float, float, av.VideoFrame]  # index among received frames, pts, arrival, frame


class WebRTCSource(FrameSource):
    """Frames of one remote video track. ``open()`` waits for the first frame (at most ``first_frame_timeout``)."""

    def __init__(self, track: MediaStreamTrack, name: str, *, sample_fps: float | None = None,
                 prepare: Prepare | None = None, queue_size: int = 4, inbox_size: int = 2,
                 first_frame_timeout: float = 10.0, join_timeout: float = 2.0) -> None:
        if track.kind != "video":
            raise InputError(f"track {track.id} is {track.kind}, not video; send a camera (video) track")
        check_settings(queue_size, "drop_oldest")
        self.track = track
        self.name = name
        self._sampler = FpsSampler(sample_fps)
        self._sample_fps = sample_fps
        self._prepare = prepare
        self._first_frame_timeout = first_frame_timeout
        self._join_timeout = join_timeout
        self._inbox: DropOldestInbox[_Item] = DropOldestInbox(inbox_size)
        self._out: FrameQueue[DecodedFrame] = FrameQueue(queue_size, "drop_oldest")
        self._reader: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._first: asyncio.Future[SourceInfo] | None = None
        self._received = 0
        self._sampled = 0
        self._first_arrival: float | None = None
        self.last_frame_at: float | None = None  # monotonic arrival of the newest frame (idle detection)
        self.info: SourceInfo | None = None

    # -- FrameSource --------------------------------------------------------------------------------------

    async def open(self) -> SourceInfo:
        if self._first is None:
            loop = asyncio.get_running_loop()
            self._first = loop.create_future()
            self._first.add_done_callback(_retrieve)
            self._thread = threading.Thread(target=self._prepare_loop, name=f"har-prep-{self.name}", daemon=True)
            self._thread.start()
            self._reader = loop.create_task(self._read(), name=f"webrtc-read-{self.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(self._first), self._first_frame_timeout)
        except TimeoutError:
            raise SourceUnreachableError(
                f"no video frame arrived from peer {self.name} within {self._first_frame_timeout:g} s; check "
                "that the camera is on and the connection is up, then reconnect") from None

    async def frames(self) -> AsyncIterator[DecodedFrame]:
        await self.open()
        async for item in self._out:
            yield item

    async def close(self) -> None:
        """Stop reading the track and the prepare thread; waits for the thread without blocking the loop."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._inbox.close()
        self._out.close()
        thread = self._thread
        if thread is not None and not await join_thread(thread, self._join_timeout):
            log.warning("prepare thread %s still busy after %.1f s", thread.name, self._join_timeout)

    @property
    def stats(self) -> SourceStats:
        return SourceStats(self._received, self._sampled, self._inbox.dropped + self._out.dropped)

    @property
    def frames_received(self) -> int:
        """Every frame that arrived on the track, before sampling."""
        return self._received

    # -- event loop: read the track as fast as it delivers --------------------------------------------------

    async def _read(self) -> None:
        assert self._first is not None
        error: BaseException | None = None
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break  # the peer stopped sending: end of stream
                arrival = time.monotonic()
                self._on_frame(frame, arrival)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, raised from frames()
            error = InputError(f"reading the video of peer {self.name} failed ({type(exc).__name__}: {exc}); "
                               "reconnect the peer")
        finally:
            if not self._first.done():
                self._first.set_exception(error or SourceUnreachableError(
                    f"peer {self.name} ended its video track before sending a frame; start the camera and "
                    "reconnect"))
            self._inbox.finish(error)

    def _on_frame(self, frame: av.VideoFrame, arrival: float) -> None:
        assert self._first is not None
        index = self._received
        self._received += 1
        self.last_frame_at = arrival
        if self._first_arrival is None:
            self._first_arrival = arrival
            self.info = SourceInfo(url=f"webrtc:{self.name}", width=frame.width, height=frame.height,
                                   fps=float(self._sample_fps or 0.0), duration=None, frame_count=None, live=True,
                                   codec="webrtc")
            self._first.set_result(self.info)
        pts = self._timestamp(frame, arrival)
        if not self._sampler.accept(pts):
            return
        self._sampled += 1
        self._inbox.put((index, pts, arrival, frame))

    def _timestamp(self, frame: av.VideoFrame, arrival: float) -> float:
        """Sender time: aiortc maps RTP timestamps to seconds from the first packet; arrival time otherwise."""
        t = frame.time
        if t is None or math.isnan(t):
            assert self._first_arrival is not None
            return arrival - self._first_arrival
        return float(t)

    # -- prepare thread -----------------------------------------------------------------------------------

    def _prepare_loop(self) -> None:
        out = self._out
        try:
            while (item := self._inbox.get()) is not None:
                index, pts, arrival, frame = item
                image = self._prepare(frame) if self._prepare is not None else None
                if not out.put(DecodedFrame(index, pts, arrival, frame, image)):
                    return  # closed: the consumer is gone
        except BaseException as exc:  # a frame that cannot be prepared fails the stream, with its reason
            out.put_error(InputError(f"preparing a frame of peer {self.name} failed ({type(exc).__name__}: "
                                     f"{exc}); reconnect the peer"))
            return
        if self._inbox.error is not None:
            out.put_error(self._inbox.error)
        else:
            out.close()


def _retrieve(fut: asyncio.Future[SourceInfo]) -> None:
    if not fut.cancelled():
        fut.exception()
