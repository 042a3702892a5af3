"""Adaptive stride: a live stream whose model cannot keep up widens its stride, so labels stay current, and
returns to the asked stride when the model keeps up again; offline runs never adapt."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from har_stream.adaptive_stride import AdaptiveStride
from har_stream.errors import ConfigError
from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.sources.injected import InjectedSource
from har_stream.types import LabelEvent
from har_stream.worker import BatchSettings, ModelWorker

FPS = 15.0


def test_stride_follows_the_measured_answer_time_and_never_drops_below_the_asked_one() -> None:
    control = AdaptiveStride(base=8, fps=15.0, window=16)
    assert control.stride == 8 and control.asked_rate == pytest.approx(15 / 8) and control.capacity is None
    assert control.observe(5.0) == 8 and control.capacity is None  # the first answer pays for warm-up: ignored
    assert control.observe(0.5) == 10  # 0.5 s a window: 7.5 frames go by; with 25 % headroom, 10
    assert control.adapted and control.capacity == pytest.approx(2.0)
    for _ in range(20):
        control.observe(0.05)  # the model is fast again
    assert control.stride == 8 and not control.adapted
    for _ in range(50):
        control.observe(100.0)  # a stalled model: bounded, not unbounded
    assert control.stride == 8 * 16


def test_one_slow_answer_does_not_swing_the_stride() -> None:
    control = AdaptiveStride(base=4, fps=15.0, window=16)
    control.observe(0.1)  # warm-up
    for _ in range(10):
        control.observe(0.1)  # 1.5 frames a window: the asked 4 is enough
    assert control.stride == 4
    control.observe(0.6)  # one hiccup: the smoothed estimate (0.25 s) asks for 5, not 12
    assert control.stride == 5


@pytest.mark.parametrize(("base", "fps", "window"), [(0, 15.0, 16), (8, 0.0, 16), (8, 15.0, 0)])
def test_bad_settings_are_config_errors(base: int, fps: float, window: int) -> None:
    with pytest.raises(ConfigError):
        AdaptiveStride(base, fps, window)


class SlowClassifier(VideoModel):
    """Feature = mean brightness; classify sleeps ``delay`` seconds per call (settable while running)."""

    def __init__(self, delay: float) -> None:
        self.device = torch.device("cpu")
        self.info = ModelInfo(name="slow", family="test", labels=("dark", "bright"), frames=8, fps=FPS, resize=16,
                              crop=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="test")
        self.delay = delay

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float().mean(dim=(1, 2, 3)).div(255.0).unsqueeze(1)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        mean = windows.float().mean(dim=(1, 2)).unsqueeze(1)
        return torch.cat([-mean, mean], dim=1)


def grey_camera(seconds: float) -> InjectedSource:
    """A 16x16 grey camera at 15 fps in real time that drops what the pipeline was not ready for."""
    return InjectedSource(np.full((1, 16, 16, 3), 200, dtype=np.uint8), seconds, FPS)


async def _run(model: SlowClassifier, camera: InjectedSource, settings: StreamSettings,
               change: tuple[float, float] | None = None) -> tuple[list[tuple[float, LabelEvent, int]], StreamPipeline]:
    """Run the pipeline; ``change`` = (after seconds, new delay). Events come with (time, event, drops so far)."""
    events: list[tuple[float, LabelEvent, int]] = []
    start = time.monotonic()
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0)) as worker:
        pipeline = StreamPipeline("cam", camera, worker, settings,
                                  lambda e, _: events.append((time.monotonic() - start, e, camera.dropped)))
        task = asyncio.create_task(pipeline.run(FPS))
        if change is not None:
            await asyncio.sleep(change[0])
            model.delay = change[1]
        await task
    return events, pipeline


LIVE = StreamSettings(window=8, stride=2, live=True, window_queue=1, fallback_queue=1, max_in_flight=2)


async def test_a_slow_model_widens_the_stride_keeps_latency_bounded_and_recovers() -> None:
    # Stride 2 at 15 fps asks for 7.5 windows/s; a 0.25 s classify answers 4/s. After 4 s the model is fast.
    model, camera = SlowClassifier(delay=0.25), grey_camera(seconds=6.5)
    events, pipeline = await _run(model, camera, LIVE, change=(4.0, 0.0))
    slow = [(t, e, d) for t, e, d in events if 1.5 <= t <= 4.0]
    assert len(slow) >= 6, "windows keep flowing while the model is slow"
    strides = {e.stride for _, e, _ in slow}
    assert strides and min(strides) >= 4 and max(strides) <= 8, strides  # ceil(0.25 * 15 * 1.25) = 5
    latencies = sorted(e.latency_ms for _, e, _ in slow)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert p95 < 600.0, latencies  # one answer time (250 ms) and a little: no queue of windows behind it
    assert slow[-1][2] - slow[0][2] <= 2, "once adapted, the camera's frames are no longer dropped"
    recovered = [e for t, e, _ in events if t >= 5.5]
    assert recovered and all(e.stride == 2 for e in recovered), [e.stride for e in recovered]
    assert pipeline.effective_stride == 2
    assert all(e.to_json()["stride"] == e.stride for _, e, _ in events)


async def test_without_adaptation_the_same_model_drops_frames() -> None:
    """The control: the asked stride kept, the stream sheds frames it cannot take (what adaptation avoids)."""
    from dataclasses import replace

    model, camera = SlowClassifier(delay=0.25), grey_camera(seconds=4.0)
    events, _ = await _run(model, camera, replace(LIVE, adaptive_stride=False))
    assert {e.stride for _, e, _ in events} == {2}
    late = [(t, d) for t, _, d in events if t >= 1.5]
    assert late[-1][1] - late[0][1] > 10, "frames dropped steadily"


async def test_offline_runs_keep_the_asked_stride() -> None:
    model, camera = SlowClassifier(delay=0.05), grey_camera(seconds=2.0)
    events, pipeline = await _run(model, camera, StreamSettings(window=8, stride=2, live=False))
    assert events and all(e.stride is None and "stride" not in e.to_json() for _, e, _ in events)
    assert pipeline.stride_control is None and pipeline.effective_stride == 2
    starts = [e.window[0] for _, e, _ in events if e.window_index < len(events) - 1]
    assert np.allclose(np.diff(starts), 2 / FPS)
