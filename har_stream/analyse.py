"""Offline analysis: the live pipeline run as fast as decode allows, with nothing dropped.

Each window becomes a segment (label, confidence, top-5, which source decided); segments are merged into a
timeline of actions. Progress is reported while it runs so long jobs are never silent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError
from .fallback import ClipFallback
from .pipeline import StreamPipeline, StreamSettings
from .smoother import build_timeline
from .sources import ResolvedMedia, open_source
from .types import AnalysisResult, LabelEvent, ModelRef, Segment
from .worker import ModelWorker


@dataclass(frozen=True)
class Progress:
    frames_decoded: int
    frames_total: int | None
    media_time: float
    duration: float | None
    elapsed: float

    @property
    def realtime(self) -> float:
        """How many seconds of media are analysed per second of wall time."""
        return self.media_time / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        if self.frames_total:
            return min(1.0, self.frames_decoded / self.frames_total)
        if self.duration:
            return min(1.0, self.media_time / self.duration)
        return None


ProgressCallback = Callable[[Progress], None]


class SegmentCollector:
    """Sink that keeps each window's final word: CLIP's refinement when there is one, else the model's."""

    def __init__(self) -> None:
        self.model: dict[int, tuple[LabelEvent, np.ndarray]] = {}
        self.clip: dict[int, tuple[LabelEvent, np.ndarray]] = {}

    def __call__(self, event: LabelEvent, probs: np.ndarray) -> None:
        target = self.clip if event.refines is not None else self.model
        target[event.window_index] = (event, probs)

    def segments(self) -> tuple[list[Segment], np.ndarray]:
        segments, rows = [], []
        for index in sorted(self.model):
            event, probs = self.clip.get(index, self.model[index])
            segments.append(Segment(start=event.window[0], end=event.window[1], prediction=event.prediction))
            rows.append(probs)
        return segments, np.array(rows)


async def analyse(spec: str, worker: ModelWorker, *, settings: StreamSettings = StreamSettings(),
                  fallback: ClipFallback | None = None, model_ref: ModelRef | None = None,
                  progress: ProgressCallback | None = None, progress_every: float = 0.25,
                  video_url: str | None = None,
                  resolver: Callable[[str], ResolvedMedia] | None = None,
                  hwdecode: str = "none") -> AnalysisResult:
    """Analyse a file path or URL with an already started ``worker``; returns the full result.

    ``resolver`` turns an http(s) URL into media instead of the default (yt-dlp for pages); ``hwdecode`` asks
    for NVDEC (``sources/hwdecode.py``)."""
    info_model = worker.info
    sample_fps = settings.fps or info_model.fps
    source = open_source(spec, sample_fps=sample_fps, prepare=worker.preparer(),
                         policy="block", resolver=resolver, hwdecode=hwdecode)
    collector = SegmentCollector()
    started = time.monotonic()
    async with source:
        info = await source.open()
        pipeline = StreamPipeline("offline", source, worker, settings, collector, fallback)

        def report() -> None:
            if progress is not None:
                stats = source.stats
                media_time = stats.frames_decoded / info.fps if info.fps else 0.0
                progress(Progress(stats.frames_decoded, info.frame_count, media_time, info.duration,
                                  time.monotonic() - started))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(progress_every)
                report()

        tick = asyncio.create_task(ticker(), name="analyse-progress")
        try:
            await pipeline.run(source_fps=info.fps)
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        report()
        stats = source.stats
    segments, probs = collector.segments()
    if not segments:
        raise InputError(f"{spec}: no frames could be decoded, so nothing was analysed")
    duration = info.duration if info.duration else max(s.end for s in segments)
    # A window's last frame lasts one *sampled* step, which can run past the media's end: the media ends first.
    segments = [replace(s, end=min(s.end, duration)) for s in segments]
    timeline = build_timeline(segments, probs, info_model.labels, duration, history=settings.smoothing)
    ref = model_ref or ModelRef(name=info_model.name, weights_sha256=info_model.weights_sha256,
                                labels=info_model.label_set)
    return AnalysisResult(
        video_url=video_url or spec,
        duration=duration,
        frames_decoded=stats.frames_decoded,
        frames_sampled=pipeline.stats.frames,
        fps=info.fps,
        segments=tuple(segments),
        timeline=timeline,
        model=ref,
        settings={"window": settings.window, "stride": settings.stride, "fps": min(sample_fps, info.fps or sample_fps),
                  "clip_threshold": fallback.threshold if fallback else 0.0,
                  "windows_refined_by_clip": pipeline.stats.refined},
        elapsed_s=time.monotonic() - started,
        stage_s={"decode": stats.decode_s, "prepare": stats.prepare_s},
    )
