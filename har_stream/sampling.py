"""Frame-rate sampling by presentation time: keep frames so their rate approximates a target fps.

Why by time and not "every n-th frame": sources run at 30, 29.97, 25 fps or at a varying rate (WebRTC,
RTSP), and frames go missing. Each slot of a grid spaced ``1/target`` keeps the frame nearest to it: a frame
may fill a slot early by up to half a source frame (estimated from the timestamps) and at most a quarter
slot, which absorbs timestamp jitter. Kept frames are never closer than half a slot, so the kept stream
neither stutters on jitter nor bursts to "catch up" after a gap: after a gap the grid restarts at the
first frame that follows it.
"""

from __future__ import annotations

from .errors import ConfigError

SLACK = 0.25  # of the target interval: the most a frame may be early and still fill a slot
DT_SMOOTHING = 0.1  # weight of the newest frame-to-frame delta in the source interval estimate
RESTART_BACKWARDS_S = 1.0  # a timestamp this far behind the last kept one means the stream restarted


class FpsSampler:
    """Decides per frame whether to keep it. ``None`` (or a target above the source rate) keeps all."""

    def __init__(self, target_fps: float | None) -> None:
        if target_fps is not None and not target_fps > 0:
            raise ConfigError(f"sample fps must be positive, got {target_fps}; leave it unset to keep every frame")
        self.target_fps = target_fps
        self._interval = 1.0 / target_fps if target_fps else 0.0
        self._next_due: float | None = None
        self._last_kept: float | None = None
        self._prev: float | None = None
        self._source_dt: float | None = None

    def accept(self, pts: float) -> bool:
        """True if the frame at ``pts`` (seconds) should be kept."""
        if not self._interval:
            return True
        interval, slack = self._interval, SLACK * self._interval
        self._observe(pts)
        due, last = self._next_due, self._last_kept
        early = slack if self._source_dt is None else min(slack, self._source_dt / 2)
        if due is None or last is None or pts < last - RESTART_BACKWARDS_S or pts >= due + interval:
            self._next_due = pts + interval  # first frame, restart, or a gap: a fresh grid from here
        elif pts < due - early or pts < last + interval / 2:
            return False
        else:
            self._next_due = due + interval
        self._last_kept = pts
        return True

    def reset(self) -> None:
        """Forget the grid (e.g. after a reconnect); the next frame is kept."""
        self._next_due = None
        self._last_kept = None
        self._prev = None
        self._source_dt = None

    def _observe(self, pts: float) -> None:
        """Track the source's frame interval; gaps and backward steps are not intervals."""
        prev, self._prev = self._prev, pts
        if prev is None or not 0 < pts - prev < self._interval:
            return
        dt = pts - prev
        self._source_dt = dt if self._source_dt is None else self._source_dt + DT_SMOOTHING * (dt - self._source_dt)
