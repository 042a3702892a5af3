"""Evaluate any model on a dataset's held-out test split through the live engine's own pipeline.

Each test video runs through ``StreamPipeline`` exactly as ``analyse`` runs it (``AvSource`` sampling at the
model's fps, ``FramePreparer``, the ring buffer, ``WindowScheduler`` windows and the final flush window), on a
shared ``ModelWorker`` that batches the windows of several videos at once. A video's score is the mean of its
windows' probabilities. Checkpoints that list the videos they were trained on are refused when the test split
overlaps them: the figures must be held-out figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analyse import SegmentCollector
from ..datasets.base import Clip, Dataset
from ..errors import HarStreamError, InputError, ModelError
from ..models.base import VideoModel
from ..models.cnn_lstm import read_checkpoint
from ..models.registry import is_checkpoint_path
from ..pipeline import StreamPipeline, StreamSettings
from ..preprocess import FramePreparer
from ..sources import open_source
from ..weights import WeightStore
from ..worker import BatchSettings, ModelWorker
from .metrics import EvalReport, VideoPrediction, class_mapping, score

log = logging.getLogger(__name__)

Tick = Callable[[int], None]


@dataclass(frozen=True)
class EvalRun:
    report: EvalReport
    failed: tuple[tuple[str, str], ...]  # (video, reason) of test videos that could not be decoded
    settings: dict[str, Any]


def limit_per_class(clips: Sequence[Clip], limit: int | None) -> list[Clip]:
    """The first ``limit`` test videos of each class (in name order), for a quick, smaller evaluation."""
    if limit is None:
        return list(clips)
    if limit < 1:
        raise InputError(f"--limit must be at least 1 (got {limit})")
    seen: dict[int, int] = {}
    out = []
    for clip in sorted(clips, key=lambda c: c.name):
        if seen.get(clip.label, 0) < limit:
            seen[clip.label] = seen.get(clip.label, 0) + 1
            out.append(clip)
    return out


def checkpoint_file(model_spec: str) -> Path | None:
    """The CNN-LSTM checkpoint file a ``--model`` value names (a path, or the store's ``cnn-lstm``), if any."""
    if model_spec == "cnn-lstm":
        try:
            return next(iter(WeightStore().files("cnn-lstm", download=False).values()))
        except HarStreamError:
            return None  # loading the model reports it
    path = Path(model_spec).expanduser()
    return path if is_checkpoint_path(model_spec) and path.is_file() else None


def trained_on(model_spec: str) -> set[str]:
    """Lower-cased names of the videos a har-stream checkpoint was trained (or validated) on; empty otherwise."""
    path = checkpoint_file(model_spec)
    if path is None:
        return set()
    training = read_checkpoint(path).get("training")
    if not isinstance(training, dict):
        return set()
    data = training.get("dataset") or {}
    names = list(data.get("train_videos") or []) + list(data.get("val_videos") or [])
    return {str(n).lower() for n in names}


def check_held_out(model_spec: str, clips: Sequence[Clip]) -> None:
    seen = trained_on(model_spec)
    overlap = sorted(c.name for c in clips if c.name.lower() in seen)
    if overlap:
        raise ModelError(f"{len(overlap)} of the {len(clips)} test videos (e.g. {overlap[0]}) were used to train "
                         f"{model_spec}; its figures on them would not be held-out: evaluate on the split it was "
                         "not trained on, or retrain on this split's training list")


async def predict_video(clip: Clip, worker: ModelWorker, settings: StreamSettings) -> VideoPrediction:
    """One video through the engine: every window's probabilities, as ``analyse`` computes them."""
    info = worker.info
    source = open_source(str(clip.path), sample_fps=settings.fps or info.fps,
                         prepare=FramePreparer.for_model(info), policy="block")
    collector = SegmentCollector()
    async with source:
        source_info = await source.open()
        pipeline = StreamPipeline(f"eval-{clip.name}", source, worker, settings, collector)
        await pipeline.run(source_fps=source_info.fps)
    _, probs = collector.segments()
    if len(probs) == 0:
        raise InputError(f"{clip.name}: no frames could be decoded, so nothing was classified")
    return VideoPrediction(clip.name, clip.label, probs)


async def predict_videos(clips: Sequence[Clip], worker: ModelWorker, settings: StreamSettings, *, jobs: int = 2,
                         tick: Tick | None = None) -> tuple[list[VideoPrediction], list[tuple[str, str]]]:
    """Up to ``jobs`` videos at once on the shared worker (their windows batch together); decode failures are
    collected, not fatal."""
    gate = asyncio.Semaphore(max(1, jobs))
    results: dict[str, VideoPrediction] = {}
    failed: list[tuple[str, str]] = []

    async def one(clip: Clip) -> None:
        async with gate:
            try:
                results[clip.name] = await predict_video(clip, worker, settings)
            except InputError as err:
                log.warning("skipping %s: %s", clip.name, err)
                failed.append((clip.name, str(err)))
            if tick is not None:
                tick(1)

    async with asyncio.TaskGroup() as tg:
        for clip in clips:
            tg.create_task(one(clip), name=f"eval-{clip.name}")
    return [results[c.name] for c in clips if c.name in results], sorted(failed)


def evaluate(model: VideoModel, dataset: Dataset, clips: Sequence[Clip], *, window: int | None = None,
             stride: int = 8, fps: float | None = None, precision: str = "fp32", jobs: int = 2,
             tick: Tick | None = None) -> EvalRun:
    """Score ``model`` on ``clips`` (usually ``dataset.test``) with the engine's windows."""
    mapping = class_mapping(dataset.classes, model.info.labels, model.info.name)
    settings = StreamSettings(window=window or model.info.frames, stride=stride, fps=fps)

    async def run() -> tuple[list[VideoPrediction], list[tuple[str, str]]]:
        batching = BatchSettings(max_batch=32, max_wait_ms=5.0, precision=precision)
        async with ModelWorker(model, batching) as worker:
            return await predict_videos(clips, worker, settings, jobs=jobs, tick=tick)

    predictions, failed = asyncio.run(run())
    if not predictions:
        raise InputError(f"none of the {len(clips)} test videos could be decoded (e.g. {failed[0][0]}: "
                         f"{failed[0][1]})" if failed else "the test split holds no videos")
    report = score(predictions, dataset.classes, model.info.labels, mapping)
    used = {"window": settings.window, "stride": settings.stride, "fps": settings.fps or model.info.fps,
            "precision": precision, "aggregation": "mean of window probabilities per video"}
    return EvalRun(report, tuple(failed), used)
