"""Offline throughput: the engine versus a naive per-clip pipeline, same model and video, one run.

The naive pipeline is what a simple app does: decode every frame to a full-size array, resize with PIL,
and for every window re-encode all of its frames with the CNN. The engine samples in the decoder,
resizes with a reused swscale context, encodes each frame once (cached features), and batches.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from ..models.base import VideoModel
from ..pipeline import StreamSettings
from ..sampling import FpsSampler
from ..synthetic import LABELS, write_motion_clip
from ..worker import BatchSettings, ModelWorker, autocast_dtype


@dataclass(frozen=True)
class RunFigures:
    name: str
    wall_s: float
    frames_decoded: int
    windows: int
    duration_s: float
    stage_s: tuple[tuple[str, float], ...] = ()  # seconds per stage: decode, prepare (decode thread), encode, head

    @property
    def fps(self) -> float:
        return self.frames_decoded / self.wall_s

    @property
    def realtime(self) -> float:
        return self.duration_s / self.wall_s


def make_bench_clip(folder: Path, seconds: float = 30.0, width: int = 640, height: int = 480,
                    fps: float = 30.0) -> Path:
    script = [(LABELS[i % len(LABELS)], 5.0) for i in range(int(seconds // 5))]
    return write_motion_clip(folder / f"bench_{width}x{height}_{fps:g}fps.mp4", script, width=width,
                             height=height, fps=fps, seed=1)


def naive_run(model: VideoModel, video: Path, window: int, stride: int, sample_fps: float,
              precision: str = "fp32") -> RunFigures:
    """Decode → PIL resize → per window: encode all ``window`` frames again + head, batch of one."""
    info = model.info
    h, w = info.crop
    dtype = autocast_dtype(precision, model.device)
    started = time.perf_counter()
    frames: list[np.ndarray] = []
    decoded = windows = 0
    sampler = FpsSampler(sample_fps)
    since_last = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        for frame in container.decode(stream):
            decoded += 1
            if not sampler.accept(frame.time or 0.0):
                continue
            rgb = Image.fromarray(frame.to_ndarray(format="rgb24")).resize((w, h), Image.BILINEAR)
            frames.append(np.asarray(rgb))
            frames = frames[-window:]
            since_last += 1
            if len(frames) == window and (since_last >= stride or windows == 0):
                since_last = 0
                clip = torch.from_numpy(np.stack(frames))
                with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    model.classify(model.encode(clip).unsqueeze(0))
                windows += 1
    return RunFigures("naive (re-encode every window)", time.perf_counter() - started, decoded, windows,
                      duration)


async def engine_run_async(model: VideoModel, video: Path, window: int, stride: int,
                           sample_fps: float, precision: str = "fp32") -> RunFigures:
    from ..analyse import analyse

    started = time.perf_counter()
    async with ModelWorker(model, BatchSettings(max_batch=32, max_wait_ms=5.0, precision=precision)) as worker:
        result = await analyse(str(video), worker, settings=StreamSettings(window=window, stride=stride,
                                                                           fps=sample_fps))
    stages = (*result.stage_s.items(), ("encode", worker.encoder.stats.busy_s),
              ("head", worker.classifier.stats.busy_s))
    return RunFigures("engine (cached features, batched)", time.perf_counter() - started,
                      result.frames_decoded, len(result.segments), result.duration, tuple(stages))


def run_offline_bench(model: VideoModel, video: Path | None, *, window: int, stride: int, sample_fps: float,
                      repeats: int = 1, precision: str = "fp32", engine_model: VideoModel | None = None,
                      engine_precision: str | None = None) -> tuple[RunFigures, RunFigures, Path]:
    """Best of ``repeats`` for each, alternating naive/engine so machine drift hits both alike.

    The naive pipeline runs ``model`` at ``precision``; the engine runs ``engine_model`` (e.g. the same network on
    another runtime) at ``engine_precision``, both defaulting to the naive pipeline's."""
    engine_model = engine_model or model
    engine_precision = engine_precision or precision
    tmp = None
    if video is None:
        tmp = tempfile.TemporaryDirectory(prefix="har-bench-")
        video = make_bench_clip(Path(tmp.name))
    try:
        naive_best = engine_best = None
        for _ in range(repeats):
            n = naive_run(model, video, window, stride, sample_fps, precision)
            e = asyncio.run(engine_run_async(engine_model, video, window, stride, sample_fps, engine_precision))
            naive_best = n if naive_best is None or n.wall_s < naive_best.wall_s else naive_best
            engine_best = e if engine_best is None or e.wall_s < engine_best.wall_s else engine_best
        assert naive_best is not None and engine_best is not None
        return naive_best, engine_best, video
    finally:
        if tmp is not None:
            tmp.cleanup()
