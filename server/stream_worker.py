"""One stream's handle on a shared ``ModelWorker``, with a cap on its frames waiting for the encoder.

Why: the worker's batcher queue is shared by every peer and sized for batching, so one live stream could
park a second or more of frames in it when the model is slow, and its labels would lag by that much. With
at most ``max_in_flight`` unanswered frames per stream, the pipeline stops pulling from its source instead,
and the source's ``drop_oldest`` queue sheds the oldest frames and counts them: the stream stays current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import av
import numpy as np
import torch

from har_stream.models.base import ModelInfo
from har_stream.worker import ModelWorker


class StreamWorker:
    """Duck-types the ``ModelWorker`` calls a ``StreamPipeline`` makes (``info``, ``encode``, ``submit_classify``,
    ``classify``)."""

    def __init__(self, worker: ModelWorker, max_in_flight: int = 2) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.worker = worker
        self.info: ModelInfo = worker.info
        self._slots = asyncio.Semaphore(max_in_flight)

    async def encode(self, image: np.ndarray | av.VideoFrame) -> asyncio.Future[torch.Tensor]:
        """Wait for one of this stream's slots, then queue the frame; the slot frees when it is answered."""
        await self._slots.acquire()
        try:
            future = await self.worker.encode(image)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    async def classify(self, features: Sequence[torch.Tensor]) -> np.ndarray:
        return await self.worker.classify(features)

    async def submit_classify(self, features: Sequence[torch.Tensor]) -> asyncio.Future[np.ndarray]:
        return await self.worker.submit_classify(features)
