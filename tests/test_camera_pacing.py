"""A watched recording runs at its own frame rate, as ``ffmpeg -re`` would play it (issue 13).

A camera whose URL is a recording - an ``.mp4`` over HTTP, or a ``.ts`` from a server without ``Range`` support
(FFmpeg then cannot learn its length and takes it for a live stream) - used to be decoded as fast as the CPU
allows: in 28 s of wall time one camera reached 2,248 s of stream time, dropped most frames and stored events
whose times disagreed. Now such media is paced in its decode thread; RTSP (which paces itself) is not.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from har_stream.sources import AvSource
from har_stream.sources.pacing import Pacer
from har_stream.sources.reconnecting import ReconnectingSource
from har_stream.synthetic import write_motion_clip
from server.config import ServerConfig
from tests.helpers.http_server import StaticServer
from tests.helpers.plain_http import plain_http_server
from tests.helpers.rtsp_server import RtspServer, motion_loop
from tests.helpers.webrtc_client import live_server

CLIP_S = 24.0
LEG_S = 2.0
# Left then right, back and forth, wholly in frame (the tiny model's two motions): actions change every 2 s.
SCRIPT = [("moving left", LEG_S), ("moving right", LEG_S)] * int(CLIP_S / (2 * LEG_S))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.mp4 (24 s, 15 fps) and the same video as clip.ts, in one folder."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("recordings")
    mp4 = write_motion_clip(folder / "clip.mp4", SCRIPT, seed=11, speed=0.35, start=(0.78, 0.3))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp4), "-c", "copy", str(folder / "clip.ts")],
                   check=True, timeout=60)
    return folder


@pytest.fixture(params=["mp4-with-range", "ts-without-range"])
def recording_url(request: pytest.FixtureRequest, recordings: Path) -> Iterator[str]:
    if request.param == "mp4-with-range":
        with StaticServer(recordings) as server:
            yield server.url("clip.mp4")
    else:
        with plain_http_server(recordings) as base:
            yield base + "clip.ts"


async def test_a_recording_over_http_is_watched_at_its_frame_rate(recording_url: str) -> None:
    wall_s = 2.5
    async with ReconnectingSource(recording_url, name="rec") as source:
        seen: list[tuple[float, float]] = []  # (monotonic at receipt, stream time)
        async with asyncio.timeout(30):
            async for frame in source.frames():
                seen.append((time.monotonic(), frame.pts))
                if seen[-1][0] - seen[0][0] >= wall_s:
                    break
    wall = seen[-1][0] - seen[0][0]
    stream = seen[-1][1] - seen[0][1]
    # Paced: stream time keeps to wall time (a generous bound for a loaded machine); unpaced it was ≈ 100x.
    assert stream <= wall + 1.0, f"{stream:.1f} s of video in {wall:.1f} s: not paced"
    assert stream >= 0.3 * wall, f"only {stream:.1f} s of video in {wall:.1f} s"
    assert len(seen) >= 0.3 * wall * 15
    assert source.stats.dropped <= 2, source.stats  # paced: nothing to drop


async def test_analysis_reads_as_fast_as_it_decodes_and_rtsp_is_never_paced(recordings: Path) -> None:
    # realtime=False (jobs, the CLI's analyse): no pacing at all.
    async with AvSource(recordings / "clip.mp4") as source:
        started = time.monotonic()
        frames = [frame async for frame in source.frames()]
        assert not source.paced and len(frames) == int(CLIP_S * 15)
        assert time.monotonic() - started < CLIP_S / 2
    # A camera paces itself: realtime=True leaves it alone.
    with RtspServer.from_frames(motion_loop("holding still"), fps=15) as camera:
        source = AvSource(camera.url, realtime=True, open_timeout=15, read_timeout=15)
        try:
            info = await source.open()
            assert info.live and not source.paced
        finally:
            await source.close()


def test_pacer_sleeps_to_timestamps_never_hurries_and_wakes_when_stopped() -> None:
    stop = threading.Event()
    pacer = Pacer(stop, max_lag=0.2, max_wait=1.0)
    started = time.monotonic()
    assert pacer.wait(10.0)  # the first frame anchors the clock: no wait
    assert pacer.wait(10.3)  # due 0.3 s later
    assert time.monotonic() - started >= 0.28
    time.sleep(0.6)  # the consumer was slow: 0.3 s behind
    before = time.monotonic()
    assert pacer.wait(10.4)  # behind by more than max_lag: re-anchored, not rushed
    assert pacer.wait(10.5)  # ...so the next frame waits its 0.1 s again
    assert time.monotonic() - before >= 0.08
    before = time.monotonic()
    assert pacer.wait(100.0)  # a jump of 90 s (a discontinuity): carry on, do not freeze for 90 s
    assert time.monotonic() - before < 0.5
    threading.Timer(0.2, stop.set).start()
    before = time.monotonic()
    assert not pacer.wait(100.9)  # stopped while waiting: wakes at once and says so
    assert time.monotonic() - before < 0.6


# -- through the server: a camera on a .ts recording served without Range ------------------------------------

def camera_config(checkpoint: Path, tmp: Path) -> ServerConfig:
    return ServerConfig(model=str(checkpoint), offline=True, home=tmp / "home", port=0, stride=4,
                        data_dir=tmp / "data", preload=False, clip_threshold=0.0, reconnect_initial_s=0.3,
                        reconnect_max_s=1.5, first_frame_timeout_s=8.0, stall_timeout_s=3.0, event_min_s=0.5,
                        event_update_s=1.0)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")
async def test_a_camera_on_a_recording_runs_at_its_frame_rate_and_its_events_keep_one_clock(
        tiny_checkpoint: Path, tmp_path: Path, recordings: Path) -> None:
    with plain_http_server(recordings) as base:
        async with live_server(camera_config(tiny_checkpoint, tmp_path)) as server:
            status, body = await server.post("/api/streams", json={"name": "rec", "url": base + "clip.ts"})
            assert status == 201, body
            samples: list[tuple[float, float]] = []  # (monotonic, stream time of the newest label)
            deadline = time.monotonic() + 60
            while len(samples) < 2 or samples[-1][0] - samples[0][0] < 8.0:
                assert time.monotonic() < deadline, f"no labels: {(await server.get('/api/streams/rec'))[1]}"
                _, doc = await server.get("/api/streams/rec")
                if doc["state"] == "live" and doc["current"] is not None:
                    samples.append((time.monotonic(), doc["current"]["t"]))
                await asyncio.sleep(0.2)
            wall = samples[-1][0] - samples[0][0]
            stream = samples[-1][1] - samples[0][1]
            assert stream <= wall + 2.0, f"{stream:.1f} s of video in {wall:.1f} s of wall time: not paced"
            assert stream >= 0.3 * wall, f"only {stream:.1f} s of video in {wall:.1f} s"

            async with server.session.delete(server.url + "/api/streams/rec") as response:
                assert response.status in (200, 202, 204)
            events: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while not events or any(e["state"] == "open" for e in events):
                assert time.monotonic() < deadline, events
                await asyncio.sleep(0.2)
                events = (await server.get("/api/events?stream=rec&limit=100"))[1]["events"]

    assert len(events) >= 2, events  # the labels change every 2 s of video
    for event in events:
        assert event["duration"] == pytest.approx(event["end"] - event["start"], abs=2e-3), event
        wall_span = (moment(event["ended_at"]) - moment(event["started_at"])).total_seconds()
        assert wall_span == pytest.approx(event["duration"], abs=2e-3), event
    ordered = sorted(events, key=lambda e: (e["started_at"], e["start"]))
    for before, after in itertools.pairwise(ordered):
        assert after["start"] >= before["end"] - 1e-3, (before, after)
        assert moment(after["started_at"]) >= moment(before["ended_at"]), (before, after)
