"""Label smoothing so what users see does not flicker.

Live: ``Smoother`` averages class probabilities over the last N windows and only switches label when the
challenger beats the current label by a margin (hysteresis). Offline the whole sequence is known, so
``build_timeline`` smooths with a *centred* average — no lag, which keeps action boundaries where they are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from .types import Segment, TimelineEntry


class Smoother:
    def __init__(self, labels: Sequence[str], history: int = 3, hysteresis: float = 0.1) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self.labels = tuple(labels)
        self.hysteresis = hysteresis
        self._probs: deque[np.ndarray] = deque(maxlen=history)
        self._current: int | None = None

    def update(self, probs: np.ndarray) -> tuple[str, float]:
        """Feed one window's probabilities; return the smoothed (label, confidence)."""
        self._probs.append(np.asarray(probs, dtype=np.float32))
        avg = np.mean(self._probs, axis=0)
        best = int(np.argmax(avg))
        if self._current is None or avg[best] - avg[self._current] > self.hysteresis:
            self._current = best
        return self.labels[self._current], float(avg[self._current])

    def reset(self) -> None:
        self._probs.clear()
        self._current = None


def centred_average(probs: np.ndarray, history: int) -> np.ndarray:
    """Mean over a centred window of ``history`` rows (shrunk at the ends)."""
    half = history // 2
    out = np.empty_like(probs)
    for i in range(len(probs)):
        out[i] = probs[max(0, i - half): i + half + 1].mean(axis=0)
    return out


def build_timeline(segments: Sequence[Segment], probs: np.ndarray, labels: Sequence[str], duration: float,
                   history: int = 3) -> tuple[TimelineEntry, ...]:
    """Merge consecutive windows with the same smoothed label into actions covering [0, duration].

    Each window owns the stretch of time nearest its centre, so a change of action lands half-way between
    the centres of the last window of one action and the first of the next.
    """
    if not segments:
        return ()
    smoothed = centred_average(np.asarray(probs, dtype=np.float32), history)
    best = smoothed.argmax(axis=1)
    centres = [(s.start + s.end) / 2 for s in segments]
    # The media's end closes the last action, even where the last window's end overshoots it (its last frame
    # is given a whole sampling step). A duration before the last window's centre is bogus metadata: the
    # windows themselves show the media lasts at least to the last window's end.
    end = duration if duration >= centres[-1] else segments[-1].end
    edges = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [end]
    entries: list[TimelineEntry] = []
    run_start, run_conf = 0, [float(smoothed[0, best[0]])]
    for i in range(1, len(segments) + 1):
        if i < len(segments) and best[i] == best[run_start]:
            run_conf.append(float(smoothed[i, best[i]]))
            continue
        entries.append(TimelineEntry(label=labels[best[run_start]], start=edges[run_start], end=edges[i],
                                     confidence=float(np.mean(run_conf))))
        if i < len(segments):
            run_start, run_conf = i, [float(smoothed[i, best[i]])]
    return tuple(entries)
