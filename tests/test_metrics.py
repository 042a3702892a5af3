"""``/metrics`` through a real server: a real RTSP camera's frames, its reconnect after the camera is killed and
restarted, a slow model's dropped frames on a WebRTC peer, label latencies, batches, a finished job and a
webhook delivery that failed, each read with Prometheus' own parser; counters never go back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import torch

from har_stream.models.base import ModelInfo, VideoModel
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.synthetic import write_motion_clip
from server.config import ServerConfig
from tests.helpers.metrics import Scrape, scrape
from tests.helpers.rtsp_server import RtspServer, motion_loop
from tests.helpers.tiny_clip import make_tiny_clip
from tests.helpers.webhook_receiver import WebhookReceiver
from tests.helpers.webrtc_client import LiveServer, live_server, wait_until

pytestmark = pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")

STILL = "holding still"
COUNTERS = ("har_stream_frames_total", "har_stream_dropped_frames_total", "har_camera_reconnects_total",
            "har_batcher_batches_total", "har_batcher_items_total", "har_batcher_busy_seconds_total",
            "har_label_latency_seconds_count", "har_webhook_deliveries_total", "har_jobs_finished_total")


def config(checkpoint: Path, tmp: Path, **kw: object) -> ServerConfig:
    values: dict = dict(model=str(checkpoint), offline=True, home=tmp / "home", port=0, stride=4,
                        data_dir=tmp / "data", preload=False, clip_threshold=0.0, precision="fp32",
                        reconnect_initial_s=0.3, reconnect_max_s=1.5, first_frame_timeout_s=8.0, stall_timeout_s=3.0,
                        event_min_s=0.5, event_update_s=1.0)
    values.update(kw)
    return ServerConfig(**values)


@pytest.fixture
def still_camera() -> Iterator[RtspServer]:
    with RtspServer.from_frames(motion_loop(STILL), fps=15) as server:
        yield server


def assert_never_back(scrapes: list[Scrape]) -> None:
    """Every counter sample present in two consecutive scrapes did not decrease."""
    for before, after in zip(scrapes, scrapes[1:]):
        for (name, labels), value in before.samples.items():
            if name in COUNTERS and (name, labels) in after.samples:
                assert after.samples[(name, labels)] >= value, (name, dict(labels), value, after.samples[(name, labels)])


async def until_scrape(server: LiveServer, check: object, timeout: float = 30.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        got = await scrape(server)
        if check(got):  # type: ignore[operator]
            return got
        assert time.monotonic() < deadline, f"/metrics never got there:\n{got.text[-3000:]}"
        await asyncio.sleep(0.2)


async def test_a_cameras_frames_reconnect_labels_and_a_failed_webhook_are_counted(
        tiny_checkpoint: Path, tmp_path: Path, still_camera: RtspServer) -> None:
    async with WebhookReceiver(statuses=[400]) as hook:  # the first delivery is refused: counted as failed
        async with live_server(config(tiny_checkpoint, tmp_path, webhooks=(hook.url(),))) as server:
            model = server.models.default
            cam = {"kind": "camera", "stream": "porch"}
            assert (await server.post("/api/streams", json={"name": "porch", "url": still_camera.url}))[0] == 201

            def live(s: Scrape) -> bool:
                return s.get("har_stream_state", state="live", **cam) == 1 and \
                    (s.get("har_label_latency_seconds_count", model=model, role="primary") or 0) >= 2
            first = await until_scrape(server, live)
            assert first.value("har_stream_frames_total", **cam) > 0
            assert first.value("har_camera_reconnects_total", stream="porch") == 0
            assert first.value("har_stream_info", model=model, **cam) == 1
            assert first.value("har_cameras") == 1
            for kind in ("encode", "classify"):
                key = {"model": model, "role": "primary", "batcher": kind}
                assert first.value("har_batcher_batches_total", **key) >= 1
                assert first.value("har_batcher_items_total", **key) >= first.value("har_batcher_batches_total", **key)
                assert first.value("har_batcher_busy_seconds_total", **key) > 0
                assert first.value("har_batcher_queue_depth", **key) >= 0
                assert first.value("har_inference_stalled_seconds", **key) == 0
            assert first.value("har_label_latency_seconds_bucket", model=model, role="primary", le="+Inf") == \
                first.value("har_label_latency_seconds_count", model=model, role="primary")
            assert first.value("har_label_latency_seconds_sum", model=model, role="primary") > 0
            assert first.value("har_model_state", model=model, state="ready") == 1

            await asyncio.sleep(1.2)
            second = await scrape(server)
            assert second.value("har_stream_frames_total", **cam) > first.value("har_stream_frames_total", **cam)
            assert 0.5 < second.value("har_stream_fps", **cam) < 30.0  # sampled at the model's 15 fps (less on a busy machine)

            # the camera's first event goes to the webhook, which refuses it: one failure, then deliveries
            failed = {"url": f"http://127.0.0.1:{hook.port}/…", "outcome": "failed"}  # the path is never shown
            third = await until_scrape(server, lambda s: s.get("har_webhook_deliveries_total", **failed) == 1)

            still_camera.kill()
            down = await until_scrape(server, lambda s: s.get("har_stream_state", state="reconnecting", **cam) == 1)
            assert down.value("har_stream_state", state="live", **cam) == 0
            still_camera.restart()
            back = await until_scrape(server, lambda s: s.get("har_stream_state", state="live", **cam) == 1
                                      and s.get("har_camera_reconnects_total", stream="porch") == 1)
            later = await until_scrape(
                server, lambda s: s.value("har_stream_frames_total", **cam) > back.value("har_stream_frames_total", **cam))
            assert_never_back([first, second, third, down, back, later])

            async with server.session.delete(server.url + "/api/streams/porch") as response:
                assert response.status in (200, 202)  # 202: its teardown finishes in the background
            gone = await scrape(server)
            assert gone.get("har_stream_frames_total", **cam) is None and gone.value("har_cameras") == 0
            assert gone.value("har_label_latency_seconds_count", model=model, role="primary") >= \
                later.value("har_label_latency_seconds_count", model=model, role="primary")


class SlowEncoder(VideoModel):
    """The tiny model behind an encoder that needs 100 ms a frame: 10 frames/s for a 15 fps webcam."""

    def __init__(self, inner: VideoModel) -> None:
        self.inner = inner
        self.device = inner.device
        self.info = ModelInfo(**{**inner.info.__dict__, "name": "slow"})

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        time.sleep(0.1 * len(frames))
        return self.inner.encode(frames)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        return self.inner.classify(windows)


async def test_a_peers_drops_and_a_finished_job_are_counted(tiny_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_motion_clip(tmp_path / "clip.mp4", [(STILL, 2.0)], seed=4)
    async with live_server(config(tiny_checkpoint, tmp_path)) as server:
        await server.models.add_model(SlowEncoder(load_cnn_lstm(tiny_checkpoint, torch.device("cpu"))))
        peer = await server.connect(STILL, model="slow")
        try:
            await peer.wait_for("label", 1, timeout=20)
            key = {"kind": "peer", "stream": peer.peer_id}
            dropping = await until_scrape(server, lambda s: (s.get("har_stream_dropped_frames_total", **key) or 0) > 5
                                          and s.get("har_stream_state", state="running", **key) == 1)
            assert dropping.value("har_stream_state", state="warming_up", **key) == 0
            assert dropping.value("har_stream_frames_total", **key) > dropping.value("har_stream_dropped_frames_total",
                                                                                        **key)
            assert dropping.value("har_peer_windows_total", stream=peer.peer_id) >= 1
            assert dropping.value("har_peers") == 1
            labelled = dropping.value("har_label_latency_seconds_count", model="slow", role="primary")
            assert labelled >= 1
        finally:
            await peer.close()
        assert await wait_until(lambda: len(server.peers) == 0, timeout=10)
        left = await scrape(server)
        assert left.get("har_stream_frames_total", **key) is None and left.value("har_peers") == 0
        assert left.value("har_label_latency_seconds_count", model="slow", role="primary") >= labelled

        form = aiohttp.FormData()
        form.add_field("video", clip.read_bytes(), filename="clip.mp4", content_type="video/mp4")
        async with server.session.post(server.url + "/api/jobs", data=form) as response:
            assert response.status == 202, await response.text()
        done = await until_scrape(server, lambda s: s.get("har_jobs_finished_total", state="done") == 1, timeout=60)
        assert done.value("har_jobs", state="queued") == 0 and done.value("har_jobs", state="running") == 0
        assert done.value("har_jobs_finished_total", state="failed") == 0
        assert_never_back([dropping, left, done])


async def test_a_closed_clip_view_keeps_its_counts_in_its_models_totals(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Free-text labels run on a CLIP view that closes with its last peer: its batches and label latencies stay
    counted, so the per-model counters never go back."""
    clip_dir = make_tiny_clip(tmp_path / "tiny-clip")
    async with live_server(config(tiny_checkpoint, tmp_path, clip_model=str(clip_dir))) as server:
        await server.models.wait_ready("clip", timeout=60)
        peer = await server.connect(STILL, custom_labels=["waving", "clapping", "sitting down"])
        view = {"model": "clip", "role": "clip-view"}
        try:
            await peer.wait_for("label", 3, timeout=30)
            during = await until_scrape(server, lambda s: (s.get("har_label_latency_seconds_count", **view) or 0) >= 2)
        finally:
            await peer.close()
        assert await wait_until(lambda: ("waving", "clapping", "sitting down") not in server.models.clip_label_sets,
                                timeout=10), "the free-text view outlived its peer"
        after = await scrape(server)
        assert after.value("har_label_latency_seconds_count", **view) >= \
            during.value("har_label_latency_seconds_count", **view)
        for kind in ("encode", "classify"):
            key = {**view, "batcher": kind}
            assert after.value("har_batcher_batches_total", **key) >= during.value("har_batcher_batches_total", **key)
            assert after.get("har_batcher_queue_depth", **key) is None  # no view serves now: no gauge
        assert_never_back([during, after])
