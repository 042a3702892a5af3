"""Wires one source to the engine: sample → prepare → encode (cached) → window → classify → smooth → sinks.

Live and offline run this same code; they differ only in queue policies (``drop_oldest`` keeps live
streams current, ``block`` makes offline runs lose nothing) and in the final ``flush`` window offline.
Each pipeline owns its tasks through a ``TaskGroup``: when ``run`` returns or is cancelled, nothing of it
is left running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .fallback import ClipFallback
from .ring_buffer import FrameSlot
from .scheduler import Window, WindowScheduler
from .smoother import Smoother
from .sources.base import FrameSource
from .types import LabelEvent, Prediction
from .worker import ModelWorker

log = logging.getLogger(__name__)

Policy = Literal["block", "drop_oldest"]
EventSink = Callable[[LabelEvent, np.ndarray], None]


@dataclass(frozen=True)
class StreamSettings:
    window: int = 16
    stride: int = 8
    fps: float | None = None  # sampling rate; None = the model's
    smoothing: int = 3
    hysteresis: float = 0.1
    live: bool = False
    window_queue: int = 8
    fallback_queue: int = 8

    @property
    def policy(self) -> Policy:
        return "drop_oldest" if self.live else "block"


def top_prediction(probs: np.ndarray, labels: tuple[str, ...], source: Literal["model", "clip"],
                   k: int = 5) -> Prediction:
    order = np.argsort(probs)[::-1][:k]
    top = tuple((labels[i], float(probs[i])) for i in order)
    return Prediction(label=top[0][0], confidence=top[0][1], top5=top, source=source)


async def offer(queue: asyncio.Queue, item: object, policy: Policy) -> int:
    """Put with a named policy; returns how many items were dropped to make room."""
    if policy == "block":
        await queue.put(item)
        return 0
    dropped = 0
    while queue.full():
        queue.get_nowait()
        dropped += 1
    queue.put_nowait(item)
    return dropped


@dataclass
class StreamStats:
    frames: int = 0
    windows: int = 0
    refined: int = 0
    fallback_dropped: int = 0


class StreamPipeline:
    """One stream through the engine. ``run()`` returns when the source ends (or raises its error)."""

    def __init__(self, name: str, source: FrameSource, worker: ModelWorker, settings: StreamSettings,
                 sink: EventSink, fallback: ClipFallback | None = None) -> None:
        self.name = name
        self.source = source
        self.worker = worker
        self.settings = settings
        self.sink = sink
        self.fallback = fallback
        self.labels = worker.info.labels
        self.stats = StreamStats()
        self.smoother = Smoother(self.labels, settings.smoothing, settings.hysteresis)
        self.first_window_at: float | None = None

    @property
    def sample_fps(self) -> float:
        return self.settings.fps or self.worker.info.fps

    async def run(self, source_fps: float | None = None) -> None:
        fps = min(self.sample_fps, source_fps) if source_fps else self.sample_fps
        scheduler = WindowScheduler(self.settings.window, self.settings.stride, 1.0 / fps)
        windows: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.window_queue)
        refine: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.fallback_queue)
        keep_frames = self.fallback is not None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._classify_loop(windows, refine), name=f"{self.name}-classify")
                if self.fallback is not None:
                    tg.create_task(self._fallback_loop(refine), name=f"{self.name}-fallback")
                async for frame in self.source.frames():
                    feature = await self.worker.encode(frame.image)
                    slot = FrameSlot(self.stats.frames, frame.pts, frame.arrival, feature,
                                     frame.frame if keep_frames else None)
                    self.stats.frames += 1
                    window = scheduler.push(slot)
                    if window is not None:
                        await windows.put(window)
                if not self.settings.live and (window := scheduler.flush()) is not None:
                    await windows.put(window)
                await windows.put(None)  # end of stream: the loops drain and return
        except* Exception as group:
            raise group.exceptions[0] from None
        finally:
            scheduler.ring.clear()
            if self.fallback is not None:
                self.fallback.forget(self.name)

    async def _classify_loop(self, windows: asyncio.Queue[Window | None],
                             refine: asyncio.Queue[Window | None]) -> None:
        while (window := await windows.get()) is not None:
            features = await asyncio.gather(*(s.feature for s in window.slots))
            probs = await self.worker.classify(features)
            prediction = top_prediction(probs, self.labels, "model")
            smoothed, _ = self.smoother.update(probs)
            self.stats.windows += 1
            self._emit(window, prediction, smoothed, probs, refines=None)
            if self.fallback is not None and self.fallback.wants(prediction.confidence):
                self.stats.fallback_dropped += await offer(refine, window, self.settings.policy)
        await offer(refine, None, self.settings.policy)

    async def _fallback_loop(self, refine: asyncio.Queue[Window | None]) -> None:
        assert self.fallback is not None
        while (window := await refine.get()) is not None:
            probs = await self.fallback.refine(self.name, window)
            prediction = top_prediction(probs, self.labels, "clip")
            self.stats.refined += 1
            self._emit(window, prediction, prediction.label, probs, refines=window.index)

    def _emit(self, window: Window, prediction: Prediction, smoothed: str, probs: np.ndarray,
              refines: int | None) -> None:
        now = time.monotonic()
        event = LabelEvent(stream=self.name, t=window.end, window=(window.start, window.end),
                           prediction=prediction, smoothed_label=smoothed,
                           latency_ms=(now - window.newest_arrival) * 1000.0, window_index=window.index,
                           refines=refines)
        self.sink(event, probs)
