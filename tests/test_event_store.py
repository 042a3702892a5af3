"""EventStore on a real SQLite file and a real folder: round trips, upserts, filters, retention, recovery."""

from __future__ import annotations

import io
import sqlite3
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from har_stream.errors import ConfigError
from har_stream.events import ActionEvent
from server.event_store import EventQuery, EventRetention, EventStore
from tests.helpers.event_stream import run_clip, write_two_action_clip
from tests.helpers.label_events import EPOCH

JPEG = b"\xff\xd8\xff\xe0 a tiny stand-in picture \xff\xd9"


def action(event_id: str, *, phase: str = "end", seq: int | None = None, stream: str = "cam1",
           label: str = "walking", at: float = 0.0, length: float = 10.0, snapshot: bytes | None = JPEG) -> ActionEvent:
    """An event that started ``at`` seconds after EPOCH and lasted ``length`` seconds (so far, when open)."""
    started = EPOCH + timedelta(seconds=at)
    ended = started + timedelta(seconds=length) if phase == "end" else None
    return ActionEvent(
        id=event_id, phase=phase, seq=seq if seq is not None else {"start": 0, "update": 1, "end": 2}[phase],
        stream=stream, label=label, start=at, last=at + length, end=at + length if phase == "end" else None,
        started_at=started, ended_at=ended, updated_at=started + timedelta(seconds=length),
        peak_confidence=0.9, mean_confidence=0.8, peak_t=at + 1.0, windows=7,
        reason="changed" if phase == "end" else None, has_snapshot=snapshot is not None, snapshot=snapshot)


class Clock:
    def __init__(self, seconds_after_epoch: float = 0.0) -> None:
        self.now = EPOCH.timestamp() + seconds_after_epoch

    def __call__(self) -> float:
        return self.now


async def opened(root: Path, **kw) -> EventStore:
    """A store whose "now" is EPOCH (these events' time) unless a clock is given, so retention keeps them."""
    kw.setdefault("clock", Clock())
    store = EventStore(root, **kw)
    await store.open()
    return store


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "events").iterdir())


async def test_an_event_round_trips_with_its_snapshot_beside_the_database(tmp_path):
    store = await opened(tmp_path)
    try:
        start = action("e1", phase="start", length=2.0)
        await store.put(start)
        got = await store.get("e1")
        assert got == replace(start, snapshot=None)
        assert got.snapshot is None and got.has_snapshot  # the picture lives in a file, not in the row
        assert got.started_at.tzinfo is not None and got.started_at == EPOCH
        assert await store.read_snapshot("e1") == JPEG
        assert leftovers(tmp_path) == ["e1.jpg"]  # no temp files left behind
        assert store.snapshot_path("e1") == tmp_path / "events" / "e1.jpg"
        assert await store.get("nope") is None and await store.read_snapshot("nope") is None
        assert await store.read_snapshot("../events") is None
        with pytest.raises(ValueError):
            store.snapshot_path("../../etc/passwd")
    finally:
        await store.aclose()


async def test_each_message_upserts_the_row_and_older_messages_never_win(tmp_path):
    store = await opened(tmp_path)
    try:
        await store.put(action("e1", phase="start", length=2.0, snapshot=b"first"))
        await store.put(action("e1", phase="update", length=5.0, snapshot=None))
        got = await store.get("e1")
        assert (got.phase, got.seq, got.last, got.has_snapshot) == ("update", 1, 5.0, True)  # picture kept
        await store.put(action("e1", phase="update", seq=2, length=6.0, snapshot=b"same peak, not rewritten"))
        assert await store.read_snapshot("e1") == b"first"
        await store.put(replace(action("e1", phase="end", seq=3, length=8.0, snapshot=b"peak"), peak_t=7.0))
        late = replace(action("e1", phase="update", seq=2, length=6.0, snapshot=b"stale"), peak_t=5.0)
        await store.put(late)  # a retry that arrives late
        got = await store.get("e1")
        assert (got.phase, got.seq, got.end, got.state, got.peak_t) == ("end", 3, 8.0, "closed", 7.0)
        assert await store.read_snapshot("e1") == b"peak"
        assert await store.count() == 1
    finally:
        await store.aclose()


async def test_queries_filter_by_stream_label_time_and_state_newest_first(tmp_path):
    store = await opened(tmp_path)
    events = [
        action("a", stream="cam1", label="walking", at=0, length=10),
        action("b", stream="cam1", label="falling", at=20, length=5),
        action("c", stream="cam2", label="falling", at=30, length=10),
        action("d", stream="cam2", label="walking", at=50, length=5, phase="start"),  # still open
    ]
    try:
        for event in events:
            await store.put(event)

        async def ids(**kw) -> list[str]:
            query = EventQuery(**kw)
            found = [e.id for e in await store.query(query)]
            if "limit" not in kw and "offset" not in kw:
                assert await store.count(query) == len(found)
            return found

        assert await ids() == ["d", "c", "b", "a"]
        assert await ids(stream="cam1") == ["b", "a"]
        assert await ids(label="falling") == ["c", "b"]
        assert await ids(stream="cam2", label="falling") == ["c"]
        assert await ids(state="open") == ["d"]
        assert await ids(state="closed") == ["c", "b", "a"]
        # time ranges select events that overlap them; an open event lasts until now
        assert await ids(since=EPOCH + timedelta(seconds=24)) == ["d", "c", "b"]
        assert await ids(until=EPOCH + timedelta(seconds=20)) == ["b", "a"]
        assert await ids(since=EPOCH + timedelta(seconds=26), until=EPOCH + timedelta(seconds=45)) == ["c"]
        assert await ids(since=(EPOCH + timedelta(seconds=100)).replace(tzinfo=None)) == ["d"]  # naive = UTC
        assert await ids(limit=2) == ["d", "c"]
        assert await ids(limit=2, offset=2) == ["b", "a"]
        assert await store.count(EventQuery(limit=1)) == 4
    finally:
        await store.aclose()


def test_bad_queries_are_clear_errors():
    with pytest.raises(ConfigError, match="limit"):
        EventQuery(limit=0)
    with pytest.raises(ConfigError, match="offset"):
        EventQuery(offset=-1)
    with pytest.raises(ConfigError, match="state"):
        EventQuery(state="done")
    with pytest.raises(ConfigError, match="until must not be before since"):
        EventQuery(since=EPOCH, until=EPOCH - timedelta(seconds=1))
    with pytest.raises(ConfigError, match="retention"):
        EventRetention(max_events=0)


async def test_retention_by_age_removes_old_closed_events_and_their_pictures(tmp_path):
    day = 86400.0
    clock = Clock(seconds_after_epoch=10 * day)
    store = await opened(tmp_path, retention=EventRetention(max_age_days=3, max_events=None), clock=clock)
    try:
        await store.put(action("old-but-open", at=1 * day, phase="start"))
        await store.put(action("old", at=1 * day))
        await store.put(action("recent", at=8 * day))
        assert await store.prune() == 1
        assert {e.id for e in await store.query()} == {"recent", "old-but-open"}
        assert leftovers(tmp_path) == ["old-but-open.jpg", "recent.jpg"]
        assert store.stats().pruned == 1
    finally:
        await store.aclose()


async def test_retention_by_count_keeps_the_newest_when_events_start(tmp_path):
    store = await opened(tmp_path, retention=EventRetention(max_age_days=None, max_events=3))
    try:
        await store.put(action("open", at=0, phase="start"))  # the oldest, but open events are never pruned
        for i in range(4):
            await store.put(action(f"closed{i}", at=10 + i))
        assert await store.count() == 5  # no event started since the closed ones were written
        await store.put(action("new", at=100, phase="start"))  # a start applies the retention
        assert {e.id for e in await store.query()} == {"new", "closed3", "open"}
        assert leftovers(tmp_path) == ["closed3.jpg", "new.jpg", "open.jpg"]
    finally:
        await store.aclose()


async def test_publish_never_waits_and_a_full_queue_drops_the_oldest(tmp_path):
    store = EventStore(tmp_path, queue_size=2)
    for i in range(5):  # before open() the writer is not running, so the queue fills up
        store.publish(action(f"e{i}", at=i))
    assert store.stats().dropped == 3 and store.stats().queued == 2
    await store.open()
    try:
        await store.flush()
        assert [e.id for e in await store.query()] == ["e4", "e3"]
        assert (store.stats().written, store.stats().failed) == (2, 0)
        store.publish(action("bad/id", at=9))  # cannot be a file name: fails, counted, the writer goes on
        store.publish(action("e5", at=10))
        await store.flush()
        assert store.stats().failed == 1 and "bad/id" in store.stats().last_error
        assert (await store.query())[0].id == "e5"
    finally:
        await store.aclose()
    store.publish(action("late", at=11))  # after close: dropped, never raises
    assert store.stats().dropped == 4


async def test_aclose_writes_what_was_queued(tmp_path):
    store = await opened(tmp_path)
    for i in range(20):
        store.publish(action(f"e{i}", at=i))
    await store.aclose()
    again = await opened(tmp_path)
    try:
        assert await again.count() == 20
    finally:
        await again.aclose()


async def test_reopening_after_a_crash_ends_open_events_and_sweeps_stray_files(tmp_path):
    store = await opened(tmp_path)
    await store.put(action("cut", phase="update", at=5, length=3))
    await store.put(action("done", at=0))
    await store.aclose()
    (tmp_path / "events" / "orphan.jpg").write_bytes(JPEG)  # picture written, row never was
    (tmp_path / "events" / ".cut.x.part").write_bytes(b"half")  # a temp file cut off mid-write
    store = EventStore(tmp_path, clock=Clock())
    assert await store.open() == 1
    try:
        cut = await store.get("cut")
        assert (cut.phase, cut.reason, cut.seq, cut.end, cut.ended_at) == ("end", "interrupted", 2, 8.0,
                                                                           cut.updated_at)
        assert leftovers(tmp_path) == ["cut.jpg", "done.jpg"]
    finally:
        await store.aclose()


async def _open_fails(root: Path, match: str) -> None:
    store = EventStore(root)
    try:
        with pytest.raises(ConfigError, match=match):
            await store.open()
    finally:
        await store.aclose()


async def test_a_bad_data_folder_or_database_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    await _open_fails(blocker, "cannot use the data directory .*--data-dir")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "events.sqlite3").write_bytes(b"this is not SQLite" * 100)
    await _open_fails(garbage, "is not a usable database")
    newer = tmp_path / "newer"
    newer.mkdir()
    with sqlite3.connect(newer / "events.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    await _open_fails(newer, "newer har-stream")


async def test_a_real_clips_events_are_stored_with_their_snapshots(tiny_checkpoint, tmp_path, one_torch_thread):
    clip = write_two_action_clip(tmp_path / "clip.mp4")
    store = await opened(tmp_path / "data", clock=time.time)
    try:
        await run_clip(tiny_checkpoint, clip, store.publish)
        await store.flush()
        stored = await store.query(EventQuery(stream="cam", state="closed"))
        assert [e.label for e in stored] == ["holding still", "moving left"]  # newest first
        for event in stored:
            with Image.open(io.BytesIO(await store.read_snapshot(event.id))) as picture:
                assert picture.format == "JPEG" and picture.size == (160, 120)
        assert await store.count(EventQuery(state="open")) == 0
        assert store.stats().failed == 0 and store.stats().dropped == 0
    finally:
        await store.aclose()
