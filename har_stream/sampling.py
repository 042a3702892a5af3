"""Frame-rate sampling by presentation time: keep frames so their rate approximates a target fps.

Why by time and not "every n-th frame": sources run at 30, 29.97, 25 fps or at a varying rate (WebRTC,
RTSP), and frames go missing. Slots are spaced ``1/target`` from the first frame, and each slot keeps the last
frame at or before it: the first frame less than one source interval (estimated from the timestamps) before
the slot. For a file at a constant rate that is exactly the frame torchvision's reference evaluation keeps
(``VideoClips`` resamples frame ``j`` as source frame ``floor(j * source_fps / target_fps)``), so a Kinetics
model sees the frames its published accuracy was measured on (tests/test_sampling.py checks it). Timestamps that
jitter (a webcam, an RTSP camera) move that edge: the slot's edge keeps twice the measured jitter (at most half a
source interval) away from the frames, so a jittering frame does not flip between two slots. Before the source
interval is known a frame may fill a slot early by at most a quarter slot. Kept frames are never closer than half a slot, so the kept stream neither stutters on jitter nor
bursts to "catch up" after a gap: after a gap the grid restarts at the first frame that follows it.
"""

from __future__ import annotations

from .errors import ConfigError

SLACK = 0.25  # of the target interval: how early a frame may fill a slot while the source interval is unknown
EDGE = 1e-6  # of the source interval: a frame exactly one interval before its slot leaves the slot to the next
JITTER_MARGIN = 2.0  # the slot's edge keeps this many times the measured timestamp jitter away from frames
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
        self._jitter = 0.0  # mean |frame interval - estimated interval|, seconds
        self._intervals = 0

    def accept(self, pts: float) -> bool:
        """True if the frame at ``pts`` (seconds) should be kept."""
        if not self._interval:
            return True
        interval, slack = self._interval, SLACK * self._interval
        self._observe(pts)
        due, last = self._next_due, self._last_kept
        dt = self._source_dt
        early = slack if dt is None else dt * (1.0 - EDGE) - min(dt / 2, JITTER_MARGIN * self._jitter)
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
        self._jitter = 0.0
        self._intervals = 0

    def _observe(self, pts: float) -> None:
        """Track the source's frame interval; gaps and backward steps are not intervals."""
        prev, self._prev = self._prev, pts
        if prev is None or not 0 < pts - prev < self._interval:
            return
        dt = pts - prev
        self._intervals += 1
        if self._source_dt is None:
            self._source_dt = dt
            return
        weight = max(DT_SMOOTHING, 1.0 / self._intervals)  # a plain mean until there are enough intervals
        self._jitter += weight * (abs(dt - self._source_dt) - self._jitter)
        self._source_dt += DT_SMOOTHING * (dt - self._source_dt)
