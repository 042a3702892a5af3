"""A live URL source that keeps going: it reconnects after every drop, with backoff, until it is stopped.

``ReconnectingSource`` wraps one ``AvSource`` connection at a time (``open_source``: rtsp://, rtsps://, rtmp,
srt, http(s) media and HLS, or a page yt-dlp resolves) and hides the drops from its consumer: ``frames()``
keeps yielding across reconnects and ends only when the source is stopped, or raises once the source has
failed for good. Why one more layer rather than a loop in each caller: the streams API, the cameras page and
``har-stream watch`` all need the same states, the same backoff, and the same watchdogs.

States (``SourceStatus.state``), one per stream:

* ``connecting`` - the first connection is being made;
* ``live`` - frames are arriving;
* ``reconnecting`` - the stream was lost, or a connection attempt failed: ``retry_in`` is the delay before
  the next attempt (None while an attempt is running), ``attempt`` counts failures in a row, ``error`` says
  why. Network errors never give up: a camera that comes back hours later is picked up again. A page yt-dlp
  cannot resolve counts as one too (a live event that has not started resolves later);
* ``failed`` - an error that retrying will not heal: the URL answers but is not video (``NotVideoError``),
  or it is not a live stream URL at all (unsupported scheme, a local path). ``frames()`` raises it;
* ``stopped`` - ``aclose()`` was called, or a media URL that is not live (a file over HTTP, a VOD playlist)
  reached its end. ``frames()`` ends normally.

Backoff: the n-th failure in a row waits ``min(max_delay, initial_delay * factor**(n-1))``, less a random
fraction of up to ``jitter`` of it (so many cameras that drop together do not come back in lock step, and
the cap is never exceeded). A connection that delivered frames resets the count. After each open, the first
frame must come within ``first_frame_timeout``; after that, a gap of ``stall_timeout`` without a frame (a
hung camera that keeps its TCP connection open) closes the connection and reconnects.

Frames across reconnects: ``pts`` stays monotonic. Within a connection it follows the stream's clock; a new
connection continues from the last frame's ``pts`` plus the wall time the outage lasted, so a gap in ``pts``
shows the gap in video. ``index`` keeps counting. Every frame is a ``LiveFrame`` whose ``epoch`` is the
number of the connection it came from (0 for the first; equal to ``SourceStatus.reconnects`` while that
connection is live), so a consumer can tell when to reset a window that would otherwise mix frames from
before and after a drop.

Live means current: decoding runs in each connection's own thread (``AvSource``), and both the thread's
queue and this source's hand-off to the consumer drop the oldest frame when full, counted in
``stats.dropped``. Media that does not pace itself (a file over HTTP - ``.mp4``, ``.ts`` - or an HLS VOD
playlist) is paced to its own frame rate in its decode thread (``AvSource(realtime=True)``, as ``ffmpeg -re``),
so it behaves like a camera - stream time runs at wall-clock speed - instead of decoding minutes of video a
second; one whose length is known then ends (``stopped``).

Credentials in the URL (``rtsp://user:pass@cam/...``) reach FFmpeg and nothing else: statuses, errors, logs
and ``SourceInfo.url`` carry the redacted URL (``rtsp://***@cam/...``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import av
import numpy as np

from ..backoff import capped_delay
from ..errors import ConfigError, HarStreamError, InputError, SourceUnreachableError
from ..frame_queue import check_settings
from ..types import DecodedFrame, SourceInfo
from .av_stream import LIVE_SCHEMES
from .base import FrameSource, Prepare, SourceStats
from .resolve import ResolvedMedia
from .urls import redact

log = logging.getLogger(__name__)

State = Literal["connecting", "live", "reconnecting", "stopped", "failed"]
STATES: tuple[State, ...] = ("connecting", "live", "reconnecting", "stopped", "failed")
LIVE_URL_SCHEMES = LIVE_SCHEMES | {"http", "https"}


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard a live source tries: backoff between attempts, and the timeouts that detect a dead stream.

    ``open_timeout`` and ``read_timeout`` go to FFmpeg (connecting, and each network read); a read stuck
    longer than ``read_timeout`` fails the connection even before the stall watchdog does, and ``aclose()``
    may wait that long for a connection stuck in such a read. The watchdogs count sampled frames, so a source
    sampled below 1 frame per ``stall_timeout / 3`` s stretches both timeouts to three sampling intervals.
    """

    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2  # fraction of each delay taken off at random, 0 ≤ jitter < 1
    first_frame_timeout: float = 15.0
    stall_timeout: float = 10.0
    open_timeout: float = 10.0
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "first_frame_timeout", "stall_timeout", "open_timeout",
                     "read_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number of seconds (got {value})")
        if self.max_delay < self.initial_delay:
            raise ConfigError(f"max_delay ({self.max_delay:g} s) must be at least initial_delay "
                              f"({self.initial_delay:g} s)")
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise ConfigError(f"factor must be at least 1 (got {self.factor})")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be a fraction from 0 up to 1 (got {self.jitter})")

    def base_delay(self, failures: int) -> float:
        """The delay before retrying after ``failures`` failures in a row (≥ 1), before jitter."""
        return capped_delay(failures, self.initial_delay, self.max_delay, self.factor)

    def delay_bounds(self, failures: int) -> tuple[float, float]:
        """The range ``delay`` draws from: ``[base * (1 - jitter), base]``."""
        base = self.base_delay(failures)
        return base * (1.0 - self.jitter), base

    def delay(self, failures: int, rng: random.Random) -> float:
        low, high = self.delay_bounds(failures)
        return high - (high - low) * rng.random()


@dataclass(frozen=True)
class SourceStatus:
    """A snapshot of one live source, safe to show: the URL and the error never hold credentials.

    Times are wall-clock seconds (``time.time()``), for display. ``reconnects`` counts the times the stream
    came back after it was lost (the cameras page's badge); ``attempt`` counts failures in a row since it
    was last live; ``retry_in``/``retry_at`` are set while waiting to retry; ``error`` is the last error,
    kept after the stream recovers (``error_at`` says when). ``info`` describes the current (or last)
    connection's video.
    """

    name: str
    url: str
    state: State
    since: float
    error: str | None = None
    error_at: float | None = None
    attempt: int = 0
    retry_in: float | None = None
    retry_at: float | None = None
    reconnects: int = 0
    connected_at: float | None = None
    last_frame_at: float | None = None
    frames: int = 0
    dropped: int = 0
    info: SourceInfo | None = None

    def to_json(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state,
            "since": round(self.since, 3),
            "error": self.error,
            "error_at": _round(self.error_at),
            "attempt": self.attempt,
            "retry_in": _round(self.retry_in),
            "retry_at": _round(self.retry_at),
            "reconnects": self.reconnects,
            "connected_at": _round(self.connected_at),
            "last_frame_at": _round(self.last_frame_at),
            "frames": self.frames,
            "dropped": self.dropped,
            "video": None if info is None else {"width": info.width, "height": info.height,
                                                "fps": round(info.fps, 3), "codec": info.codec},
        }


StatusCallback = Callable[[SourceStatus], None]


@dataclass(frozen=True, eq=False)
class LiveFrame(DecodedFrame):
    """A ``DecodedFrame`` that also says which connection it came from (0, 1, ... : see the module doc)."""

    epoch: int = 0


def check_live_url(url: str) -> str:
    """Raise ``InputError`` unless ``url`` is a URL a live source can follow; returns it redacted."""
    shown = redact(url)
    scheme = urlsplit(url).scheme.lower()
    if len(scheme) <= 1 or scheme == "file":
        raise InputError(f"{shown} is not a stream URL but a file: analyse it as a job (`har-stream analyse`, or "
                         "the server's analyse page); to watch a stream give an rtsp://, rtsps://, rtmp://, srt:// "
                         "or http(s):// URL")
    if scheme not in LIVE_URL_SCHEMES:
        raise InputError(f"unsupported URL scheme {scheme!r} in {shown}; give an rtsp://, rtsps://, rtmp://, "
                         "srt:// or http(s):// URL")
    if not urlsplit(url).hostname:
        raise InputError(f"{shown} names no host; give a URL such as rtsp://camera.local:554/stream")
    return shown


class ReconnectingSource(FrameSource):
    """A live stream that reconnects by itself. Use ``async with`` (or ``start()`` and ``aclose()``).

    ``on_status`` is called on the event loop with a new ``SourceStatus`` at every change of state, every
    scheduled retry, and every new attempt. ``options`` go to FFmpeg (``rtsp_transport`` is ``tcp`` unless
    given). ``seed`` fixes the jitter's random draws. Only one consumer may iterate ``frames()`` at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        sample_fps: float | None = None,
        prepare: Prepare | None = None,
        policy: ReconnectPolicy | None = None,
        queue_size: int = 2,
        options: Mapping[str, str] | None = None,
        on_status: StatusCallback | None = None,
        resolver: Callable[[str], ResolvedMedia] | None = None,
        seed: int | None = None,
    ) -> None:
        check_settings(queue_size, "drop_oldest")
        if sample_fps is not None and not sample_fps > 0:
            raise ConfigError(f"sample fps must be positive, got {sample_fps}")
        self._url = url
        self.url = redact(url)
        self.name = name or urlsplit(url).netloc.rsplit("@", 1)[-1] or self.url
        self.policy = policy or ReconnectPolicy()
        self._sample_fps = sample_fps
        self._prepare = _Serialised(prepare) if prepare is not None else None
        self._queue_size = queue_size
        self._options = dict(options or {})
        self._on_status = on_status
        self._resolver = resolver
        self._rng = random.Random(seed)
        self._status = SourceStatus(self.name, self.url, "connecting", time.time())
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._current: FrameSource | None = None
        self._error: BaseException | None = None  # what frames() raises once failed
        self._stopping = False
        # the consumer hand-off: drop_oldest, on the loop
        self._out: deque[LiveFrame] = deque()
        self._out_ready = asyncio.Event()
        self._out_dropped = 0
        self._ended = False
        # running totals of the connections that are over, for stats and for monotonic index/pts
        self._done = SourceStats(0, 0, 0)
        self._last_pts: float | None = None
        self._last_arrival: float | None = None
        self._pts_offset = 0.0
        self._epoch_seen: int | None = None
        self._delivered = 0

    # -- public -------------------------------------------------------------------------------------------

    @property
    def status(self) -> SourceStatus:
        """The current snapshot (frame counters up to date)."""
        return replace(self._status, frames=self._delivered, dropped=self.stats.dropped)

    @property
    def state(self) -> State:
        return self._status.state

    @property
    def info(self) -> SourceInfo | None:
        return self._status.info

    @property
    def stats(self) -> SourceStats:
        current = self._current.stats if self._current is not None else SourceStats(0, 0, 0)
        return SourceStats(self._done.frames_decoded + current.frames_decoded,
                           self._done.frames_sampled + current.frames_sampled,
                           self._done.dropped + current.dropped + self._out_dropped)

    def start(self) -> None:
        """Start connecting in the background (idempotent); needs a running event loop."""
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"har-live-{self.name}")

    async def open(self) -> SourceInfo:
        """Start, and wait until the stream is live; raises the error if it fails for good first."""
        self.start()
        status = await self.wait_for("live", "failed", "stopped")
        if status.state == "failed" and self._error is not None:
            raise self._error
        if status.state != "live" or status.info is None:
            raise InputError(f"{self.url} was stopped before it went live")
        return status.info

    async def wait_for(self, *states: State, predicate: Callable[[SourceStatus], bool] | None = None
                       ) -> SourceStatus:
        """Wait until the state is one of ``states`` (or ``predicate`` holds); returns that status.

        Bound it with ``asyncio.timeout``. Returns at once if it already holds.
        """
        for state in states:
            if state not in STATES:
                raise ValueError(f"unknown state {state!r}; use one of {', '.join(STATES)}")
        while True:
            status = self.status
            if status.state in states or (predicate is not None and predicate(status)):
                return status
            if status.state in ("stopped", "failed"):  # final: nothing more will change
                wanted = "/".join(states) or "what was awaited"
                raise InputError(f"{self.url} is {status.state}; it will not become {wanted} any more")
            changed = self._changed
            await changed.wait()

    async def frames(self) -> AsyncIterator[LiveFrame]:
        """Frames from every connection in turn; ends when stopped, raises the error once failed."""
        self.start()
        while True:
            if self._out:
                yield self._out.popleft()
                continue
            if self._ended:
                if self._error is not None:
                    raise self._error
                return
            self._out_ready.clear()
            await self._out_ready.wait()

    async def aclose(self) -> None:
        """Stop: the background task, the current connection and its decode thread. Idempotent, prompt
        (a connection stuck in a network read ends at the read timeout; this waits for it)."""
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        while self._closers:
            await asyncio.gather(*tuple(self._closers), return_exceptions=True)
        if self._status.state != "failed" and self._status.state != "stopped":
            self._set("stopped", retry_in=None, retry_at=None)
        self._end()

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> ReconnectingSource:
        """Start connecting; unlike a file source this does not wait for the stream (see ``open``)."""
        self.start()
        return self

    # -- the supervisor -----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, deliver, and on each loss wait and reconnect, until stopped or failed for good."""
        try:
            check_live_url(self._url)
            failures = 0
            while True:
                went_live, ended, error = await self._connect_once()
                if ended:
                    self._set("stopped", retry_in=None, retry_at=None)
                    self._end()
                    return
                assert error is not None
                if not _transient(error):
                    self._fail(error)
                    return
                failures = 1 if went_live else failures + 1
                delay = self.policy.delay(failures, self._rng)
                self._set("reconnecting", error=self._describe(error), error_at=time.time(), attempt=failures,
                          retry_in=delay, retry_at=time.time() + delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except HarStreamError as err:  # check_live_url
            self._fail(err)
        except Exception as err:  # a bug: say so, keep the traceback in the log
            log.exception("live source %s failed", self.name)
            self._fail(err)

    async def _connect_once(self) -> tuple[bool, bool, BaseException | None]:
        """One connection from open to its end: (went live, ended normally (not live media), error)."""
        from . import open_source  # the package imports this module

        first = self._status.state == "connecting"  # only the very first attempt; later ones are retries
        self._set("connecting" if first else "reconnecting", retry_in=None, retry_at=None)
        policy = self.policy
        least = 3.0 / self._sample_fps if self._sample_fps else 0.0  # sampled frames may be that far apart
        first_frame_timeout = max(policy.first_frame_timeout, least)
        stall_timeout = max(policy.stall_timeout, least)
        source = open_source(self._url, sample_fps=self._sample_fps, prepare=self._prepare, policy=None,
                             queue_size=self._queue_size, open_timeout=policy.open_timeout,
                             read_timeout=policy.read_timeout, options=self._options, resolver=self._resolver,
                             realtime=True)
        self._current = source
        went_live = False
        try:
            try:
                info = await source.open()
            except HarStreamError as err:
                return False, False, _AtOpen(err)
            frames = source.frames().__aiter__()
            timeout = first_frame_timeout
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        frame = await anext(frames)
                except StopAsyncIteration:
                    if not info.live and went_live:
                        return True, True, None
                    return went_live, False, SourceUnreachableError(
                        f"{self.name} ended the stream" + ("" if went_live else " before sending a frame"))
                except TimeoutError:
                    if went_live:
                        return True, False, SourceUnreachableError(
                            f"no video from {self.name} for {stall_timeout:g} s (stalled)")
                    return False, False, SourceUnreachableError(
                        f"{self.name} sent no video frame within {first_frame_timeout:g} s of connecting")
                except HarStreamError as err:
                    return went_live, False, (err if went_live or info.live else _AtOpen(err))
                if not went_live:
                    went_live = True
                    timeout = stall_timeout
                    self._went_live(info)
                self._deliver(frame)
        finally:
            self._current = None
            stats = source.stats
            self._done = SourceStats(self._done.frames_decoded + stats.frames_decoded,
                                     self._done.frames_sampled + stats.frames_sampled,
                                     self._done.dropped + stats.dropped)
            closer = asyncio.get_running_loop().create_task(source.close(), name=f"har-live-{self.name}-close")
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

    def _went_live(self, info: SourceInfo) -> None:
        status = self._status
        reconnected = status.connected_at is not None
        self._set("live", info=replace(info, url=self.url), attempt=0, retry_in=None, retry_at=None,
                  connected_at=time.time(), reconnects=status.reconnects + (1 if reconnected else 0))

    def _deliver(self, frame: DecodedFrame) -> None:
        """Hand a frame to the consumer with a monotonic index and pts; drop the oldest when full."""
        epoch = self._status.reconnects
        if epoch != self._epoch_seen:  # the first frame of a connection
            if self._last_pts is not None and self._last_arrival is not None:  # continue after the outage
                gap = max(1e-3, frame.arrival - self._last_arrival)
                self._pts_offset = self._last_pts + gap - frame.pts
            self._epoch_seen = epoch
        pts = frame.pts + self._pts_offset
        if self._last_pts is not None:
            pts = max(pts, self._last_pts)
        index = self._done.frames_decoded + frame.index
        self._last_pts, self._last_arrival = pts, frame.arrival
        self._delivered += 1
        if len(self._out) >= self._queue_size:
            self._out.popleft()
            self._out_dropped += 1
        self._out.append(LiveFrame(index, pts, frame.arrival, frame.frame, frame.image, epoch))
        self._out_ready.set()
        self._status = replace(self._status, last_frame_at=time.time())

    # -- state --------------------------------------------------------------------------------------------

    def _set(self, state: State, **changes: Any) -> None:
        previous = self._status
        status = replace(previous, state=state, since=previous.since if state == previous.state else time.time(),
                         **changes)
        self._status = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if state != previous.state or status.retry_in is not None:
            detail = f": {status.error}" if state in ("reconnecting", "failed") and status.error else ""
            retry = f"; retrying in {status.retry_in:.1f} s" if status.retry_in is not None else ""
            level = logging.WARNING if state in ("reconnecting", "failed") else logging.INFO
            log.log(level, "live source %s (%s): %s%s%s", self.name, self.url, state, detail, retry)
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception:  # a consumer's bug must not kill the stream
                log.exception("status callback of live source %s failed", self.name)

    def _fail(self, error: BaseException) -> None:
        message = self._describe(error)
        if isinstance(error, _AtOpen):
            error = error.error
        self._error = type(error)(message) if isinstance(error, HarStreamError) else error
        self._set("failed", error=message, error_at=time.time(), retry_in=None, retry_at=None)
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._out_ready.set()

    def _describe(self, error: BaseException) -> str:
        """One line, no credentials."""
        if isinstance(error, _AtOpen):
            error = error.error
        text = str(error) if isinstance(error, HarStreamError) else f"internal error: {type(error).__name__}: {error}"
        return scrub(" ".join(text.split()) or type(error).__name__, self._url)


class _AtOpen(Exception):
    """An error that happened before any frame of a connection: only these can be permanent."""

    def __init__(self, error: HarStreamError) -> None:
        super().__init__(str(error))
        self.error = error


def _transient(error: BaseException) -> bool:
    """Network trouble heals (retry); a URL that answers with something that is not video does not."""
    if isinstance(error, _AtOpen):
        return isinstance(error.error, SourceUnreachableError)
    return isinstance(error, HarStreamError)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url``'s credentials taken out wherever they appear (the URL, its user:password@)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return text
    text = text.replace(url, redact(url))
    userinfo = parts.netloc.rsplit("@", 1)[0]
    text = text.replace(userinfo + "@", "***@")
    for secret in {userinfo, unquote(userinfo), parts.password or "", unquote(parts.password or "")}:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Serialised:
    """``prepare`` behind a lock: a closing connection's thread may still be in it when the next one starts,
    and a ``FramePreparer`` reuses one scaler, which is not thread-safe."""

    def __init__(self, prepare: Prepare) -> None:
        self._prepare = prepare
        self._lock = threading.Lock()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        with self._lock:
            return self._prepare(frame)


__all__ = [
    "LIVE_URL_SCHEMES", "STATES", "LiveFrame", "ReconnectPolicy", "ReconnectingSource", "SourceStatus", "State",
    "StatusCallback", "check_live_url", "scrub",
]
