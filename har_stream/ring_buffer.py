"""Per-stream sliding buffer of the last ``capacity`` sampled frames and their cached features.

Each slot holds the future of the frame's encoder output, so a frame is encoded once however many
overlapping windows it ends up in; the decoded frame itself is kept too, for the CLIP fallback, which
prepares its own input lazily and only for the windows that need it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av


@dataclass(frozen=True, eq=False)
class FrameSlot:
    seq: int  # index among sampled frames of this stream
    pts: float
    arrival: float
    feature: asyncio.Future[Any]
    frame: av.VideoFrame | None = None


class RingBuffer:
    """Fixed-capacity FIFO: pushing into a full buffer evicts (and frees) the oldest slot."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._slots: deque[FrameSlot] = deque(maxlen=capacity)

    def push(self, slot: FrameSlot) -> None:
        self._slots.append(slot)

    def last(self, n: int) -> tuple[FrameSlot, ...]:
        if n > len(self._slots):
            raise ValueError(f"asked for {n} slots, buffer holds {len(self._slots)}")
        return tuple(self._slots)[-n:]

    def clear(self) -> None:
        for slot in self._slots:
            if not slot.feature.done():
                slot.feature.cancel()
        self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[FrameSlot]:
        return iter(self._slots)
