"""Decode a dataset clip into the frames the live engine would see: the same source, sampler and preparer.

``AvSource`` decodes in its own thread, ``FpsSampler`` keeps frames by presentation time at the model's fps
and ``FramePreparer`` resizes and crops them with the same swscale path, so a model trains on exactly the
pixels it is later served. Several clips decode at once, one decode thread each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.base import Size
from ..models.resampling import SWSCALE_AREA, Resampling
from ..preprocess import FramePreparer
from ..sources import AvSource


@dataclass(frozen=True)
class FrameSpec:
    """How to sample and prepare frames: a model's fps, resize, crop and resampling (``ModelInfo``'s convention)."""

    fps: float
    resize: int | Size
    crop: Size
    resampling: Resampling = SWSCALE_AREA


@dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray  # (N, crop_h, crop_w, 3) uint8
    pts: np.ndarray  # (N,) seconds from the first frame
    source_fps: float


async def decode_clip(path: Path, spec: FrameSpec) -> DecodedClip:
    source = AvSource(path, sample_fps=spec.fps, prepare=FramePreparer(spec.resize, spec.crop, spec.resampling),
                      policy="block")
    images, pts = [], []
    async with source:
        info = await source.open()
        async for frame in source.frames():
            assert frame.image is not None
            images.append(frame.image)
            pts.append(frame.pts)
    if not images:
        raise InputError(f"{path}: no frames could be decoded; the file is empty or damaged")
    return DecodedClip(np.stack(images), np.asarray(pts, dtype=np.float64), info.fps)


Done = Callable[[Path, DecodedClip | InputError], None]


async def decode_clips(paths: Sequence[Path], spec: FrameSpec, on_done: Done, *, jobs: int = 2) -> None:
    """Decode ``paths`` with up to ``jobs`` at once; ``on_done`` gets each clip, or the ``InputError`` it raised."""
    gate = asyncio.Semaphore(max(1, jobs))

    async def one(path: Path) -> None:
        async with gate:
            try:
                result: DecodedClip | InputError = await decode_clip(path, spec)
            except InputError as err:
                result = err
            on_done(path, result)

    async with asyncio.TaskGroup() as tg:
        for path in paths:
            tg.create_task(one(path), name=f"decode-{Path(path).name}")
