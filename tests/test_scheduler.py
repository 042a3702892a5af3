"""WindowScheduler and RingBuffer: window/stride arithmetic, the offline flush window, eviction, bad settings."""

from __future__ import annotations

import asyncio

import pytest

from har_stream.errors import ConfigError
from har_stream.ring_buffer import FrameSlot, RingBuffer
from har_stream.scheduler import Window, WindowScheduler

STEP = 1 / 15


def _slot(loop: asyncio.AbstractEventLoop, seq: int) -> FrameSlot:
    return FrameSlot(seq=seq, pts=seq * STEP, arrival=100.0 + seq, feature=loop.create_future())


def _run(window: int, stride: int, frames: int, flush: bool = True) -> list[Window]:
    loop = asyncio.new_event_loop()
    try:
        scheduler = WindowScheduler(window, stride, STEP)
        out = [w for seq in range(frames) if (w := scheduler.push(_slot(loop, seq))) is not None]
        if flush and (last := scheduler.flush()) is not None:
            out.append(last)
        assert scheduler.windows_emitted == len(out)
        return out
    finally:
        loop.close()


def _seqs(window: Window) -> list[int]:
    return [s.seq for s in window.slots]


def test_window_16_stride_8_over_40_frames() -> None:
    windows = _run(16, 8, 40)
    assert [_seqs(w) for w in windows] == [list(range(a, a + 16)) for a in (0, 8, 16, 24)]
    assert [w.index for w in windows] == [0, 1, 2, 3]  # 39 is already the last frame of a window: no flush
    last = windows[-1]
    assert last.start == pytest.approx(24 * STEP)
    assert last.end == pytest.approx(40 * STEP)  # the last frame lasts one sampling step
    assert last.newest_arrival == 100.0 + 39


def test_windows_are_emitted_when_their_last_frame_arrives() -> None:
    loop = asyncio.new_event_loop()
    try:
        scheduler = WindowScheduler(4, 3, STEP)
        closed_at = [seq for seq in range(12) if scheduler.push(_slot(loop, seq)) is not None]
    finally:
        loop.close()
    assert closed_at == [3, 6, 9]


@pytest.mark.parametrize(("window", "stride", "frames", "starts"), [
    (16, 8, 44, [0, 8, 16, 24, 28]),  # frames 40..43 left over: an end-aligned window is added
    (16, 1, 20, [0, 1, 2, 3, 4]),
    (8, 8, 20, [0, 8, 12]),
    (4, 6, 14, [0, 6, 10]),  # stride > window skips frames between windows; flush still covers the end
    (16, 16, 16, [0]),
])
def test_flush_adds_an_end_aligned_window_only_when_needed(window: int, stride: int, frames: int,
                                                           starts: list[int]) -> None:
    windows = _run(window, stride, frames)
    assert [_seqs(w) for w in windows] == [list(range(a, a + window)) for a in starts]
    assert _seqs(windows[-1])[-1] == frames - 1


def test_flush_twice_and_flush_of_nothing() -> None:
    loop = asyncio.new_event_loop()
    try:
        scheduler = WindowScheduler(16, 8, STEP)
        assert scheduler.flush() is None  # no frames at all: no window
        for seq in range(20):
            scheduler.push(_slot(loop, seq))
        assert scheduler.flush() is not None
        assert scheduler.flush() is None
    finally:
        loop.close()


def test_short_clip_flush_pads_to_a_full_window_in_time_order() -> None:
    windows = _run(16, 8, 5)
    assert len(windows) == 1
    seqs = _seqs(windows[0])
    assert len(seqs) == 16
    assert seqs == sorted(seqs) and set(seqs) == set(range(5))  # every frame used, order kept
    assert max(seqs.count(s) for s in range(5)) - min(seqs.count(s) for s in range(5)) <= 1  # evenly
    assert windows[0].start == 0.0 and windows[0].end == pytest.approx(5 * STEP)


def test_live_runs_without_flush_emit_nothing_before_a_full_window() -> None:
    assert _run(16, 8, 15, flush=False) == []


@pytest.mark.parametrize(("window", "stride", "flag"), [(0, 8, "--window"), (16, 0, "--stride"),
                                                        (-1, 1, "--window"), (4, -3, "--stride")])
def test_bad_window_or_stride_is_a_config_error(window: int, stride: int, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag) as caught:
        WindowScheduler(window, stride, STEP)
    assert "\n" not in str(caught.value)


async def test_ring_evicts_the_oldest_and_clear_cancels_pending_features() -> None:
    loop = asyncio.get_running_loop()
    ring = RingBuffer(3)
    slots = [_slot(loop, i) for i in range(5)]
    slots[3].feature.set_result("done")
    for s in slots:
        ring.push(s)
    assert [s.seq for s in ring] == [2, 3, 4] and len(ring) == 3
    assert [s.seq for s in ring.last(2)] == [3, 4]
    with pytest.raises(ValueError):
        ring.last(4)
    ring.clear()
    assert len(ring) == 0
    assert slots[2].feature.cancelled() and slots[4].feature.cancelled()
    assert slots[3].feature.result() == "done"  # finished features are left alone
    assert not slots[0].feature.cancelled()  # evicted earlier: no longer the ring's business
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_restart_after_a_break_never_mixes_frames_from_both_sides() -> None:
    """A camera reconnects after frame 9: the next window holds only frames 10.. and indexes keep counting."""
    loop = asyncio.new_event_loop()
    try:
        scheduler = WindowScheduler(4, 2, STEP)
        before = [w for seq in range(10) if (w := scheduler.push(_slot(loop, seq))) is not None]
        scheduler.restart()
        after = [w for seq in range(10, 17) if (w := scheduler.push(_slot(loop, seq))) is not None]
        assert [[s.seq for s in w.slots] for w in before][-1] == [6, 7, 8, 9]
        assert [[s.seq for s in w.slots] for w in after] == [[10, 11, 12, 13], [12, 13, 14, 15]]
        assert [w.index for w in after] == [len(before), len(before) + 1]
        assert [s.seq for s in scheduler.flush().slots] == [13, 14, 15, 16]
    finally:
        loop.close()
