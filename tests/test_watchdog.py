"""The inference watchdog: a model call that runs past ``inference_stall_s`` is logged once, reported (the worker,
``/readyz``, ``/metrics``), its windows are given up so live streams go on, and labels resume when the model
answers again; an offline run fails with the reason instead. A model call that raises fails only its batch."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.errors import InferenceStalledError
from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.sources.injected import InjectedSource
from har_stream.types import LabelEvent
from har_stream.worker import BatchSettings, ModelWorker
from server.config import ServerConfig
from tests.helpers.metrics import scrape
from tests.helpers.webrtc_client import live_server, wait_until

FPS = 15.0
LIVE = StreamSettings(window=8, stride=2, live=True, window_queue=1, fallback_queue=1, max_in_flight=2)


class StallingModel(VideoModel):
    """Feature = mean brightness. ``stall_next`` seconds: the next classify call sleeps that long (once);
    ``fail_next``: the next classify call raises; ``fail_encode_next``: the next encode call raises;
    ``fail_always``: every classify call raises."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.info = ModelInfo(name="stall", family="test", labels=("dark", "bright"), frames=8, fps=FPS, resize=16,
                              crop=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="test")
        self.stall_next = 0.0
        self.fail_next = False
        self.fail_encode_next = False
        self.fail_always = False
        self.calls = 0

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if self.fail_encode_next:
            self.fail_encode_next = False
            raise RuntimeError("poisoned encode")
        return frames.float().mean(dim=(1, 2, 3)).div(255.0).unsqueeze(1)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        stall, self.stall_next = self.stall_next, 0.0
        if stall:
            time.sleep(stall)
        if self.fail_next or self.fail_always:
            self.fail_next = False
            raise ValueError("poisoned call")
        mean = windows.float().mean(dim=(1, 2)).unsqueeze(1)
        return torch.cat([-mean, mean], dim=1)


def grey_camera(seconds: float) -> InjectedSource:
    return InjectedSource(np.full((1, 16, 16, 3), 200, dtype=np.uint8), seconds, FPS)


def stuck_lines(caplog: pytest.LogCaptureFixture, batcher: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if "inference stuck" in r.getMessage() and batcher in r.getMessage()]


async def test_a_stuck_call_is_logged_once_reported_and_the_live_stream_keeps_labelling(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="har_stream.batcher")
    model = StallingModel()
    events: list[tuple[float, LabelEvent]] = []
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=0.5)) as worker:
        pipeline = StreamPipeline("cam", grey_camera(seconds=7.0), worker, LIVE,
                                  lambda e, _: events.append((time.monotonic(), e)))
        task = asyncio.create_task(pipeline.run(FPS))
        assert await wait_until(lambda: len(events) >= 3, timeout=10), "the stream never labelled"
        model.stall_next = 2.5  # the next classify call hangs for 2.5 s, five times the bound
        assert await wait_until(lambda: worker.stalled_for() is not None, timeout=5), "the watchdog never fired"
        stalled_at = time.monotonic()
        assert worker.stalled_for() >= 0.5  # type: ignore[operator]
        assert len(stuck_lines(caplog, "stall-classify")) == 1, caplog.text
        assert await wait_until(lambda: worker.stalled_for() is None, timeout=5), "the call never came back"
        back_at = time.monotonic()
        assert not task.done(), "the stream must survive a stuck call"
        await task  # the camera's 7 s run to their end, without an error

    assert pipeline.stats.stalled >= 1  # the window of the stuck call was given up, not waited for
    assert worker.classifier.stats.stalls == 1
    assert len(stuck_lines(caplog, "stall-classify")) == 1, "logged once per stuck call, not per window"
    assert len(stuck_lines(caplog, "stall-encode")) <= 1  # encode batches queued behind it on the thread
    assert "answered again" in caplog.text
    after = [e for t, e in events if t > back_at]
    assert len(after) >= 5, f"labels resume once the model answers: {len(after)} after, {len(events)} in all"
    assert all(e.prediction.label == "bright" for e in after)
    assert back_at - stalled_at < 4.0  # reported while stuck (2.5 s), cleared when the call returned


async def test_an_offline_run_fails_with_the_stall_instead_of_a_result_with_holes() -> None:
    model = StallingModel()
    model.stall_next = 1.5
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=0.3)) as worker:
        pipeline = StreamPipeline("job", grey_camera(seconds=1.5), worker, StreamSettings(window=8, stride=4),
                                  lambda e, _: None)
        with pytest.raises(InferenceStalledError, match=r"stall-(encode|classify).*0\.3 s"):
            await pipeline.run(FPS)


async def test_an_exception_in_one_model_call_fails_only_that_call_and_the_worker_keeps_serving() -> None:
    model = StallingModel()
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=5.0)) as worker:
        frame = np.full((16, 16, 3), 100, dtype=np.uint8)
        features = [await (await worker.encode(frame)) for _ in range(8)]
        model.fail_next = True
        with pytest.raises(ValueError, match="poisoned call"):
            await worker.classify(features)
        probs = await worker.classify(features)  # the next call is served
        assert probs.shape == (2,)
        assert (await (await worker.encode(frame))).shape == (1,)
        assert worker.classifier.stats.failed == 1 and worker.classifier.stats.batches >= 1
        assert worker.stalled_for() is None


class StallingTiny(VideoModel):
    """The tiny trained model; its next classify call sleeps ``stall_next`` seconds (once)."""

    def __init__(self, inner: VideoModel) -> None:
        self.inner = inner
        self.device = inner.device
        self.info = ModelInfo(**{**inner.info.__dict__, "name": "stalling"})
        self.stall_next = 0.0

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inner.encode(frames)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        stall, self.stall_next = self.stall_next, 0.0
        if stall:
            time.sleep(stall)
        return self.inner.classify(windows)


@pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")
async def test_readyz_and_metrics_report_a_stuck_call_and_the_peer_gets_labels_again(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0, stride=4,
                          data_dir=tmp_path / "data", preload=False, clip_threshold=0.0, precision="fp32",
                          inference_stall_s=1.0, peer_idle_timeout_s=10.0)
    async with live_server(config) as server:
        model = StallingTiny(load_cnn_lstm(tiny_checkpoint, torch.device("cpu")))
        await server.models.add_model(model)
        assert (await server.get("/readyz"))[0] == 200
        peer = await server.connect("holding still", model="stalling")
        try:
            await peer.wait_for("label", 2, timeout=30)
            model.stall_next = 4.0
            stuck: dict = {}

            async def reported() -> bool:
                status, body = await server.get("/readyz")
                stuck.update(body)
                return status == 503
            assert await wait_until(reported, timeout=8), stuck
            assert any(r.startswith("inference stuck for") and r.endswith("on model stalling")
                       for r in stuck["reasons"]), stuck
            during = await scrape(server)
            assert during.value("har_inference_stalled_seconds", model="stalling", role="primary",
                                batcher="classify") >= 1.0
            assert during.value("har_inference_stalls_total", model="stalling", role="primary",
                                batcher="classify") == 1

            async def ready() -> bool:
                return (await server.get("/readyz"))[0] == 200
            assert await wait_until(ready, timeout=10), "ready again once the call returned"
            back = time.monotonic()
            assert await wait_until(lambda: len([r for r in peer.messages if r.t > back
                                                 and r.message.get("type") == "label"]) >= 3, timeout=15), \
                "the peer gets labels again"
            assert len(server.peers) == 1, "the peer was kept through the stall"
            after = await scrape(server)
            assert after.value("har_inference_stalled_seconds", model="stalling", role="primary",
                               batcher="classify") == 0
            assert after.value("har_inference_stalls_total", model="stalling", role="primary",
                               batcher="classify") == 1
        finally:
            await peer.close()


async def test_closing_a_worker_does_not_wait_for_a_call_the_watchdog_gave_up_on() -> None:
    model = StallingModel()
    worker = ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=0.3))
    worker.start()
    features = [await (await worker.encode(np.zeros((16, 16, 3), dtype=np.uint8))) for _ in range(8)]
    model.stall_next = 3.0
    with pytest.raises(InferenceStalledError):
        await worker.classify(features)
    assert worker.stalled_for() is not None
    started = time.monotonic()
    await worker.aclose()  # the rest of a shutdown goes on; the thread ends when its call returns
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("where", ["classify", "encode"])
async def test_a_model_call_that_raises_costs_a_live_stream_its_windows_not_its_life(where: str) -> None:
    model = StallingModel()
    events: list[tuple[float, LabelEvent]] = []
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=5.0)) as worker:
        pipeline = StreamPipeline("cam", grey_camera(seconds=4.0), worker, LIVE,
                                  lambda e, _: events.append((time.monotonic(), e)))
        task = asyncio.create_task(pipeline.run(FPS))
        assert await wait_until(lambda: len(events) >= 3, timeout=10), "the stream never labelled"
        if where == "classify":
            model.fail_next = True
        else:
            model.fail_encode_next = True  # one frame's feature fails: every window holding it is given up
        failed_at = time.monotonic()
        await task  # runs to its end: no error

    assert pipeline.stats.failed >= 1
    batcher = worker.classifier if where == "classify" else worker.encoder
    assert batcher.stats.failed == 1
    assert len([e for t, e in events if t > failed_at + 0.5]) >= 5, "labels go on after the failed call"


async def test_a_model_that_keeps_failing_ends_the_live_stream_with_its_error() -> None:
    model = StallingModel()
    model.fail_always = True
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0, stall_s=5.0)) as worker:
        pipeline = StreamPipeline("cam", grey_camera(seconds=10.0), worker, LIVE, lambda e, _: None)
        started = time.monotonic()
        with pytest.raises(ValueError, match="poisoned call"):
            await pipeline.run(FPS)
    assert time.monotonic() - started < 5.0, "three failed calls end it, not the end of the camera"
    assert pipeline.stats.windows == 0 and pipeline.stats.failed >= 2
