"""Prepared frames handed over at a frame rate in real time, as a live camera would: for benches and tests.

Like a live source's drop-oldest queue, a frame the consumer was not ready for is dropped (and counted) and the
newest one is handed over instead, so a slow consumer sees a current stream with gaps, never a growing backlog.
Frames carry no ``av.VideoFrame``: their ``image`` is already the model's input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from ..types import DecodedFrame, SourceInfo
from .base import FrameSource, SourceStats


class InjectedSource(FrameSource):
    """``images`` (N, h, w, 3) uint8, looped, at ``fps`` for ``seconds``."""

    def __init__(self, images: np.ndarray, seconds: float, fps: float = 15.0) -> None:
        self.images = images
        self.fps = fps
        self.total = int(seconds * fps)
        self.delivered = self.dropped = 0

    async def open(self) -> SourceInfo:
        h, w = self.images.shape[1:3]
        return SourceInfo(url="injected", width=w, height=h, fps=self.fps, duration=None, frame_count=None, live=True)

    async def frames(self) -> AsyncIterator[DecodedFrame]:  # type: ignore[override]
        start = time.monotonic()
        i = 0
        while i < self.total:
            now = time.monotonic()
            due = start + i / self.fps
            if now < due:
                await asyncio.sleep(due - now)
            else:
                newest = min(self.total - 1, int((now - start) * self.fps))
                self.dropped += newest - i
                i = newest
            self.delivered += 1
            image = self.images[i % len(self.images)]
            yield DecodedFrame(i, i / self.fps, time.monotonic(), None, image)  # type: ignore[arg-type]
            i += 1

    async def close(self) -> None:
        return None

    @property
    def stats(self) -> SourceStats:
        return SourceStats(self.delivered + self.dropped, self.delivered, self.dropped)
