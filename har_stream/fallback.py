"""CLIP as an asynchronous second opinion for windows the primary model is unsure of.

The primary label is published first; the refinement follows as its own event marked ``source: "clip"``.
CLIP image embeddings are cached per frame and stream, so overlapping windows share them, and the CLIP
input is prepared on CLIP's own inference thread only for frames that are actually asked about.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import numpy as np
import torch

from .scheduler import Window
from .worker import ModelWorker


class ClipFallback:
    def __init__(self, worker: ModelWorker, threshold: float, cache_frames: int = 64) -> None:
        self.worker = worker
        self.threshold = threshold
        self.cache_frames = cache_frames
        self._caches: dict[str, OrderedDict[int, asyncio.Future[torch.Tensor]]] = {}
        self.windows_refined = 0

    def wants(self, confidence: float) -> bool:
        """``threshold`` 0 never asks CLIP, 1 always does."""
        return self.threshold >= 1.0 or confidence < self.threshold

    async def refine(self, stream: str, window: Window) -> np.ndarray:
        """CLIP's probabilities over the primary model's labels for this window."""
        cache = self._caches.setdefault(stream, OrderedDict())
        futures = []
        for slot in window.slots:
            fut = cache.get(slot.seq)
            if fut is None:
                if slot.frame is None:
                    raise RuntimeError("window slots carry no frames; the pipeline must keep them for CLIP")
                fut = await self.worker.encode(slot.frame)
                cache[slot.seq] = fut
                while len(cache) > self.cache_frames:
                    cache.popitem(last=False)
            futures.append(fut)
        features = await asyncio.gather(*futures)
        self.windows_refined += 1
        return await self.worker.classify(features)

    def forget(self, stream: str) -> None:
        """Free a finished stream's cached embeddings, cancelling those not computed yet."""
        for fut in self._caches.pop(stream, {}).values():
            if not fut.done():
                fut.cancel()

    @property
    def streams_cached(self) -> int:
        return len(self._caches)
