"""``TapSource``: another source's frames, passed through unchanged, shown to a callback on the way.

Why: several consumers want to see a live stream's frames besides the pipeline (event snapshots, the video
relayed to browsers) without decoding it twice or owning the iteration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ..types import DecodedFrame, SourceInfo
from .base import FrameSource, SourceStats


class TapSource(FrameSource):
    """Give the pipeline the tap instead of the source; ``on_frame`` runs on the event loop, per frame, and
    must be quick."""

    def __init__(self, source: FrameSource, on_frame: Callable[[DecodedFrame], None]) -> None:
        self.source = source
        self.on_frame = on_frame

    async def open(self) -> SourceInfo:
        return await self.source.open()

    async def frames(self) -> AsyncIterator[DecodedFrame]:
        async for frame in self.source.frames():
            self.on_frame(frame)
            yield frame

    async def close(self) -> None:
        await self.source.close()

    @property
    def stats(self) -> SourceStats:
        return self.source.stats
