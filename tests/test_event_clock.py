"""Action events keep one clock: ``duration == end - start == ended_at - started_at``, and one stream's events never
overlap, whatever speed stream time runs at against the wall clock (issue 13: a recording decoded 80x faster
than real time stored events "11 s" from start to end but "18 s" long, zero-length ones "9.1 s" long, and
events of one camera that overlapped).

Windows are 0.5 s apart in stream time (tests/helpers/label_events.py); the wall clock is moved by hand at
another speed before each window is fed.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from har_stream.events import RESYNC_S, ActionEvent, ActionEventDetector, DetectorSettings
from tests.helpers.label_events import EPOCH, LABELS, ManualClock, label_event

SETTINGS = DetectorSettings(min_duration_s=1.0, update_every_s=None)


def labels_in_runs(count: int, run: int) -> list[str]:
    """``count`` windows whose smoothed label changes every ``run`` windows, cycling through the labels."""
    return [LABELS[(i // run) % len(LABELS)] for i in range(count)]


def run(labels: list[str], wall_per_stream_s: float, *, t_of=None) -> list[ActionEvent]:
    """Feed windows with these labels; the wall clock advances ``wall_per_stream_s`` per stream second. Returns
    the closed events (their ``end`` messages), the last one closed by ``close()``."""
    clock = ManualClock()
    ids = (f"ev{i}" for i in itertools.count())
    detector = ActionEventDetector("cam", LABELS, SETTINGS, clock=clock, new_id=lambda: next(ids))
    out: list[ActionEvent] = []
    for index, label in enumerate(labels):
        t = None if t_of is None else t_of(index)
        event, probs = label_event(index, label, 0.9, t=t)
        clock.now = EPOCH + timedelta(seconds=event.t * wall_per_stream_s)
        out += detector.feed(event, probs)
    out += detector.close()
    return [e for e in out if e.phase == "end"]


def check_one_clock(ended: list[ActionEvent]) -> None:
    assert ended, "no event closed"
    for event in ended:
        wall = (event.ended_at - event.started_at).total_seconds()
        assert event.duration == pytest.approx(event.end - event.start, abs=1e-9)
        assert wall == pytest.approx(event.duration, abs=1e-3), event
        json = event.to_json()
        assert json["duration"] == pytest.approx(json["end"] - json["start"], abs=2e-3), json
    in_wall = sorted(ended, key=lambda e: e.started_at)
    for before, after in itertools.pairwise(in_wall):  # the stream's events, each label's included
        assert after.started_at >= before.ended_at, (before, after)


@pytest.mark.parametrize("speed", [1.0, 1 / 80, 1 / 3, 3.0], ids=["real-time", "80x-faster", "3x-faster", "3x-slower"])
def test_duration_start_and_end_agree_and_events_never_overlap(speed: float) -> None:
    ended = run(labels_in_runs(120, run=5), speed)
    assert len(ended) >= 20
    check_one_clock(ended)


def test_at_real_time_consecutive_events_tile_exactly() -> None:
    ended = run(labels_in_runs(60, run=4), 1.0)
    for before, after in itertools.pairwise(ended):
        assert after.start == before.end and after.started_at == before.ended_at, (before, after)
    assert ended[0].started_at == EPOCH  # the first window starts at stream time 0, fed at wall 0 + its end


def test_stream_time_that_falls_behind_is_resynced_between_events_never_within_one() -> None:
    # Stream time runs at half wall speed (a camera that lags): each new event re-anchors once the drift passes
    # RESYNC_S, so started_at stays close to the wall clock of its start, while each event keeps its length.
    ended = run(labels_in_runs(200, run=6), 2.0)
    check_one_clock(ended)
    last = ended[-1]
    fresh = EPOCH + timedelta(seconds=(last.start + 1.0) * 2.0)  # wall clock when its run had held 1 s
    assert abs((last.started_at - fresh).total_seconds()) <= RESYNC_S + 2.0


def test_a_clock_that_goes_back_starts_afresh_without_overlapping_the_events_before() -> None:
    # Two stretches of stream time from 0 (a source that restarted its clock): a gap, then new events; their
    # wall times come after the ones before even though their stream times repeat.
    ended = run(labels_in_runs(40, run=5) * 2, 1 / 10, t_of=lambda i: 1.0 + 0.5 * (i % 40))
    check_one_clock(ended)
    assert any(e.reason == "gap" for e in ended)
