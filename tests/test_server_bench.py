"""``har-stream bench live`` machinery on a real server, kept short: it measures, it does not judge speed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from har_stream.bench.live import HEADER, LiveRun, format_run, percentile, run_peers
from har_stream.commands.bench import _peer_counts, _size
from har_stream.errors import ConfigError
from server.config import ServerConfig
from tests.helpers.webrtc_client import live_server

pytestmark = pytest.mark.usefixtures("ice_loopback_patch", "one_torch_thread")


async def test_run_peers_measures_latency_drops_and_windows(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0)
    async with live_server(config) as server:
        run = await run_peers(server.url, 2, seconds=2.0, stride=4, size=(160, 120))
    assert run.refused is None and run.peers == 2 and run.stride == 4 and run.model_fps == 15.0
    assert run.labels >= 4 and len(run.server_latency_ms) == run.labels
    assert all(0 < ms < 2000 for ms in run.server_latency_ms + run.round_trip_ms) and run.round_trip_ms
    assert run.frames_sent >= 40 and run.frames_received >= 40 and len(run.windows_per_peer) == 2
    assert run.expected_windows == pytest.approx(run.seconds * 15 / 4)
    line = format_run(run)
    assert line.split()[0] == "2" and line.split()[-1] in ("yes", "no") and len(HEADER.split()) > 5


async def test_a_refused_peer_is_reported_not_raised(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0, max_peers=1)
    async with live_server(config) as server:
        run = await run_peers(server.url, 2, seconds=0.5)
    assert run.refused is not None and "429" in run.refused and not run.sustained
    assert "refused" in format_run(run)


def test_sustained_needs_no_drops_and_the_stride_rate() -> None:
    base = dict(peers=2, seconds=10.0, fps=15.0, stride=8, labels=36, server_latency_ms=(20.0,),
                round_trip_ms=(90.0,), frames_sent=300, frames_received=300, frames_dropped=0)
    assert LiveRun(**base, windows_per_peer=(18, 19)).sustained  # 18.75 needed, one window of slack
    assert not LiveRun(**base, windows_per_peer=(18, 12)).sustained
    assert not LiveRun(**{**base, "frames_dropped": 3}, windows_per_peer=(19, 19)).sustained
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5) and percentile([], 95) is None


def test_peer_counts_and_size_options() -> None:
    args = argparse.Namespace(sweep="8,1,2,2", peers=3)
    assert _peer_counts(args) == [1, 2, 8]
    assert _peer_counts(argparse.Namespace(sweep=None, peers=3)) == [3]
    with pytest.raises(ConfigError, match="--sweep takes peer counts"):
        _peer_counts(argparse.Namespace(sweep="1,two", peers=1))
    assert _size("640x480") == (640, 480)
    with pytest.raises(ConfigError, match="--size"):
        _size("640")


async def test_bench_jobs_runs_a_job_beside_live_peers_and_reports_both(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from har_stream.bench.jobs import format_mixed, run_mixed
    from har_stream.synthetic import write_motion_clip

    clip = write_motion_clip(tmp_path / "job.mp4", [("moving left", 1.6), ("holding still", 1.6)] * 8, seed=2)

    config = ServerConfig(model=str(tiny_checkpoint), offline=True, home=tmp_path / "home", port=0,
                          data_dir=tmp_path / "data")
    async with live_server(config) as server:
        alone, job_alone, together, job_during = await run_mixed(server.url, clip, 2, seconds=1.5, stride=4,
                                                                 size=(160, 120))
        listing = await server.get("/api/jobs")
    assert listing[1]["jobs"] == []  # the bench cleans up its jobs
    for job in (job_alone, job_during):
        assert job.media_s == pytest.approx(25.6, abs=0.1) and 0 < job.analysis_s <= job.wall_s
    assert alone.peers == together.peers == 2 and together.seconds >= job_during.analysis_s * 0.5
    assert together.refused is None and together.frames_received > 0
    lines = format_mixed(alone, job_alone, together, job_during, bound_ms=300)
    assert "x realtime" in lines[1] and lines[-1].rsplit(" ", 1)[-1] in ("yes", "no")
