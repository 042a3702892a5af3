"""Live hysteresis smoothing and the offline centred timeline."""

from __future__ import annotations

import numpy as np
import pytest

from har_stream.smoother import Smoother, build_timeline, centred_average
from har_stream.types import Prediction, Segment

LABELS = ("walk", "run")


def _feed(smoother: Smoother, rows: list[list[float]]) -> list[str]:
    return [smoother.update(np.array(r))[0] for r in rows]


NEAR_TIES = [[0.52, 0.48], [0.47, 0.53]] * 6


def test_hysteresis_stops_flicker_on_alternating_near_ties() -> None:
    assert _feed(Smoother(LABELS, history=1, hysteresis=0.1), NEAR_TIES) == ["walk"] * 12
    # The same input without hysteresis does flicker, so the test input is a real near-tie sequence.
    flicker = _feed(Smoother(LABELS, history=1, hysteresis=0.0), NEAR_TIES)
    assert flicker == ["walk", "run"] * 6


def test_a_clear_change_switches_after_the_averaging_catches_up() -> None:
    smoother = Smoother(LABELS, history=3, hysteresis=0.1)
    out = _feed(smoother, [[0.9, 0.1]] * 4 + [[0.1, 0.9]] * 3)
    # After one 'run' window the 3-window mean still favours walk; after two it is 0.63 vs 0.37.
    assert out == ["walk"] * 5 + ["run"] * 2
    label, conf = smoother.update(np.array([0.1, 0.9]))
    assert label == "run" and conf == pytest.approx(0.9)


def test_confidence_is_the_smoothed_probability_of_the_shown_label() -> None:
    smoother = Smoother(LABELS, history=2, hysteresis=0.5)
    smoother.update(np.array([0.8, 0.2]))
    label, conf = smoother.update(np.array([0.3, 0.7]))  # mean 0.55/0.45: no switch, confidence of walk
    assert (label, conf) == ("walk", pytest.approx(0.55))
    smoother.reset()
    assert smoother.update(np.array([0.3, 0.7]))[0] == "run"  # reset forgets the history and the label
    with pytest.raises(ValueError):
        Smoother(LABELS, history=0)


def _segments(n: int, length: float = 1.0, stride: float = 0.5, offset: float = 0.0) -> list[Segment]:
    p = Prediction("walk", 1.0, (("walk", 1.0),), "model")
    return [Segment(offset + i * stride, offset + i * stride + length, p) for i in range(n)]


def _onehot(classes: list[int]) -> np.ndarray:
    return np.eye(len(LABELS), dtype=np.float32)[classes]


def _check_covers(timeline, duration: float) -> None:  # type: ignore[no-untyped-def]
    assert timeline[0].start == 0.0
    assert timeline[-1].end == pytest.approx(duration)
    for a, b in zip(timeline, timeline[1:]):
        assert a.end == b.start and a.label != b.label  # no gaps, no overlaps, runs merged


@pytest.mark.parametrize("history", [1, 3])
def test_boundary_lands_half_way_between_window_centres(history: int) -> None:
    segs = _segments(10)  # windows [0,1], [0.5,1.5], ... centres 0.5, 1.0, ..., 5.0
    classes = [0] * 4 + [1] * 6
    timeline = build_timeline(segs, _onehot(classes), LABELS, duration=5.5, history=history)
    assert [t.label for t in timeline] == ["walk", "run"]
    # Last 'walk' window (index 3) centres at 2.0, first 'run' (index 4) at 2.5: the change is at 2.25.
    # A centred average keeps it there; a trailing (causal) one would push it a window later.
    assert timeline[0].end == pytest.approx(2.25)
    _check_covers(timeline, 5.5)


def test_timeline_covers_zero_to_duration_even_past_the_windows() -> None:
    segs = _segments(6, offset=0.3)  # the first window starts late, the last ends before the media does
    timeline = build_timeline(segs, _onehot([0, 0, 1, 1, 0, 0]), LABELS, duration=9.0, history=1)
    assert [t.label for t in timeline] == ["walk", "run", "walk"]
    _check_covers(timeline, 9.0)
    assert timeline[1].start == pytest.approx((1.3 + 1.8) / 2) and timeline[1].end == pytest.approx((2.3 + 2.8) / 2)


def test_timeline_ends_at_the_duration_when_the_last_window_overshoots_it() -> None:
    # A 25 fps clip sampled at 15 fps: the last sampled frame is given 1/15 s, so the last window ends at
    # 4.738 s although the media lasts 4.705 s. The timeline still ends where the media does.
    segs = _segments(8, length=1.07, stride=0.524)
    assert segs[-1].end == pytest.approx(4.738)
    timeline = build_timeline(segs, _onehot([0] * 4 + [1] * 4), LABELS, duration=4.705, history=1)
    _check_covers(timeline, 4.705)


def test_a_duration_before_the_last_window_centre_is_not_trusted() -> None:
    segs = _segments(4)  # centres 0.5 .. 2.0; a bogus container duration of 1.0 s
    timeline = build_timeline(segs, _onehot([0, 0, 1, 1]), LABELS, duration=1.0, history=1)
    assert timeline[-1].end == pytest.approx(2.5) and timeline[-1].start == pytest.approx(1.25)


def test_a_one_window_blip_is_smoothed_away_and_confidence_is_averaged() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.9, 0.1], [0.7, 0.3]], dtype=np.float32)
    timeline = build_timeline(_segments(5), probs, LABELS, duration=3.0, history=3)
    assert len(timeline) == 1 and timeline[0].label == "walk"
    _check_covers(timeline, 3.0)
    assert timeline[0].confidence == pytest.approx(float(centred_average(probs, 3)[:, 0].mean()))


def test_centred_average_shrinks_at_the_ends() -> None:
    probs = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = centred_average(probs, 3)
    np.testing.assert_allclose(out[0], probs[:2].mean(axis=0))
    np.testing.assert_allclose(out[2], probs[1:4].mean(axis=0))
    np.testing.assert_allclose(out[4], probs[3:].mean(axis=0))


def test_no_segments_no_timeline() -> None:
    assert build_timeline([], np.zeros((0, 2)), LABELS, duration=3.0) == ()
