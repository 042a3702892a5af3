"""Action events: the detector's rules on fixed label sequences, JPEG snapshots, and a real clip end to end.

The fixed sequences (tests/helpers/label_events.py) are windows 0.5 s apart, each 1 s long, so window i ends at
t = 1 + 0.5 i and starts at 0.5 i; the wall clock is set to EPOCH + t before each window is fed.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import av
import numpy as np
import pytest
from PIL import Image

from har_stream.errors import ConfigError
from har_stream.events import ActionEvent, ActionEventDetector, DetectorSettings
from har_stream.snapshot import RecentFrames, encode_jpeg
from tests.helpers.event_stream import CHANGE_AT, DURATION, TOLERANCE, run_clip, write_two_action_clip
from tests.helpers.label_events import EPOCH, LABELS, ManualClock, label_event, sequence


def make(settings: DetectorSettings = DetectorSettings(min_duration_s=1.0, update_every_s=None), **kw):
    clock = ManualClock()
    ids = iter(f"ev{i}" for i in range(100))
    detector = ActionEventDetector("cam", LABELS, settings, clock=clock, new_id=lambda: next(ids), **kw)
    return detector, clock


def feed_all(detector: ActionEventDetector, clock: ManualClock, windows) -> list[ActionEvent]:
    out = []
    for event, probs in windows:
        clock.at(event.t)
        out += detector.feed(event, probs)
    return out


def at(seconds: float):
    return EPOCH + timedelta(seconds=seconds)


# -- the rules ---------------------------------------------------------------------------------------------------

def test_an_action_opens_an_event_once_it_has_held_the_minimum_time():
    detector, clock = make()
    windows = sequence([("walking", [0.6, 0.8, 0.7])])
    assert feed_all(detector, clock, windows[:2]) == []  # held 0.5 s (two window ends 0.5 s apart)
    (start,) = feed_all(detector, clock, windows[2:])  # held 1.0 s
    assert (start.phase, start.id, start.seq, start.stream, start.label) == ("start", "ev0", 0, "cam", "walking")
    assert start.start == 0.0 and start.last == 2.0 and start.end is None  # back-dated to the first window's start
    assert start.started_at == at(0.0) and start.updated_at == at(2.0) and start.ended_at is None
    assert start.peak_confidence == pytest.approx(0.8) and start.peak_t == 1.5
    assert start.mean_confidence == pytest.approx(0.7) and start.windows == 3
    assert start.state == "open" and start.duration == 2.0


def test_with_no_minimum_the_first_window_opens_an_event():
    detector, clock = make(DetectorSettings(min_duration_s=0.0, update_every_s=None))
    (start,) = feed_all(detector, clock, sequence([("running", [0.9])]))
    assert start.label == "running" and start.windows == 1


def test_updates_carry_the_running_peak_and_mean_at_the_set_interval():
    detector, clock = make(DetectorSettings(min_duration_s=1.0, update_every_s=1.0))
    out = feed_all(detector, clock, sequence([("walking", [0.5, 0.6, 0.7, 0.9, 0.8, 0.6, 0.7])]))
    assert [(e.phase, e.seq, e.last) for e in out] == [("start", 0, 2.0), ("update", 1, 3.0), ("update", 2, 4.0)]
    assert {e.id for e in out} == {"ev0"}
    assert [e.windows for e in out] == [3, 5, 7]
    assert [round(e.peak_confidence, 3) for e in out] == [0.7, 0.9, 0.9]
    assert out[1].mean_confidence == pytest.approx((0.5 + 0.6 + 0.7 + 0.9 + 0.8) / 5)
    assert out[2].mean_confidence == pytest.approx((0.5 + 0.6 + 0.7 + 0.9 + 0.8 + 0.6 + 0.7) / 7)
    assert out[2].peak_t == 2.5


def test_another_action_holding_the_minimum_ends_the_event_and_starts_its_own():
    detector, clock = make()
    out = feed_all(detector, clock, sequence([("walking", [0.9] * 4), ("running", [0.6, 0.7])]))
    assert [e.phase for e in out] == ["start"]  # running has held only 0.5 s
    out = feed_all(detector, clock, [label_event(6, "running", 0.8)])  # t = 4.0: running has held 1.0 s
    assert [(e.phase, e.label) for e in out] == [("end", "walking"), ("start", "running")]
    end, start = out
    # running's first window (index 4) spans [2.0, 3.0]: the walking event ends where running began
    assert (end.id, end.seq, end.start, end.end, end.last, end.reason) == ("ev0", 1, 0.0, 2.0, 2.0, "changed")
    assert end.ended_at == at(2.0) and end.updated_at == at(4.0) and end.closed
    assert end.windows == 4 and end.mean_confidence == pytest.approx(0.9)
    assert (start.id, start.start, start.started_at, start.windows) == ("ev1", 2.0, at(2.0), 3)
    assert start.peak_confidence == pytest.approx(0.8) and start.mean_confidence == pytest.approx(0.7)


def test_a_short_flicker_of_another_label_neither_ends_nor_counts_in_the_event():
    detector, clock = make()
    out = feed_all(detector, clock, sequence([("walking", [0.8] * 4), ("running", [0.9]), ("walking", [0.6] * 3)]))
    assert [e.phase for e in out] == ["start"]
    (end,) = detector.close()
    assert (end.label, end.reason, end.end, end.windows) == ("walking", "stopped", 4.5, 7)
    assert end.mean_confidence == pytest.approx((0.8 * 4 + 0.6 * 3) / 7)
    assert end.ended_at == at(4.5)  # the wall time of the last window seen, not of the close() call


def test_the_label_filter_emits_only_chosen_actions_but_any_action_ends_them():
    detector, clock = make(DetectorSettings.only(["falling"], min_duration_s=1.0, update_every_s=None))
    out = feed_all(detector, clock, sequence([("walking", [0.9] * 4), ("falling", [0.7, 0.95, 0.8]),
                                              ("walking", [0.9] * 3)]))
    assert [(e.phase, e.label) for e in out] == [("start", "falling"), ("end", "falling")]
    start, end = out
    assert start.start == 2.0 and end.end == 3.5 and end.reason == "changed"
    assert end.peak_confidence == pytest.approx(0.95) and end.windows == 3
    assert detector.open_label == "walking"  # detected, not emitted
    assert detector.close() == []  # nothing to say about walking


def test_close_ends_the_open_event_and_the_next_session_gets_a_new_event():
    detector, clock = make()
    feed_all(detector, clock, sequence([("walking", [0.9] * 3)]))
    clock.at(60.0)  # closed long after the last window
    (end,) = detector.close()
    assert (end.end, end.ended_at, end.updated_at, end.reason) == (2.0, at(2.0), at(2.0), "stopped")
    assert detector.close() == []
    out = feed_all(detector, clock, sequence([("walking", [0.9] * 3)]))  # stream time starts again at 0
    assert [(e.phase, e.id, e.start) for e in out] == [("start", "ev1", 0.0)]


@pytest.mark.parametrize("next_t", [2.0 + 5.5, 1.0], ids=["jump-forward", "clock-went-back"])
def test_a_gap_in_stream_time_ends_the_event(next_t):
    detector, clock = make()
    feed_all(detector, clock, sequence([("walking", [0.9] * 3)]))
    out = feed_all(detector, clock, [label_event(9, "walking", 0.9, t=next_t)])
    assert [(e.phase, e.reason, e.end) for e in out] == [("end", "gap", 2.0)]
    # the window after the gap starts a new run, which must hold the minimum again
    assert feed_all(detector, clock, [label_event(10, "walking", 0.9, t=next_t + 0.5)]) == []
    (start,) = feed_all(detector, clock, [label_event(11, "walking", 0.9, t=next_t + 1.0)])
    assert start.id == "ev1" and start.start == next_t - 1.0


def test_clip_refinements_are_ignored():
    detector, clock = make()
    windows = sequence([("walking", [0.9] * 3)])
    refinements = [label_event(i, "running", 0.99, refines=i) for i in range(3)]
    mixed = [w for pair in zip(windows, refinements) for w in pair]
    out = feed_all(detector, clock, mixed)
    assert [(e.phase, e.label, e.windows) for e in out] == [("start", "walking", 3)]
    assert out[0].mean_confidence == pytest.approx(0.9)
    assert detector.refinements_ignored == 3


def test_the_smoothed_label_decides_and_its_own_probability_is_the_confidence():
    detector, clock = make()
    windows = [label_event(i, "walking", 0.45, raw="running") for i in range(3)]  # raw label disagrees
    (start,) = feed_all(detector, clock, windows)
    assert start.label == "walking" and start.peak_confidence == pytest.approx(0.45)


def test_the_snapshot_is_the_frame_at_the_peak():
    asked: list[float] = []

    def snapshot(t: float) -> bytes:
        asked.append(t)
        return f"jpeg@{t}".encode()

    detector, clock = make(snapshot=snapshot)
    out = feed_all(detector, clock, sequence([("walking", [0.5, 0.9, 0.7, 0.95, 0.6])]))
    assert asked == [1.0, 1.5, 2.5]  # only windows that set a new peak
    assert out[0].has_snapshot and out[0].snapshot == b"jpeg@1.5"  # the peak when the event opened
    (end,) = detector.close()
    assert end.snapshot == b"jpeg@2.5" and end.peak_t == 2.5


def test_no_snapshots_for_filtered_out_actions_and_a_failing_snapshot_is_harmless():
    asked: list[float] = []

    def snapshot(t: float) -> bytes | None:
        asked.append(t)
        if t > 4.0:
            raise RuntimeError("encoder broke")
        return None  # the frame is gone

    detector, clock = make(DetectorSettings.only(["falling"], min_duration_s=1.0, update_every_s=None),
                           snapshot=snapshot)
    out = feed_all(detector, clock, sequence([("walking", [0.9] * 4), ("falling", [0.5, 0.6, 0.7])]))
    assert asked == [3.0, 3.5, 4.0]
    assert [e.phase for e in out] == ["start"] and not out[0].has_snapshot and out[0].snapshot is None
    feed_all(detector, clock, [label_event(7, "falling", 0.8)])  # t = 4.5: snapshot raises, the stream goes on
    (end,) = detector.close()
    assert end.peak_confidence == pytest.approx(0.8) and not end.has_snapshot


def test_used_as_a_pipeline_sink_it_hands_events_to_emit():
    got: list[ActionEvent] = []
    detector, clock = make(emit=got.append)
    for event, probs in sequence([("walking", [0.9] * 3)]):
        clock.at(event.t)
        detector(event, probs)
    assert [e.phase for e in got] == ["start"]


def test_an_emit_that_raises_does_not_stop_the_stream(caplog):
    def broken(action: ActionEvent) -> None:
        raise RuntimeError("receiver bug")

    detector, clock = make(emit=broken)
    for event, probs in sequence([("walking", [0.9] * 3), ("running", [0.9] * 3)]):
        clock.at(event.t)
        detector(event, probs)  # does not raise
    assert detector.open_label == "running"
    assert caplog.text.count("handing on action event") == 3  # start walking, end walking, start running


def test_json_names_the_snapshot_by_url_and_gives_utc_times():
    detector, clock = make(snapshot=lambda t: b"\xff\xd8jpeg")
    feed_all(detector, clock, sequence([("walking", [0.9] * 3)]))
    (end,) = detector.close()
    data = end.to_json()
    assert json.loads(json.dumps(data)) == data  # plain JSON: no bytes inside
    assert data == {
        "type": "action", "phase": "end", "id": "ev0", "seq": 1, "stream": "cam", "label": "walking",
        "state": "closed", "start": 0.0, "last": 2.0, "end": 2.0, "duration": 2.0,
        "started_at": "2025-03-01T12:00:00.000Z", "ended_at": "2025-03-01T12:00:02.000Z",
        "updated_at": "2025-03-01T12:00:02.000Z", "peak_confidence": 0.9, "mean_confidence": 0.9, "peak_t": 1.0,
        "windows": 3, "reason": "stopped", "snapshot": "/api/events/ev0/snapshot.jpg"}
    assert end.to_json("http://host:8000/api/events/")["snapshot"] == "http://host:8000/api/events/ev0/snapshot.jpg"


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="min duration"):
        DetectorSettings(min_duration_s=-1)
    with pytest.raises(ConfigError, match="update interval"):
        DetectorSettings(update_every_s=0)
    with pytest.raises(ConfigError, match="max gap"):
        DetectorSettings(max_gap_s=0)
    with pytest.raises(ConfigError, match="'flying' are not labels of its model"):
        ActionEventDetector("cam", LABELS, DetectorSettings.only(["flying", "falling"]))
    assert DetectorSettings.only([]).labels is None


# -- snapshots ---------------------------------------------------------------------------------------------------

def _jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


def test_snapshots_are_downscaled_jpegs_of_frames_and_arrays():
    array = np.zeros((480, 640, 3), np.uint8)
    array[:, 320:] = (200, 30, 30)
    frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
    data = encode_jpeg(frame, max_size=320)
    assert _jpeg_size(data) == (320, 240)
    with Image.open(io.BytesIO(data)) as image:
        right = np.asarray(image.convert("RGB"))[120, 240]
    assert right[0] > 150 and right[1] < 80  # the red half is still red after YUV and JPEG
    assert _jpeg_size(encode_jpeg(array[:100, :80])) == (80, 100)  # small pictures are not enlarged
    with pytest.raises(ValueError, match="RGB array"):
        encode_jpeg(np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match="max size"):
        encode_jpeg(array, max_size=4)


def test_recent_frames_answer_with_the_frame_shown_before_a_time():
    recent = RecentFrames(capacity=3, every_s=0.2)
    for i in range(8):  # a frame every 0.1 s, worth i in every pixel
        recent.push(i / 10, np.full((8, 8, 3), i * 30, np.uint8))
    assert len(recent) == 3  # kept one per 0.2 s: 0.0, 0.2, 0.4, 0.6; the last three stay
    assert recent.frame_at(0.55)[0, 0, 0] == 4 * 30  # the newest kept before 0.55 is 0.4
    assert recent.frame_at(5.0)[0, 0, 0] == 6 * 30
    assert recent.frame_at(0.0)[0, 0, 0] == 2 * 30  # all later: the oldest kept
    assert _jpeg_size(recent(0.55)) == (8, 8)
    recent.push(0.0, np.zeros((8, 8, 3), np.uint8))  # time went back (a reconnect): older frames go
    assert len(recent) == 1 and recent.frame_at(0.05)[0, 0, 0] == 0
    recent.clear()
    assert recent(1.0) is None


# -- end to end: a real clip through the engine ---------------------------------------------------------------

@pytest.mark.usefixtures("one_torch_thread")
async def test_a_clip_with_two_actions_gives_their_start_and_end_events(tiny_checkpoint, tmp_path):
    clip = write_two_action_clip(tmp_path / "left_then_still.mp4")
    got: list[ActionEvent] = []
    await run_clip(tiny_checkpoint, clip, got.append)

    starts = [e for e in got if e.phase == "start"]
    ends = [e for e in got if e.phase == "end"]
    assert [e.label for e in starts] == ["moving left", "holding still"], [(e.phase, e.label) for e in got]
    assert [e.label for e in ends] == ["moving left", "holding still"]
    assert [e.reason for e in ends] == ["changed", "stopped"]
    left, still = ends
    assert [e.id for e in starts] == [left.id, still.id] and left.id != still.id
    assert left.start == pytest.approx(0.0, abs=TOLERANCE)
    assert left.end == pytest.approx(CHANGE_AT, abs=TOLERANCE), (left.end, CHANGE_AT)
    assert still.start == left.end  # events tile the stream
    assert still.end == pytest.approx(DURATION, abs=1 / 15 + 1e-6)
    for event in ends:
        assert 0.5 < event.mean_confidence <= event.peak_confidence <= 1.0
        assert event.start <= event.peak_t <= event.end + 1e-6
        assert event.ended_at >= event.started_at
        assert _jpeg_size(event.snapshot) == (160, 120)  # the clip is smaller than the snapshot limit
    # each event's messages come in order: start, updates, end
    for event in ends:
        mine = [e for e in got if e.id == event.id]
        assert [e.seq for e in mine] == list(range(len(mine)))
        assert mine[0].phase == "start" and mine[-1].phase == "end"
        assert all(e.phase == "update" for e in mine[1:-1])
    order = [(e.label, e.phase) for e in got if e.phase != "update"]
    assert order == [("moving left", "start"), ("moving left", "end"), ("holding still", "start"),
                     ("holding still", "end")]
