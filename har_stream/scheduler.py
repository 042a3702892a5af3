"""When does a window close? Every ``stride`` new frames once ``window`` frames are buffered.

``stride`` may change between frames (live streams adapt it to the model's speed, see ``adaptive_stride.py``):
the next window then closes ``stride`` frames after the last one.

Offline runs also call ``flush()`` at the end, so the last frames are covered by a final window aligned to
the end of the media, and a clip shorter than one window still gets one (its frames repeated to fill it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .ring_buffer import FrameSlot, RingBuffer


@dataclass(frozen=True)
class Window:
    index: int
    slots: tuple[FrameSlot, ...]
    frame_step: float  # seconds between sampled frames, to give the last frame its duration

    @property
    def start(self) -> float:
        return self.slots[0].pts

    @property
    def end(self) -> float:
        return self.slots[-1].pts + self.frame_step

    @property
    def newest_arrival(self) -> float:
        return max(s.arrival for s in self.slots)


class WindowScheduler:
    def __init__(self, window: int, stride: int, frame_step: float) -> None:
        if window < 1:
            raise ConfigError(f"--window must be at least 1 (got {window})")
        if stride < 1:
            raise ConfigError(f"--stride must be at least 1 (got {stride})")
        self.window = window
        self.stride = stride
        self.frame_step = frame_step
        self.ring = RingBuffer(window)
        self._pushed = 0
        self._pushed_at_last_window = 0
        self._windows = 0
        self._last_window_end_seq = -1

    def push(self, slot: FrameSlot) -> Window | None:
        """Add a frame; return the window it completes, if any."""
        self.ring.push(slot)
        self._pushed += 1
        if self._pushed < self.window:
            return None
        if self._pushed == self.window or self._pushed - self._pushed_at_last_window >= self.stride:
            self._pushed_at_last_window = self._pushed
            return self._emit(self.ring.last(self.window))
        return None

    def restart(self) -> None:
        """Fill afresh, after a break in the stream (a camera reconnected): no window mixes frames from both
        sides of it. Window indexes keep counting."""
        self.ring.clear()
        self._pushed = 0
        self._pushed_at_last_window = 0

    def flush(self) -> Window | None:
        """At end of media: one last window ending at the last frame, unless one already does."""
        slots = tuple(self.ring)
        if not slots or self._last_window_end_seq == slots[-1].seq:
            return None
        if len(slots) < self.window:  # short clip: loop its frames to fill one window
            slots = tuple(slots[i % len(slots)] for i in range(self.window))
            slots = tuple(sorted(slots, key=lambda s: s.seq))
        return self._emit(slots)

    def _emit(self, slots: tuple[FrameSlot, ...]) -> Window:
        window = Window(index=self._windows, slots=slots, frame_step=self.frame_step)
        self._windows += 1
        self._last_window_end_seq = slots[-1].seq
        return window

    @property
    def windows_emitted(self) -> int:
        return self._windows
