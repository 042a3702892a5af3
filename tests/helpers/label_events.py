"""Fixed sequences of label events for the action-event tests, and a clock the tests move by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import numpy as np

from har_stream.events import ActionEvent
from har_stream.types import LabelEvent, Prediction

LABELS = ("walking", "running", "falling")
STEP = 0.5  # seconds between window ends (the stride)
LENGTH = 1.0  # seconds a window covers
EPOCH = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


class ManualClock:
    """UTC wall clock that only moves when told: ``at(seconds)`` sets it to EPOCH + seconds."""

    def __init__(self) -> None:
        self.now = EPOCH

    def at(self, seconds: float) -> None:
        self.now = EPOCH + timedelta(seconds=seconds)

    def __call__(self) -> datetime:
        return self.now


def label_event(index: int, label: str, confidence: float, *, stream: str = "cam", t: float | None = None,
                refines: int | None = None, raw: str | None = None) -> tuple[LabelEvent, np.ndarray]:
    """Window ``index`` (ending at LENGTH + index * STEP unless ``t`` is given) whose smoothed label is
    ``label``, with ``confidence`` for it and the rest shared by the other labels. ``raw``: the unsmoothed
    label, when it differs."""
    end = LENGTH + index * STEP if t is None else t
    probs = np.full(len(LABELS), (1.0 - confidence) / (len(LABELS) - 1), dtype=np.float32)
    probs[LABELS.index(label)] = confidence
    top = raw or label
    prediction = Prediction(label=top, confidence=float(probs[LABELS.index(top)]),
                            top5=tuple((name, float(probs[LABELS.index(name)])) for name in LABELS), source="model")
    event = LabelEvent(stream=stream, t=end, window=(end - LENGTH, end), prediction=prediction, smoothed_label=label,
                       latency_ms=1.0, window_index=index, refines=refines)
    return event, probs


def sequence(spec: Sequence[tuple[str, Sequence[float]]], first: int = 0) -> list[tuple[LabelEvent, np.ndarray]]:
    """Consecutive windows: ``[("walking", [0.8, 0.9]), ("running", [0.7])]`` → three windows in a row."""
    out, index = [], first
    for label, confidences in spec:
        for confidence in confidences:
            out.append(label_event(index, label, confidence))
            index += 1
    return out


def action_event(n: int, phase: str = "start", stream: str = "cam") -> ActionEvent:
    """A ready-made ``falling`` event number ``n`` (for delivery tests: store, webhooks, MQTT)."""
    return ActionEvent(id=f"e{n}", phase=phase, seq=0 if phase == "start" else 1, stream=stream, label="falling",
                       start=float(n), last=n + 1.0, end=n + 1.0 if phase == "end" else None, started_at=EPOCH,
                       ended_at=EPOCH if phase == "end" else None, updated_at=EPOCH, peak_confidence=0.9,
                       mean_confidence=0.8, peak_t=n + 0.5, windows=3, reason="changed" if phase == "end" else None,
                       has_snapshot=True, snapshot=b"jpeg")


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
