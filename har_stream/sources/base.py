"""What every frame source offers the engine, and the decode-thread machinery PyAV-based sources share.

``FrameSource`` is the interface: ``open()`` → ``SourceInfo``, ``frames()`` → the sampled frames,
``close()``, ``stats``; it is an async context manager. ``ThreadedSource`` implements it for blocking
decoders: open and decode run in ONE named daemon thread per source (never on the event loop nor in the
default executor, where a slow network read would starve other work), frames pass through a bounded
``FrameQueue`` (``block`` for files/VOD so nothing is lost, ``drop_oldest`` for live so the consumer stays
current), and sampling plus ``prepare`` (resize to the model's input) run in that thread, only for the
frames that are kept.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from types import TracebackType

import av
import numpy as np

from ..frame_queue import FrameQueue, Policy, check_settings
from ..sampling import FpsSampler
from ..threads import join_thread
from ..types import DecodedFrame, SourceInfo

log = logging.getLogger(__name__)

Prepare = Callable[[av.VideoFrame], np.ndarray]

FALLBACK_FPS = 30.0  # only to invent timestamps for frames without pts when the stream has no rate either


@dataclass(frozen=True)
class SourceStats:
    """Counters of one source: frames decoded, kept by the sampler, and dropped by a full live queue; and the
    seconds its thread spent decoding and preparing (where it measures them)."""

    frames_decoded: int
    frames_sampled: int
    dropped: int
    decode_s: float = 0.0
    prepare_s: float = 0.0


class FrameSource(abc.ABC):
    """A stream of decoded frames (file, URL, camera, WebRTC track)."""

    @abc.abstractmethod
    async def open(self) -> SourceInfo:
        """Connect and read the stream's header; raises an ``InputError`` child when that fails."""

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[DecodedFrame]:
        """The sampled frames in order, each with ``image`` filled when a ``prepare`` was given.

        Ends at the end of the media; raises an ``InputError`` child if decoding fails midway (after
        yielding the frames decoded before the failure).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop decoding and release the media, even if the consumer stopped reading midway."""

    @property
    @abc.abstractmethod
    def stats(self) -> SourceStats: ...

    async def __aenter__(self) -> FrameSource:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class ThreadedSource(FrameSource):
    """A ``FrameSource`` whose blocking open and decode run in one named daemon thread it owns.

    Subclasses implement ``_open_blocking`` (returns the ``SourceInfo``), ``_decode_blocking`` (yields
    ``av.VideoFrame``s until the end; raises an ``InputError`` child on failure) and ``_close_blocking``;
    all three run in the decode thread.
    """

    def __init__(
        self,
        name: str,
        *,
        sample_fps: float | None = None,
        prepare: Prepare | None = None,
        policy: Policy | None = None,
        queue_size: int = 32,
        join_timeout: float = 5.0,
    ) -> None:
        check_settings(queue_size, policy)  # fail here, not later in the decode thread
        self.name = name
        self._sampler = FpsSampler(sample_fps)
        self._prepare = prepare
        self._policy = policy
        self._queue_size = queue_size
        self._join_timeout = join_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queue: FrameQueue[DecodedFrame] | None = None
        self._thread: threading.Thread | None = None
        self._opened: asyncio.Future[SourceInfo] | None = None
        self._decoded = 0
        self._sampled = 0
        self._decode_s = 0.0  # the decode thread's time in the decoder, and in ``prepare``
        self._prepare_s = 0.0
        self._origin: float | None = None
        self._last_pts: float | None = None
        self.info: SourceInfo | None = None

    # -- subclass hooks (decode thread) ---------------------------------------------------------------

    @abc.abstractmethod
    def _open_blocking(self) -> SourceInfo: ...

    @abc.abstractmethod
    def _decode_blocking(self) -> Generator[av.VideoFrame, None, None]: ...

    def _close_blocking(self) -> None:
        """Release what ``_open_blocking`` acquired. Called once, in the decode thread, even on errors."""

    # -- FrameSource ----------------------------------------------------------------------------------

    async def open(self) -> SourceInfo:
        if self._opened is None:
            loop = asyncio.get_running_loop()
            self._opened = loop.create_future()
            self._opened.add_done_callback(_retrieve)  # an open nobody awaits any more must not warn
            self._thread = threading.Thread(
                target=self._run, args=(loop, self._opened), name=f"har-decode-{self.name}", daemon=True
            )
            self._thread.start()
        try:
            return await asyncio.shield(self._opened)
        except asyncio.CancelledError:
            self._request_stop()  # the thread ends once its open returns; close() joins it
            raise

    async def frames(self) -> AsyncIterator[DecodedFrame]:
        await self.open()
        assert self._queue is not None
        async for item in self._queue:
            yield item

    async def close(self) -> None:
        """Stop the decode thread and wait (without blocking the loop) until it has ended."""
        self._request_stop()
        thread = self._thread
        if thread is not None and not await join_thread(thread, self._join_timeout):
            log.warning("decode thread %s still busy after %.1f s (a blocking read); it ends at its "
                        "read timeout", thread.name, self._join_timeout)

    @property
    def stats(self) -> SourceStats:
        queue = self._queue
        return SourceStats(self._decoded, self._sampled, queue.dropped if queue is not None else 0,
                           self._decode_s, self._prepare_s)

    @property
    def last_pts(self) -> float | None:
        """Timestamp of the last decoded frame (seconds), e.g. to say where decoding failed."""
        return self._last_pts

    # -- decode thread ---------------------------------------------------------------------------------

    def _request_stop(self) -> None:
        with self._lock:
            self._stop.set()
            queue = self._queue
        if queue is not None:
            queue.close()

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[SourceInfo]) -> None:
        try:
            try:
                info = self._open_blocking()
                with self._lock:
                    if self._stop.is_set():
                        _post(loop, opened, None)  # closed while opening: open() is cancelled
                        return
                    policy = self._policy or ("drop_oldest" if info.live else "block")
                    queue = self._queue = FrameQueue[DecodedFrame](self._queue_size, policy)
                self.info = info
            except BaseException as exc:
                _post(loop, opened, exc)
                return
            _post(loop, opened, info)
            self._pump(queue, info)
        finally:
            try:
                self._close_blocking()
            except Exception:  # releasing must not hide the real outcome
                log.exception("closing source %s failed", self.name)

    def _pump(self, queue: FrameQueue[DecodedFrame], info: SourceInfo) -> None:
        step = 1.0 / (info.fps or FALLBACK_FPS)
        try:
            with closing(self._decode_blocking()) as decoded:
                clock = time.perf_counter()
                for frame in decoded:
                    now = time.perf_counter()
                    self._decode_s += now - clock
                    if self._stop.is_set():
                        break
                    pts = self._timestamp(frame, step)
                    index = self._decoded
                    self._decoded += 1
                    if self._sampler.accept(pts):
                        image = self._prepare(frame) if self._prepare is not None else None
                        self._sampled += 1
                        self._prepare_s += time.perf_counter() - now
                        if not queue.put(DecodedFrame(index, pts, time.monotonic(), frame, image)):
                            break
                    clock = time.perf_counter()  # time blocked on a full queue is not decoding
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put_error(exc)
        else:
            queue.close()

    def _timestamp(self, frame: av.VideoFrame, step: float) -> float:
        """Seconds since the first frame: ``frame.time`` when the frame has a pts, else one step on."""
        t = frame.time
        if t is None or math.isnan(t):
            pts = 0.0 if self._last_pts is None else self._last_pts + step
        else:
            if self._origin is None:
                self._origin = t - (0.0 if self._last_pts is None else self._last_pts + step)
            pts = t - self._origin
        self._last_pts = pts
        return pts


def _post(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[SourceInfo], outcome: object) -> None:
    """Resolve ``fut`` on its loop from the decode thread: a result, an exception, or None to cancel it."""

    def resolve() -> None:
        if fut.done():
            return
        if outcome is None:
            fut.cancel()
        elif isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting for the outcome
        loop.call_soon_threadsafe(resolve)


def _retrieve(fut: asyncio.Future[SourceInfo]) -> None:
    if not fut.cancelled():
        fut.exception()
