"""``WebRTCSource`` over a real aiortc ``MediaStreamTrack`` fed by the test: sampling, preparing off the loop,
``drop_oldest`` with counted drops, the end of the track, and timeouts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from har_stream.errors import InputError, SourceUnreachableError
from har_stream.preprocess import FramePreparer
from har_stream.sources.webrtc import DropOldestInbox, WebRTCSource


class FedTrack(MediaStreamTrack):
    """A video track whose frames the test pushes; ``end()`` ends it the way a remote track ends."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()
        self.pushed: list[float] = []

    def push(self, index: int, fps: float = 30.0, value: int | None = None) -> None:
        pixels = np.full((120, 160, 3), index % 256 if value is None else value, np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = int(round(index * 90000 / fps)), Fraction(1, 90000)
        self.pushed.append(time.monotonic())
        self.queue.put_nowait(frame)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def recv(self) -> av.VideoFrame:
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


def prep_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("har-prep-")]


async def test_frames_are_sampled_prepared_off_the_loop_and_timestamped() -> None:
    track = FedTrack()
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()
    preparer = FramePreparer((64, 64), (64, 64))

    def prepare(frame: av.VideoFrame) -> np.ndarray:
        seen_threads.add(threading.get_ident())
        return preparer(frame)

    source = WebRTCSource(track, "t1", sample_fps=15.0, prepare=prepare, queue_size=64, inbox_size=64)
    got = []
    track.push(0)  # open() waits for the first frame
    async with source:
        for i in range(1, 30):  # one second at 30 fps, read as it comes: nothing needs dropping
            track.push(i)
            await asyncio.sleep(0.002)
        track.end()
        async for frame in source.frames():
            got.append(frame)
    assert source.info is not None and (source.info.width, source.info.height, source.info.live) == (160, 120, True)
    assert [f.index for f in got] == list(range(0, 30, 2)), "15 of 30 fps, every other frame"
    assert [f.pts for f in got] == pytest.approx([i / 30 for i in range(0, 30, 2)])
    assert all(f.image is not None and f.image.shape == (64, 64, 3) for f in got)
    assert seen_threads and loop_thread not in seen_threads, "frames must be prepared off the event loop"
    assert all(track.pushed[f.index] <= f.arrival for f in got)
    arrivals = [f.arrival for f in got]
    assert arrivals == sorted(arrivals)
    assert source.stats.frames_decoded == 30 and source.stats.frames_sampled == 15 and source.stats.dropped == 0
    assert not prep_threads()


async def test_a_consumer_that_falls_behind_gets_the_newest_frames_and_drops_are_counted() -> None:
    track = FedTrack()
    source = WebRTCSource(track, "t2", prepare=FramePreparer((32, 32), (32, 32)), queue_size=3, inbox_size=2)
    track.push(0)
    async with source:
        for i in range(1, 40):
            track.push(i)
        await asyncio.sleep(0.3)  # the reader takes all 40 off the track; nobody consumes yet
        assert track.queue.empty(), "the track must be read as fast as it delivers (its queue is unbounded)"
        track.end()
        got = [f async for f in source.frames()]
    kept = [f.index for f in got]
    # the newest frames, in order (plus, at most, the one the prepare thread held while the others arrived)
    assert kept == sorted(kept) and kept[-2:] == [38, 39] and len(kept) <= 3 + 2 + 1, kept
    assert sum(i < 40 - 5 for i in kept) <= 1, kept
    assert source.stats.dropped == 40 - len(kept) and source.frames_received == 40


async def test_no_first_frame_times_out_with_a_clear_error_and_close_stops_everything() -> None:
    source = WebRTCSource(FedTrack(), "t3", first_frame_timeout=0.3)
    with pytest.raises(SourceUnreachableError, match="no video frame arrived from peer t3 within 0.3 s"):
        await source.open()
    await source.close()
    assert not prep_threads()


async def test_track_ending_before_any_frame_is_a_clear_error() -> None:
    track = FedTrack()
    track.end()
    source = WebRTCSource(track, "t4")
    with pytest.raises(SourceUnreachableError, match="ended its video track before sending a frame"):
        await source.open()
    await source.close()


async def test_a_frame_that_cannot_be_prepared_fails_the_stream() -> None:
    track = FedTrack()

    def broken(frame: av.VideoFrame) -> np.ndarray:
        raise ValueError("bad pixels")

    track.push(0)
    async with WebRTCSource(track, "t5", prepare=broken) as source:
        with pytest.raises(InputError, match="preparing a frame of peer t5 failed .ValueError: bad pixels"):
            async for _ in source.frames():
                pass
    assert not prep_threads()


def test_audio_tracks_are_refused() -> None:
    class Audio(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> av.AudioFrame:
            raise MediaStreamError

    with pytest.raises(InputError, match="not video"):
        WebRTCSource(Audio(), "t6")


def test_inbox_drops_oldest_and_drains_after_finish() -> None:
    inbox: DropOldestInbox[int] = DropOldestInbox(2)
    for i in range(5):
        assert inbox.put(i)
    assert inbox.dropped == 3 and len(inbox) == 2
    inbox.finish()
    assert not inbox.put(9)
    assert [inbox.get(), inbox.get(), inbox.get()] == [3, 4, None]
    closed: DropOldestInbox[int] = DropOldestInbox(2)
    closed.put(1)
    closed.close()
    assert closed.get() is None, "close discards what is queued"
