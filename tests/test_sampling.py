"""FpsSampler: the frames torchvision's evaluation keeps for constant-rate files; spacing under jitter, gaps and
restarts."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest

from har_stream.errors import ConfigError
from har_stream.sampling import FpsSampler


def _run(sampler: FpsSampler, times: list[float]) -> list[int]:
    return [i for i, t in enumerate(times) if sampler.accept(t)]


def _clock(fps: float, seconds: float, *, jitter: float = 0.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [i / fps + (rng.uniform(-jitter, jitter) if i else 0.0) for i in range(round(fps * seconds))]


def _torchvision_indices(source: float, target: float, frames: int) -> list[int]:
    """The frames torchvision's reference evaluation keeps (``VideoClips.compute_clips_for_video``)."""
    from torchvision.datasets.video_utils import VideoClips

    kept = math.floor(frames * target / source)
    idx = VideoClips._resample_video_idx(kept, source, target)
    if isinstance(idx, slice):
        return list(range(frames))[idx][:kept]
    return [int(i) for i in idx]


@pytest.mark.parametrize(("source", "target"), [
    (30.0, 15.0), (30000 / 1001, 15.0), (25.0, 15.0), (24.0, 15.0), (28.0, 15.0), (60.0, 15.0), (50.0, 15.0),
    (20.0, 15.0), (30.0, 7.5), (25.0, 7.5), (30000 / 1001, 7.5), (15.0, 15.0),
])
def test_constant_rate_sources_keep_the_frames_torchvision_keeps(source: float, target: float) -> None:
    times = _clock(source, 10.0)
    ours = _run(FpsSampler(target), times)
    reference = _torchvision_indices(source, target, len(times))
    assert len(reference) >= target * 10.0 - 1
    assert ours[:len(reference)] == reference
    assert len(ours) - len(reference) <= 1  # torchvision drops a last partial slot that the live sampler keeps


@pytest.mark.parametrize(
    ("source", "target", "kept", "steps"),
    [
        (30.0, 15.0, 150, {2}),  # exactly every other frame
        (25.0, 15.0, 150, {1, 2}),  # 3 of every 5 frames
        (10.0, 15.0, 100, {1}),  # slower source than target: keep all
        (30.0, 30.0, 300, {1}),
    ],
)
def test_rate_and_spacing(source: float, target: float, kept: int, steps: set[int]) -> None:
    times = _clock(source, 10.0)
    idx = _run(FpsSampler(target), times)
    assert len(idx) == kept
    assert idx[0] == 0
    assert {b - a for a, b in pairwise(idx)} == steps


def test_none_keeps_everything() -> None:
    times = _clock(30.0, 2.0, jitter=0.02)
    assert _run(FpsSampler(None), times) == list(range(len(times)))


def test_small_jitter_keeps_the_regular_pattern() -> None:
    times = _clock(30.0, 10.0, jitter=0.005, seed=1)
    idx = _run(FpsSampler(15.0), times)
    assert len(idx) == 150
    assert {b - a for a, b in pairwise(idx)} == {2}


def test_heavy_jitter_keeps_rate_and_never_bunches() -> None:
    times = _clock(30.0, 20.0, jitter=0.012, seed=2)
    idx = _run(FpsSampler(15.0), times)
    assert abs(len(idx) - 300) <= 6
    gaps = [times[b] - times[a] for a, b in pairwise(idx)]
    assert min(gaps) >= 0.5 / 15.0
    assert max(gaps) <= 2.0 / 15.0


def test_no_burst_after_a_gap() -> None:
    times = _clock(30.0, 2.0) + [5.0 + t for t in _clock(30.0, 2.0)]  # 3 s with no frames
    sampler = FpsSampler(15.0)
    kept = [t for t in times if sampler.accept(t)]
    assert len(kept) == 60
    assert 5.0 in kept  # the first frame after the gap starts a new grid
    gaps = [b - a for a, b in pairwise(kept)]
    assert min(gaps) == pytest.approx(1 / 15)  # nothing closer than one target interval


def test_timestamps_restarting_from_zero_start_a_new_grid() -> None:
    times = _clock(30.0, 3.0) + _clock(30.0, 1.0)  # e.g. a reconnected camera restarting its clock
    idx = _run(FpsSampler(15.0), times)
    assert len(idx) == 45 + 15
    assert 90 in idx


def test_reset_keeps_the_next_frame() -> None:
    sampler = FpsSampler(15.0)
    assert sampler.accept(0.0)
    assert not sampler.accept(1 / 30)
    sampler.reset()
    assert sampler.accept(2 / 30 - 0.03)


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_rejects_non_positive_target(bad: float) -> None:
    with pytest.raises(ConfigError, match="positive"):
        FpsSampler(bad)
