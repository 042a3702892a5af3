"""StreamPipeline on real decoded files: cross-stream batching, failure clean-up, the CLIP fallback path.

The primary model here is a small deterministic ``VideoModel`` whose answer is knowable from the pixels:
its per-frame feature is the frame's mean brightness and it labels a window dark / mid / bright by how close
the window's mean brightness is to each level. So every event can be checked for being *right* for its own
stream, which random weights could not give. Sources are real ``AvSource``s on H.264 files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from har_stream.errors import InputError
from har_stream.fallback import ClipFallback
from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from har_stream.models.clip_zero_shot import load_clip
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.preprocess import FramePreparer
from har_stream.sources import AvSource, FrameSource, SourceStats
from har_stream.synthetic import write_video
from har_stream.types import DecodedFrame, LabelEvent, SourceInfo
from har_stream.worker import BatchSettings, ModelWorker
from tests.helpers.media import make_mp4, truncated_copy
from tests.helpers.tiny_clip import make_tiny_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
LABELS = ("dark", "mid", "bright")
LEVELS = torch.tensor([0.15, 0.5, 0.85])
FPS = 15.0




class BrightnessModel(VideoModel):
    """Feature = mean brightness in [0, 1]; logits = -sharpness * (window mean - level)^2 per label."""

    def __init__(self, encode_delay: float = 0.0, sharpness: float = 40.0) -> None:
        self.device = CPU
        self.info = ModelInfo(name="brightness", family="test", labels=LABELS, frames=8, fps=FPS, resize=16,
                              crop=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="brightness")
        self.encode_delay = encode_delay
        self.sharpness = sharpness
        self.encode_batches: list[list[float]] = []  # the brightness of every frame of every encode call

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if self.encode_delay:
            time.sleep(self.encode_delay)  # inference takes time, so requests pile up and get batched
        feats = frames.float().mean(dim=(1, 2, 3)).div(255.0).unsqueeze(1)
        self.encode_batches.append(feats[:, 0].tolist())
        return feats

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        mean = windows.float().mean(dim=(1, 2))
        return -self.sharpness * (mean[:, None] - LEVELS[None, :]) ** 2


def expected_probs(brightness: Sequence[float], sharpness: float = 40.0) -> np.ndarray:
    logits = -sharpness * (float(np.mean(brightness)) - LEVELS.numpy()) ** 2
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _grey_clip(path: Path, levels: Sequence[int], size: tuple[int, int] = (64, 48)) -> Path:
    frames = np.stack([np.full((size[1], size[0], 3), v, dtype=np.uint8) for v in levels])
    return write_video(path, frames, FPS)


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[LabelEvent, np.ndarray]] = []

    def __call__(self, event: LabelEvent, probs: np.ndarray) -> None:
        self.events.append((event, probs))

    def by_source(self, source: str) -> list[tuple[LabelEvent, np.ndarray]]:
        return [(e, p) for e, p in self.events if e.prediction.source == source]


class ReplaySource(FrameSource):
    """Frames decoded beforehand from a real file, replayed one per event-loop turn, as a camera paces them.

    Offline, a stream whose decoder is ahead submits its whole backlog at once, and decode threads race under
    load; replaying in lockstep makes two streams' requests interleave the same way on every machine.
    """

    def __init__(self, frames: list[DecodedFrame], info: SourceInfo) -> None:
        self._frames, self._info = frames, info

    @classmethod
    async def decode(cls, clip: Path, prepare: FramePreparer) -> ReplaySource:
        async with AvSource(clip, sample_fps=FPS, prepare=prepare, policy="block") as source:
            info = await source.open()
            return cls([f async for f in source.frames()], info)

    async def open(self) -> SourceInfo:
        return self._info

    async def frames(self):  # type: ignore[no-untyped-def, override]
        for frame in self._frames:
            await asyncio.sleep(0)
            yield frame

    async def close(self) -> None:
        return None

    @property
    def stats(self) -> SourceStats:
        return SourceStats(len(self._frames), len(self._frames), 0)


async def _run(name: str, clip: Path, worker: ModelWorker, settings: StreamSettings, sink: Sink,
               fallback: ClipFallback | None = None) -> StreamPipeline:
    async with AvSource(clip, sample_fps=FPS, prepare=FramePreparer.for_model(worker.info),
                        policy="block") as source:
        info = await source.open()
        pipeline = StreamPipeline(name, source, worker, settings, sink, fallback)
        await pipeline.run(source_fps=info.fps)
    return pipeline


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    ramp = [int(v) for v in np.linspace(20, 235, 48)]  # brightness sweeps dark → bright: confidence varies
    return {
        "dark": _grey_clip(root / "dark.mp4", [40] * 40),
        "bright": _grey_clip(root / "bright.mp4", [215] * 40),
        "ramp": _grey_clip(root / "ramp.mp4", ramp),
        "long": _grey_clip(root / "long.mp4", [int(v) for v in np.linspace(20, 235, 240)]),
        "cut": truncated_copy(make_mp4(root / "web.mp4", frames=150, fps=FPS, faststart=True),
                              root / "cut.mp4", keep=0.5),
    }


async def test_two_streams_share_batched_encode_calls_and_each_gets_its_own_events(
        media: dict[str, Path]) -> None:
    model = BrightnessModel(encode_delay=0.01)
    settings = StreamSettings(window=8, stride=4)
    sinks = {"cam-dark": Sink(), "cam-bright": Sink()}
    async with ModelWorker(model, BatchSettings(max_batch=8, max_wait_ms=30)) as worker:
        prepare = FramePreparer.for_model(worker.info)
        sources = {name: await ReplaySource.decode(media[name.removeprefix("cam-")], prepare) for name in sinks}
        pipelines = [StreamPipeline(name, sources[name], worker, settings, sinks[name]) for name in sinks]
        await asyncio.gather(*(p.run(source_fps=FPS) for p in pipelines))

    sizes = [len(b) for b in model.encode_batches]
    assert sum(sizes) == 80 and max(sizes) > 1 and max(sizes) <= 8
    mixed = [b for b in model.encode_batches if min(b) < 0.5 < max(b)]
    assert mixed, f"no encode batch held frames of both streams: {sizes}"
    assert worker.encoder.stats.items == 80

    for (name, sink), label, pipeline in zip(sinks.items(), ("dark", "bright"), pipelines):
        events = [e for e, _ in sink.events]
        # 40 frames, window 8, stride 4: windows end at frames 7, 11, ..., 39 - nine, the last at the end.
        assert [e.window_index for e in events] == list(range(9))
        assert {e.stream for e in events} == {name}
        assert all(e.prediction.label == label and e.smoothed_label == label for e in events)
        assert all(e.prediction.source == "model" and e.refines is None for e in events)
        assert events[0].window == pytest.approx((0.0, 8 / FPS))
        assert events[-1].window == pytest.approx((32 / FPS, 40 / FPS))
        assert events[-1].t == pytest.approx(40 / FPS)
        assert (pipeline.stats.frames, pipeline.stats.windows) == (40, 9)
        for _, probs in sink.events:
            level = 40 if label == "dark" else 215
            np.testing.assert_allclose(probs, expected_probs([level / 255] * 8), atol=0.03)


class RecordingWorker(ModelWorker):
    """A real worker that also keeps every feature future it handed to the pipeline."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.handed_out: list[asyncio.Future[torch.Tensor]] = []

    async def encode(self, image, *, background=False):  # type: ignore[no-untyped-def, override]
        fut = await super().encode(image, background=background)
        self.handed_out.append(fut)
        return fut


async def _settled(leftover: Callable[[], set[asyncio.Task[Any]]], timeout: float = 2.0) -> set[asyncio.Task[Any]]:
    deadline = time.monotonic() + timeout
    while (tasks := leftover()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return tasks


@pytest.mark.parametrize("with_fallback", [False, True])
async def test_a_source_failing_mid_stream_raises_and_leaves_nothing_behind(
        media: dict[str, Path], clip_model: VideoModel, with_fallback: bool) -> None:
    model = BrightnessModel(encode_delay=0.03)  # slow, so frames are still waiting when the source fails
    sink = Sink()
    before = set(asyncio.all_tasks())
    async with RecordingWorker(model, BatchSettings(max_batch=4, max_wait_ms=5)) as worker:
        clip_worker, fallback = None, None
        if with_fallback:
            clip_worker = RecordingWorker(clip_model, BatchSettings(max_batch=8),
                                          prepare=FramePreparer.for_model(clip_model.info))
            clip_worker.start()
            fallback = ClipFallback(clip_worker, threshold=1.0)
        worker_tasks = set(asyncio.all_tasks()) - before
        try:
            with pytest.raises(InputError, match="truncated or damaged"):
                await asyncio.wait_for(_run("cam-cut", media["cut"], worker, StreamSettings(window=8, stride=4),
                                            sink, fallback), 30)
            # A batcher briefly runs a helper task while it collects a batch (here: of the cancelled requests);
            # anything the pipeline leaked would still be there after that.
            leftover = await _settled(lambda: set(asyncio.all_tasks()) - before - worker_tasks
                                      - {asyncio.current_task()})
            assert not leftover, f"tasks still running after run() raised: {leftover}"
            assert worker.handed_out, "the source failed before any frame reached the pipeline"
            pending = [f for f in worker.handed_out if not f.done()]
            assert not pending, f"{len(pending)} feature futures still pending: the ring buffer was not freed"
            assert any(f.cancelled() for f in worker.handed_out)  # queued frames were dropped, not computed
            if clip_worker is not None and fallback is not None:
                assert fallback.streams_cached == 0
                assert all(f.done() for f in clip_worker.handed_out)  # CLIP's frames of the dead stream too
            # The shared worker is unharmed and keeps serving other streams.
            ok = await _run("cam-ok", media["dark"], worker, StreamSettings(window=8, stride=4), Sink())
            assert ok.stats.windows == 9
        finally:
            if clip_worker is not None:
                await clip_worker.aclose()
    assert set(asyncio.all_tasks()) - before <= {asyncio.current_task()}


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> VideoModel:
    """A tiny random CLIP over the primary model's labels (its answers are checked against itself)."""
    return load_clip(make_tiny_clip(tmp_path_factory.mktemp("tiny-clip")), CPU).with_labels(LABELS, "brightness")


async def _with_fallback(clip_file: Path, clip: VideoModel, threshold: float) -> tuple[Sink, ClipFallback]:
    sink = Sink()
    async with ModelWorker(BrightnessModel(), BatchSettings(max_batch=8, max_wait_ms=2)) as worker, \
            ModelWorker(clip, BatchSettings(max_batch=8, max_wait_ms=2),
                        prepare=FramePreparer.for_model(clip.info)) as clip_worker:
        fallback = ClipFallback(clip_worker, threshold)
        await _run("cam-ramp", clip_file, worker, StreamSettings(window=8, stride=4), sink, fallback)
    return sink, fallback


async def test_clip_fallback_fires_only_below_the_threshold_after_the_primary_event(
        media: dict[str, Path], clip_model: VideoModel) -> None:
    clip = clip_model
    never, fallback = await _with_fallback(media["ramp"], clip, threshold=0.0)
    primary = never.by_source("model")
    assert len(primary) == 11 and not never.by_source("clip") and fallback.windows_refined == 0
    confidences = {e.window_index: e.prediction.confidence for e, _ in primary}
    assert max(confidences.values()) - min(confidences.values()) > 0.2  # the ramp gives a real spread

    always, fallback = await _with_fallback(media["ramp"], clip, threshold=1.0)
    assert sorted(e.refines for e, _ in always.by_source("clip")) == list(range(11))
    assert fallback.windows_refined == 11 and fallback.streams_cached == 0

    threshold = float(np.median(list(confidences.values())))
    some, _ = await _with_fallback(media["ramp"], clip, threshold=threshold)
    wanted = {i for i, c in confidences.items() if c < threshold}
    assert 0 < len(wanted) < 11
    refined = some.by_source("clip")
    assert {e.refines for e, _ in refined} == wanted

    prepared = await _prepared(media["ramp"], clip)
    order = [(e.prediction.source, e.window_index) for e, _ in some.events]
    for event, probs in refined:
        i = event.refines
        assert event.window_index == i and event.prediction.source == "clip"
        assert order.index(("model", i)) < order.index(("clip", i))  # primary first, refinement after
        primary_event = next(e for e, _ in some.events if e.window_index == i and e.refines is None)
        assert event.window == primary_event.window and event.stream == "cam-ramp"
        frames = torch.from_numpy(prepared[4 * i: 4 * i + 8])  # window i covers frames 4i .. 4i+7
        expected = torch.softmax(clip.classify(clip.encode(frames).unsqueeze(0)).float(), dim=-1)[0].numpy()
        np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
        assert event.prediction.label == LABELS[int(np.argmax(expected))]


async def _prepared(clip_file: Path, model: VideoModel) -> np.ndarray:
    async with AvSource(clip_file, sample_fps=FPS, prepare=FramePreparer.for_model(model.info)) as src:
        return np.stack([f.image async for f in src.frames()])


async def test_a_fallback_worker_stopped_under_a_running_stream_fails_it_instead_of_hanging(
        media: dict[str, Path], clip_model: VideoModel) -> None:
    sink = Sink()
    async with ModelWorker(BrightnessModel(encode_delay=0.005), BatchSettings(max_batch=8, max_wait_ms=2)) as worker:
        clip_worker = ModelWorker(clip_model, BatchSettings(max_batch=8, max_wait_ms=2),
                                  prepare=FramePreparer.for_model(clip_model.info))
        clip_worker.start()
        fallback = ClipFallback(clip_worker, threshold=1.0)

        async def stop_clip_after_first_refinement() -> None:
            while not sink.by_source("clip"):
                await asyncio.sleep(0.001)
            await clip_worker.aclose()  # e.g. a server shutting its workers down before its streams

        async with asyncio.TaskGroup() as tg:
            tg.create_task(stop_clip_after_first_refinement())
            with pytest.raises(RuntimeError, match="worker was stopped while the stream was still running"):
                await asyncio.wait_for(_run("cam-long", media["long"], worker, StreamSettings(window=8, stride=1),
                                            sink, fallback), 20)
