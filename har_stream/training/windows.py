"""Which frames make a window: the live engine's ``WindowScheduler`` for evaluation, random starts for training."""

from __future__ import annotations

import numpy as np

from ..ring_buffer import FrameSlot
from ..scheduler import WindowScheduler


def engine_windows(n_frames: int, window: int, stride: int) -> list[tuple[int, ...]]:
    """Frame indices of each window the engine classifies offline in a clip of ``n_frames`` sampled frames.

    Runs the engine's own scheduler (a window every ``stride`` frames once ``window`` are buffered, then the
    end-aligned flush window; a short clip loops its frames), so evaluation from cached frames sees exactly
    the windows ``analyse`` and ``eval`` see.
    """
    scheduler = WindowScheduler(window, stride, frame_step=1.0)
    out = []
    for i in range(n_frames):
        done = scheduler.push(FrameSlot(seq=i, pts=float(i), arrival=0.0, feature=None))  # type: ignore[arg-type]
        if done is not None:
            out.append(tuple(s.seq for s in done.slots))
    last = scheduler.flush()
    if last is not None:
        out.append(tuple(s.seq for s in last.slots))
    return out


def window_at(n_frames: int, start: int, window: int) -> np.ndarray:
    """``window`` consecutive frame indices from ``start``; a clip shorter than a window loops, as the engine does."""
    if n_frames >= window:
        return np.arange(start, start + window)
    return np.sort(np.arange(window) % n_frames)


def random_starts(n_frames: int, window: int, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, max(1, n_frames - window + 1), size=count)
