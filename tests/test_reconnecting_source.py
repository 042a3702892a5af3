"""ReconnectingSource against a real RTSP camera (GStreamer's RTSP server in a subprocess) and real HTTP.

The camera is killed, restarted, paused (SIGSTOP) and resumed for real; label checks use the tiny CNN-LSTM
trained in the test run on a looped clip of one action it knows. Policy values are small so each test takes
seconds; nothing here asserts on how long something took, only on what happened and in which order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.errors import ConfigError, InputError, NotVideoError
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.preprocess import FramePreparer
from har_stream.sources.reconnecting import (
    LiveFrame,
    ReconnectingSource,
    ReconnectPolicy,
    SourceStatus,
    check_live_url,
    scrub,
)
from har_stream.types import LabelEvent
from har_stream.worker import BatchSettings, ModelWorker
from tests.helpers.http_server import StaticServer
from tests.helpers.media import make_mp4
from tests.helpers.rtsp_server import RtspServer, closed_port_url, motion_loop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FPS = 15.0
# The rightmost column where the tiny model's training clips ever start a leftward square (start_inside in
# tests/helpers/tiny_model.py: 1 - 0.27 of the 160-pixel width). motion_loop's pass starts further right (0.78).
TRAINED_LEFTWARD_START_X = (1 - 0.27) * 160
FAST_OPEN = {"analyzeduration": "200000", "probesize": "32768"}  # ≈0.3 s to open instead of ≈2 s
POLICY = ReconnectPolicy(initial_delay=0.2, factor=2.0, max_delay=1.0, jitter=0.2, first_frame_timeout=5.0,
                         stall_timeout=1.5, open_timeout=3.0, read_timeout=3.0)
WAIT = 30.0  # the most any awaited state may take on a busy machine; reaching it fails the test
PASSWORD = "hunter2-Secret"


# -- fixtures and helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def left_frames():  # type: ignore[no-untyped-def]
    return motion_loop("moving left")


@pytest.fixture
def camera(left_frames) -> Iterator[RtspServer]:  # type: ignore[no-untyped-def]
    """A looping RTSP camera showing a square moving left; killed after the test."""
    with RtspServer.from_frames(left_frames, fps=FPS) as server:
        yield server


class History:
    """Every status the source reports, in order (the ``on_status`` callback)."""

    def __init__(self) -> None:
        self.statuses: list[SourceStatus] = []

    def __call__(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    def states(self) -> list[str]:
        """The sequence of states, repeats collapsed."""
        out: list[str] = []
        for s in self.statuses:
            if not out or out[-1] != s.state:
                out.append(s.state)
        return out

    def retries(self) -> list[SourceStatus]:
        """The statuses that scheduled a retry."""
        return [s for s in self.statuses if s.retry_in is not None]


class Recording(ReconnectingSource):
    """The real source; it also notes each frame's (epoch, index, pts) as the consumer receives it, and
    where the square is in it (its left edge in pixels), to tell which windows saw the clip jump back."""

    def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.seen: list[tuple[int, int, float]] = []
        self.square_x: dict[float, int] = {}

    async def frames(self) -> AsyncIterator[LiveFrame]:
        async for frame in super().frames():
            self.seen.append((frame.epoch, frame.index, frame.pts))
            bright = np.flatnonzero((frame.frame.to_ndarray(format="rgb24")[..., 0] > 120).any(axis=0))
            self.square_x[frame.pts] = int(bright.min()) if bright.size else -1
            yield frame

    def clean(self, event: LabelEvent) -> bool:
        """The window shows one continuous leftward pass (the square never jumps back right within it) that starts
        where the tiny model's training clips start leftward squares. The pass's first window starts further right
        than any of them, and the model reads it as "holding still" even on the raw frames with no camera between
        (probed: 0.64-0.67 for two models trained on this machine), so it says nothing about reconnecting."""
        start, end = event.window
        xs = [x for pts, x in sorted(self.square_x.items()) if start <= pts < end - 0.5 / FPS]
        return (len(xs) >= 2 and all(b <= a + 1 for a, b in zip(xs, xs[1:]))
                and xs[0] <= TRAINED_LEFTWARD_START_X)

    def epoch_start(self, epoch: int) -> float:
        return min(pts for e, _, pts in self.seen if e == epoch)

    async def wait_epoch(self, epoch: int) -> float:
        """The pts where connection ``epoch`` begins, once its first frame has reached the consumer."""
        async with asyncio.timeout(WAIT):
            while not any(e == epoch for e, _, _ in self.seen):
                await asyncio.sleep(0.02)
        return self.epoch_start(epoch)


def source_threads() -> list[str]:
    """Threads a live source starts (one decode thread per connection)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("har-decode-")]


def live_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("har-live-")]


async def drain(source: ReconnectingSource) -> None:
    async for _ in source.frames():
        pass


async def until(source: ReconnectingSource, *states: str, predicate=None) -> SourceStatus:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(WAIT):
        return await source.wait_for(*states, predicate=predicate)  # type: ignore[arg-type]


@pytest.fixture
async def tiny_worker(tiny_checkpoint: Path) -> AsyncIterator[ModelWorker]:
    model = load_cnn_lstm(tiny_checkpoint, torch.device("cpu"), name="tiny")
    async with ModelWorker(model, BatchSettings(max_batch=4, max_wait_ms=2.0)) as worker:
        yield worker


def live_pipeline(source: ReconnectingSource, worker: ModelWorker, events: list[LabelEvent]) -> StreamPipeline:
    settings = StreamSettings(window=worker.info.frames, stride=4, live=True, window_queue=1, fallback_queue=1,
                              max_in_flight=2)
    return StreamPipeline("cam", source, worker, settings, lambda event, _probs: events.append(event))


def make_source(url: str, worker: ModelWorker | None = None, **kw) -> Recording:  # type: ignore[no-untyped-def]
    if worker is not None:
        kw.update(sample_fps=worker.info.fps, prepare=FramePreparer.for_model(worker.info))
    kw.setdefault("policy", POLICY)
    return Recording(url, options=FAST_OPEN, seed=1, **kw)


async def wait_events(events: list[LabelEvent], count: int, since: float = float("-inf")) -> list[LabelEvent]:
    """Wait until ``count`` label events have windows starting at ``since`` or later; returns them."""
    async with asyncio.timeout(WAIT):
        while len(picked := [e for e in events if e.window[0] >= since]) < count:
            await asyncio.sleep(0.05)
    return picked


def assert_moving_left(events: list[LabelEvent], source: Recording, min_clean: int = 3) -> None:
    """Windows of one continuous pass are "moving left" (≥ 80%), and it is the most common label overall
    (windows across the loop's jump back may read otherwise)."""
    clean = [e for e in events if source.clean(e)]
    assert len(clean) >= min_clean, f"only {len(clean)} clean windows of {len(events)}"
    right = Counter(e.prediction.label for e in clean)
    assert right["moving left"] >= 0.8 * len(clean), f"clean windows: {right}"
    labels = Counter(e.prediction.label for e in events)
    assert labels.most_common(1)[0][0] == "moving left", labels


# -- the policy --------------------------------------------------------------------------------------------

def test_backoff_grows_by_factor_up_to_the_cap_with_jitter_below_it() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, factor=2.0, max_delay=4.0, jitter=0.25)
    assert [policy.base_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay_bounds(2) == (0.75, 1.0)
    rng = random.Random(3)
    for failures in range(1, 40):
        low, high = policy.delay_bounds(failures)
        draws = [policy.delay(failures, rng) for _ in range(50)]
        assert all(low <= d <= high <= 4.0 for d in draws)
        assert len(set(draws)) > 1  # jittered
    assert policy.base_delay(10_000) == 4.0  # no overflow
    assert ReconnectPolicy(jitter=0.0).delay(1, rng) == 1.0


@pytest.mark.parametrize("kw, words", [
    ({"initial_delay": 0}, "initial_delay"), ({"max_delay": 0.5, "initial_delay": 1.0}, "max_delay"),
    ({"factor": 0.5}, "factor"), ({"jitter": 1.0}, "jitter"), ({"stall_timeout": -1}, "stall_timeout"),
    ({"first_frame_timeout": float("nan")}, "first_frame_timeout"),
])
def test_bad_policy_values_are_config_errors(kw: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ReconnectPolicy(**kw)


def test_only_stream_urls_are_accepted_and_credentials_never_echoed(tmp_path: Path) -> None:
    assert check_live_url("rtsp://user:pw12345@cam.local:554/x") == "rtsp://***@cam.local:554/x"
    for bad, words in [(str(tmp_path / "clip.mp4"), "not a stream URL"), ("ftp://u:pw12345@h/x", "unsupported"),
                       ("rtsp:///nohost", "names no host")]:
        with pytest.raises(InputError, match=words) as err:
            check_live_url(bad)
        assert "pw12345" not in str(err.value)
    url = "rtsp://admin:p%40ss-word@cam:554/s"
    text = f"cannot open {url}: user admin:p%40ss-word@ or p@ss-word"
    assert "p%40ss-word" not in scrub(text, url) and "p@ss-word" not in scrub(text, url)


# -- a real camera ---------------------------------------------------------------------------------------

async def test_camera_goes_connecting_then_live_and_is_labelled_right(camera: RtspServer,
                                                                      tiny_worker: ModelWorker) -> None:
    history, events = History(), []
    source = make_source(camera.url, tiny_worker, on_status=history)
    assert source.status.state == "connecting" and source.status.url == camera.url
    async with source:
        run = asyncio.create_task(live_pipeline(source, tiny_worker, events).run())
        live = await until(source, "live")
        assert live.info is not None and (live.info.width, live.info.height, live.info.codec) == (160, 120, "h264")
        assert live.info.live and live.info.url == camera.url and live.connected_at is not None
        await wait_events(events, 16)
        status = source.status
        assert status.state == "live" and status.frames > 0 and status.reconnects == 0 and status.error is None
        assert live_tasks()
    await asyncio.wait_for(run, WAIT)  # frames() ended when the source stopped: the pipeline ends cleanly
    assert_moving_left(events, source)
    assert history.states() == ["connecting", "live", "stopped"]
    assert source.status.state == "stopped" and not source_threads() and not live_tasks()
    json.dumps(source.status.to_json())  # the API shape is plain JSON


async def test_a_slow_consumer_gets_the_newest_frames_and_the_drops_are_counted(camera: RtspServer) -> None:
    source = make_source(camera.url)
    async with source:
        frames = source.frames()
        first = await anext(frames)
        await asyncio.sleep(1.0)  # the consumer falls behind by 15 frames; the source must not queue them
        second = await anext(frames)
        await frames.aclose()
        status = source.status
    assert second.index - first.index > 5 and second.pts - first.pts > 5 / FPS, (first.index, second.index)
    assert status.dropped >= second.index - first.index - 1 > 0  # every frame between them was dropped, counted
    assert status.dropped == source.stats.dropped


async def test_killed_camera_reconnects_with_backoff_and_labels_resume_after_restart(
        camera: RtspServer, tiny_worker: ModelWorker) -> None:
    history, events = History(), []
    source = make_source(camera.url, tiny_worker, on_status=history)
    async with source:
        run = asyncio.create_task(live_pipeline(source, tiny_worker, events).run())
        await until(source, "live")
        await wait_events(events, 3)

        camera.kill()
        await until(source, predicate=lambda s: s.attempt >= 4 and s.retry_in is not None)
        retries = history.retries()
        assert [s.attempt for s in retries] == list(range(1, len(retries) + 1))
        for status in retries:  # each delay within its jitter bounds: base * (1 - jitter) ≤ delay ≤ base ≤ cap
            low, high = POLICY.delay_bounds(status.attempt)
            assert low <= status.retry_in <= high <= POLICY.max_delay, (status.attempt, status.retry_in)
            assert status.state == "reconnecting" and status.error and "\n" not in status.error
        assert retries[2].retry_in > retries[0].retry_in  # [0.64, 0.8] s after [0.16, 0.2] s: it grows
        refused = retries[-1].error
        assert f"127.0.0.1:{camera.port}" in refused and "Connection refused" in refused, refused

        await asyncio.to_thread(camera.start)  # same port and path
        back = await until(source, "live")
        last_wait = history.retries()[-1]
        assert back.reconnects == 1 and back.attempt == 0 and back.error == last_wait.error  # the last error stays
        assert last_wait.retry_in <= POLICY.max_delay  # the attempt that got it back came within the cap
        resumed = await wait_events(events, 12, since=await source.wait_epoch(1))
    await asyncio.wait_for(run, WAIT)

    assert_moving_left(resumed, source)  # only windows wholly after the reconnect
    states = history.states()
    assert states[:3] == ["connecting", "live", "reconnecting"] and states[-2:] == ["live", "stopped"], states
    epochs = [e for e, _, _ in source.seen]
    assert epochs == sorted(epochs) and set(epochs) == {0, 1}
    indexes, stamps = [i for _, i, _ in source.seen], [p for _, _, p in source.seen]
    assert indexes == sorted(set(indexes)) and stamps == sorted(stamps)  # monotonic across the reconnect
    assert source.epoch_start(1) > max(p for e, _, p in source.seen if e == 0)
    assert not source_threads() and not live_tasks()


async def test_stalled_camera_is_caught_by_the_watchdog_and_reconnected(camera: RtspServer) -> None:
    history = History()
    source = make_source(camera.url, on_status=history)
    async with source:
        consumer = asyncio.create_task(drain(source))
        await until(source, "live")
        camera.pause()  # SIGSTOP: the TCP connection stays open, nothing flows
        try:
            stalled = await until(source, "reconnecting")
        finally:
            camera.resume()
        assert "stalled" in stalled.error and f"{POLICY.stall_timeout:g} s" in stalled.error, stalled.error
        back = await until(source, "live")
        assert back.reconnects == 1
    await asyncio.wait_for(consumer, WAIT)
    assert history.states()[-3:] == ["reconnecting", "live", "stopped"], history.states()
    assert not source_threads() and not live_tasks()


async def test_unreachable_url_keeps_reconnecting_with_a_readable_error() -> None:
    history = History()
    url = closed_port_url()
    source = make_source(url, on_status=history)
    async with source:
        consumer = asyncio.create_task(drain(source))
        status = await until(source, predicate=lambda s: s.attempt >= 3 and s.retry_in is not None)
    await asyncio.wait_for(consumer, WAIT)  # stopping ends frames() normally, even though it never went live
    port = url.split(":")[2].split("/")[0]
    assert status.state == "reconnecting" and status.error.startswith(f"cannot reach 127.0.0.1:{port}: "), status
    assert "Connection refused" in status.error and status.reconnects == 0 and status.connected_at is None
    assert history.states() == ["connecting", "reconnecting", "stopped"]
    assert not source_threads() and not live_tasks()


async def test_url_that_is_not_video_fails_for_good(http_server: StaticServer) -> None:
    url = http_server.serve_bytes("camera.mp4", b"<html><body>this is a web page, not a camera</body></html>\n")
    history = History()
    source = make_source(url.replace("http://", f"http://viewer:{PASSWORD}@"), on_status=history)
    async with source:
        with pytest.raises(NotVideoError) as err:
            await asyncio.wait_for(drain(source), WAIT)
        assert "did not return a video" in str(err.value) and PASSWORD not in str(err.value)
        assert err.value.__cause__ is None and err.value.__context__ is None  # no chained FFmpeg text with the URL
        with pytest.raises(NotVideoError):
            await source.open()
    status = source.status
    assert status.state == "failed" and status.error == str(err.value) and PASSWORD not in json.dumps(status.to_json())
    assert history.states() == ["connecting", "failed"]  # aclose keeps "failed"
    assert not source_threads() and not live_tasks()


async def test_media_url_that_is_not_live_plays_in_real_time_then_stops(http_server: StaticServer,
                                                                        tmp_path: Path) -> None:
    url = http_server.add_file(make_mp4(tmp_path / "short.mp4", frames=15, fps=15.0))
    history = History()
    source = make_source(url, on_status=history)
    async with source:
        frames = [f async for f in source.frames()]
    assert len(frames) == 15 and [f.index for f in frames] == list(range(15))
    assert frames[-1].arrival - frames[0].arrival >= 14 / 15 * 0.9  # paced like a camera, not decoded at once
    assert history.states() == ["connecting", "live", "stopped"] and source.stats.dropped == 0


async def test_credentials_never_appear_in_status_errors_or_logs(left_frames, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    with RtspServer.from_frames(left_frames, fps=FPS, credentials=("admin", PASSWORD)) as camera:
        assert PASSWORD in camera.url
        history, wrong_history = History(), History()
        source = make_source(camera.url, on_status=history)
        wrong = make_source(camera.url.replace(PASSWORD, PASSWORD + "-wrong"), on_status=wrong_history)
        async with source, wrong:
            consumer = asyncio.create_task(drain(source))
            live = await until(source, "live")
            assert live.url == f"rtsp://***@127.0.0.1:{camera.port}/cam" and live.info.url == live.url
            refused = await until(wrong, predicate=lambda s: s.retry_in is not None)
            assert "401 Unauthorized" in refused.error, refused.error  # readable, and retried
            camera.kill()
            lost = await until(source, predicate=lambda s: s.attempt >= 2 and s.retry_in is not None)
            assert f"127.0.0.1:{camera.port}" in lost.error, lost.error
        await asyncio.wait_for(consumer, WAIT)
    shown = [json.dumps(s.to_json()) for s in history.statuses + wrong_history.statuses]
    shown += [repr(s) for s in history.statuses + wrong_history.statuses]
    shown += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert not [text for text in shown if PASSWORD in text or "admin:" in text]
    assert any("rtsp://***@127.0.0.1" in r.getMessage() for r in caplog.records)  # the log does name the URL
    assert source.name == f"127.0.0.1:{camera.port}"
