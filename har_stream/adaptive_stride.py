"""Live windows no faster than the model can answer them: the stride widens when the model falls behind.

A clip model runs its whole network per window (S3D: about half a second on a 2-core CPU), while stride 8 at
15 fps asks for ~1.9 windows a second. Left alone, windows queue behind the model and every label arrives
later than the one before. ``AdaptiveStride`` measures how long each window takes to be answered (the shared
batcher's queueing included, so streams sharing a model share its capacity) and sets the stride so that
windows come at most ``1 / headroom`` as fast as they are answered. It never goes below the configured stride,
and returns to it as soon as the model keeps up again. The first answer is not counted: it also pays for the
model's warm-up (kernel selection, a runtime compiling its graph). Offline analysis never adapts: it loses
nothing by being slower.
"""

from __future__ import annotations

import math

from .errors import ConfigError

HEADROOM = 1.25  # windows arrive at most 1/1.25 = 80 % as fast as they are answered
SMOOTHING = 0.3  # weight of the newest answer time in the running estimate
MAX_FACTOR = 16  # the stride never grows past 16× the configured one (or the window, if larger)


class AdaptiveStride:
    """The effective stride of one live stream. ``observe(seconds)`` after each answered window."""

    def __init__(self, base: int, fps: float, window: int, *, headroom: float = HEADROOM,
                 smoothing: float = SMOOTHING) -> None:
        if base < 1 or fps <= 0 or window < 1:
            raise ConfigError(f"adaptive stride needs stride >= 1, fps > 0 and window >= 1 (got {base}, {fps}, {window})")
        self.base = base
        self.fps = fps
        self.headroom = headroom
        self.smoothing = smoothing
        self.max_stride = max(base * MAX_FACTOR, window)
        self.stride = base
        self.answer_s: float | None = None  # running estimate of one window's answer time
        self._warm = False  # the first answer (warm-up) has been seen

    @property
    def asked_rate(self) -> float:
        """Windows per second the configured stride asks for."""
        return self.fps / self.base

    @property
    def capacity(self) -> float | None:
        """Windows per second the model answers for this stream, as measured."""
        return 1.0 / self.answer_s if self.answer_s else None

    @property
    def adapted(self) -> bool:
        return self.stride != self.base

    def observe(self, seconds: float) -> int:
        """Record one window's answer time; returns the stride to use from now on."""
        if not self._warm:
            self._warm = True
            return self.stride
        seconds = max(0.0, seconds)
        est = self.answer_s
        self.answer_s = seconds if est is None else est + self.smoothing * (seconds - est)
        needed = math.ceil(self.answer_s * self.fps * self.headroom - 1e-9)
        self.stride = min(self.max_stride, max(self.base, needed))
        return self.stride
