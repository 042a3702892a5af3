"""The engine's own capacity: N live streams with decoded frames injected, so decode and the network are not in it.

Each stream is a ``StreamPipeline`` over an ``InjectedSource``: prepared frames at 15 fps in real time, a frame
the pipeline was not ready for dropped (and counted) as a live source's drop-oldest queue would. All streams share one ``ModelWorker``, as peers and cameras do. A run reports windows, label latency
percentiles and drops per stream, the batchers' busy time and mean batch (encode = the frame encoder or, for a
clip model, normalisation; classify = the head or the 3D network), and the FLOPs done per second. A separate
figure decodes a real H.264 clip on one thread, to show how many streams decode itself would allow.

``har-stream bench gpu`` runs it on a CUDA device; ``--device cpu`` measures this CPU the same way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from ..models.base import VideoModel
from ..pipeline import StreamPipeline, StreamSettings
from ..sources.injected import InjectedSource
from ..synthetic import LABELS, render
from ..types import LabelEvent
from ..worker import BatchSettings, ModelWorker

FPS = 15.0
# Dense (no sparsity) bf16 tensor peaks from NVIDIA's data sheets, TFLOP/s, by a substring of the card's name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class EngineRun:
    streams: int
    seconds: float
    stride: int
    latency_ms: tuple[float, ...]  # every label's, after warm-up
    windows_per_stream: tuple[int, ...]
    dropped: int
    encode_busy_s: float
    classify_busy_s: float
    encode_mean_batch: float
    classify_mean_batch: float
    flops: float  # done per second of wall time, all streams

    @property
    def expected_windows(self) -> float:
        return self.seconds * FPS / self.stride

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latency_ms, q)) if self.latency_ms else None

    @property
    def sustained(self) -> bool:
        """No frame dropped after warm-up, and every stream at 90 % of its stride's window rate or more."""
        return self.dropped == 0 and min(self.windows_per_stream, default=0) >= 0.9 * self.expected_windows

    @property
    def tflops(self) -> float:
        return self.flops / 1e12


def count_flops(model: VideoModel) -> tuple[float, float]:
    """FLOPs of one frame's ``encode`` and one window's ``classify`` (torch's counter; matmuls and convs)."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = model.info.crop
    frames = torch.zeros(model.info.frames, h, w, 3, dtype=torch.uint8)
    with FlopCounterMode(display=False) as enc:
        feats = model.encode(frames)
    with FlopCounterMode(display=False) as cls:
        model.classify(feats.unsqueeze(0))
    return enc.get_total_flops() / model.info.frames, float(cls.get_total_flops())


def stream_frames(model: VideoModel, count: int = 48, seed: int = 0) -> np.ndarray:
    h, w = model.info.crop
    rng = np.random.default_rng(seed)
    return render(LABELS[seed % len(LABELS)], count, width=w, height=h, rng=rng)


async def run_streams(model: VideoModel, streams: int, *, seconds: float = 10.0, warmup: float = 3.0,
                      stride: int = 8, batch: BatchSettings = BatchSettings(max_batch=64, max_wait_ms=5.0),
                      flops: tuple[float, float] | None = None) -> EngineRun:
    """``streams`` injected live streams for ``warmup + seconds``; figures count the last ``seconds`` only."""
    per_frame, per_window = flops or (0.0, 0.0)
    events: list[tuple[int, float, LabelEvent]] = []
    cameras = [InjectedSource(stream_frames(model, seed=i), warmup + seconds, FPS) for i in range(streams)]
    settings = StreamSettings(window=model.info.frames, stride=stride, live=True, window_queue=1, fallback_queue=1,
                              max_in_flight=2, adaptive_stride=False)  # the capacity at the asked stride
    async with ModelWorker(model, batch) as worker:
        start = time.monotonic()

        def sink(index: int):  # type: ignore[no-untyped-def]
            return lambda event, _: events.append((index, time.monotonic() - start, event))

        pipelines = [StreamPipeline(f"s{i}", cam, worker, settings, sink(i)) for i, cam in enumerate(cameras)]
        warm = asyncio.create_task(asyncio.sleep(warmup))
        async with asyncio.TaskGroup() as tg:
            for pipeline in pipelines:
                tg.create_task(pipeline.run(FPS))
            await warm
            dropped_at_warm = sum(c.dropped for c in cameras)
            enc0, cls0 = (worker.encoder.stats.busy_s, worker.encoder.stats.items, worker.encoder.stats.batches), \
                (worker.classifier.stats.busy_s, worker.classifier.stats.items, worker.classifier.stats.batches)
        enc, cls = worker.encoder.stats, worker.classifier.stats
    measured = [(i, e) for i, t, e in events if t >= warmup]
    windows = [sum(1 for i, _ in measured if i == s) for s in range(streams)]
    enc_items, cls_items = enc.items - enc0[1], cls.items - cls0[1]
    return EngineRun(
        streams=streams, seconds=seconds, stride=stride, latency_ms=tuple(e.latency_ms for _, e in measured),
        windows_per_stream=tuple(windows), dropped=sum(c.dropped for c in cameras) - dropped_at_warm,
        encode_busy_s=enc.busy_s - enc0[0], classify_busy_s=cls.busy_s - cls0[0],
        encode_mean_batch=enc_items / max(1, enc.batches - enc0[2]),
        classify_mean_batch=cls_items / max(1, cls.batches - cls0[2]),
        flops=(enc_items * per_frame + cls_items * per_window) / seconds,
    )


def decode_fps(video: Path, frames: int = 300) -> float:
    """Frames/s one thread decodes ``video`` at (H.264 640x480 in the bench): the cap decode puts on streams."""
    started = time.perf_counter()
    done = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        for _ in container.decode(stream):
            done += 1
            if done >= frames:
                break
    return done / (time.perf_counter() - started)


def bf16_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)
