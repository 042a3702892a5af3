"""Real-time pacing for media that does not pace itself (a file over HTTP, a VOD playlist), as ``ffmpeg -re``.

A watched stream is meant to be *now*. A camera URL that is really a recording (``.mp4``/``.ts`` over HTTP, an
HLS VOD playlist) decodes as fast as the CPU allows: minutes of video a second, frames dropped by the live
queues, and action events whose stream times run far ahead of the wall clock. ``Pacer`` holds each frame back
until its timestamp is due on a wall clock started at the first frame, sleeping in the source's own decode
thread (so nothing else waits), and wakes at once when the source is stopped.

It never hurries: when decoding falls behind (a slow machine, a network stall) by more than ``max_lag`` it
re-anchors the clock at the late frame instead of racing to catch up, and a jump forward in the timestamps
longer than ``max_wait`` (a discontinuity) re-anchors too, rather than freezing the stream for that long.
Real live sources (RTSP, RTMP, SRT, live HLS, WebRTC) arrive at their own rate and are not paced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Releases frames at the rate of their timestamps (seconds); one per stream, used from one thread."""

    def __init__(self, stop: threading.Event, *, max_lag: float = 1.0, max_wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop = stop
        self._max_lag = max_lag
        self._max_wait = max_wait
        self._clock = clock
        self._origin: float | None = None  # wall-clock time of timestamp 0
        self.slept = 0.0  # seconds spent holding frames back, for tests and stats

    def wait(self, t: float | None) -> bool:
        """Block until the frame at ``t`` is due; False when the source was stopped meanwhile."""
        if t is None:  # no timestamp: nothing to pace by; deliver it
            return not self._stop.is_set()
        now = self._clock()
        if self._origin is None:
            self._origin = now - t
            return not self._stop.is_set()
        delay = self._origin + t - now
        if delay < -self._max_lag or delay > self._max_wait:
            self._origin = now - t  # far behind, a jump in timestamps, or time went back: carry on from here
            return not self._stop.is_set()
        if delay > 0:
            self.slept += delay
            return not self._stop.wait(delay)
        return not self._stop.is_set()
