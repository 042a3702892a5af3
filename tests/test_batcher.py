"""DynamicBatcher: real concurrent callers, a real single-thread executor, batch sizes seen by ``fn``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from har_stream.batcher import DynamicBatcher


class Recorder:
    """A batch function that remembers every batch it saw; optional per-batch delay, gate and failure."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list[object]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[object]) -> Sequence[object]:
        self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"poisoned batch {items}")
        return [("out", item) for item in items]

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-batcher")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


async def _started(fn: Callable[[list[object]], Sequence[object]], executor: ThreadPoolExecutor,
                   **kw: object) -> DynamicBatcher[object, object]:
    batcher: DynamicBatcher[object, object] = DynamicBatcher(fn, executor=executor, name="test", **kw)  # type: ignore[arg-type]
    batcher.start()
    return batcher


async def test_concurrent_streams_are_merged_into_bounded_batches(executor: ThreadPoolExecutor) -> None:
    fn = Recorder(delay=0.01)
    batcher = await _started(fn, executor, max_batch=4, max_wait_ms=20)
    try:
        async def stream(sid: int) -> list[object]:
            futures = [await batcher.submit((sid, i)) for i in range(10)]
            return list(await asyncio.gather(*futures))

        results = await asyncio.gather(*(stream(s) for s in range(3)))
    finally:
        await batcher.aclose()
    assert all(1 <= n <= 4 for n in fn.sizes), fn.sizes
    assert sum(fn.sizes) == 30
    assert max(fn.sizes) == 4  # requests really were merged
    assert any(len({sid for sid, _ in batch}) > 1 for batch in fn.batches), "no batch mixed two streams"
    for sid, outs in enumerate(results):  # every caller got its own answer
        assert outs == [("out", (sid, i)) for i in range(10)]
    assert batcher.stats.items == 30 and batcher.stats.batches == len(fn.batches)
    assert batcher.stats.mean_batch == pytest.approx(30 / len(fn.batches))


async def test_lone_request_is_served_after_max_wait(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    batcher = await _started(fn, executor, max_batch=4, max_wait_ms=150)
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(batcher("alone"), 5.0) == ("out", "alone")
        lone = time.monotonic() - started
    finally:
        await batcher.aclose()
    assert lone >= 0.14, f"lone request served after {lone:.3f} s; it should wait ~max_wait (0.15 s) for company"
    assert fn.sizes == [1]


async def test_a_full_batch_does_not_wait_for_max_wait(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    batcher = await _started(fn, executor, max_batch=4, max_wait_ms=3000)
    try:
        started = time.monotonic()
        outs = await asyncio.wait_for(asyncio.gather(*(batcher(i) for i in range(4))), 10.0)
        full = time.monotonic() - started
    finally:
        await batcher.aclose()
    assert full < 1.5, f"a full batch waited {full:.3f} s; it should go as soon as max_batch items are queued"
    assert fn.sizes == [4]
    assert outs == [("out", i) for i in range(4)]


async def test_outputs_go_back_to_their_own_callers(executor: ThreadPoolExecutor) -> None:
    def reverse_aware(items: list[object]) -> list[object]:
        return [f"{item}!" for item in items]  # output i belongs to input i, whatever the batch order

    batcher = await _started(reverse_aware, executor, max_batch=8, max_wait_ms=10)
    try:
        names = [f"caller-{i}" for i in range(40)]
        outs = await asyncio.gather(*(batcher(n) for n in names))
    finally:
        await batcher.aclose()
    assert outs == [f"{n}!" for n in names]


async def test_a_failing_batch_fails_only_its_callers_and_the_batcher_keeps_serving(
        executor: ThreadPoolExecutor) -> None:
    fn = Recorder(fail_on="poison")
    batcher = await _started(fn, executor, max_batch=3, max_wait_ms=50)
    try:
        # Submitted without yielding to the loop, so the batches are exactly [a, poison, b] and [c, d, e].
        futures = [await batcher.submit(x) for x in ("a", "poison", "b", "c", "d", "e")]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert fn.batches[:2] == [["a", "poison", "b"], ["c", "d", "e"]]
        assert all(isinstance(o, ValueError) and "poisoned batch" in str(o) for o in outcomes[:3])
        assert outcomes[3:] == [("out", "c"), ("out", "d"), ("out", "e")]
        assert await asyncio.wait_for(batcher("later"), 2.0) == ("out", "later")
    finally:
        await batcher.aclose()


async def test_wrong_output_count_fails_the_batch_not_the_batcher(executor: ThreadPoolExecutor) -> None:
    calls = []

    def short(items: list[object]) -> list[object]:
        calls.append(len(items))
        return list(items)[:-1] if len(calls) == 1 else list(items)

    batcher = await _started(short, executor, max_batch=2, max_wait_ms=50)
    try:
        futures = [await batcher.submit(x) for x in (1, 2)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and "1 outputs for 2 inputs" in str(o) for o in outcomes)
        assert await asyncio.wait_for(batcher(3), 2.0) == 3
    finally:
        await batcher.aclose()


async def test_cancelled_requests_are_not_computed(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    batcher = await _started(fn, executor, max_batch=3, max_wait_ms=50)
    try:
        futures = [await batcher.submit(x) for x in ("a", "b", "c")]
        futures[1].cancel()  # the caller gave up before the batch ran
        assert await asyncio.gather(futures[0], futures[2]) == [("out", "a"), ("out", "c")]
    finally:
        await batcher.aclose()
    assert fn.batches == [["a", "c"]]


async def test_aclose_cancels_pending_and_in_flight_requests_and_stops_the_task(
        executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    fn.gate.clear()  # the first batch blocks in the executor until the test opens the gate
    batcher = await _started(fn, executor, max_batch=1, max_wait_ms=1)
    try:
        in_flight = await batcher.submit("first")
        assert await asyncio.to_thread(fn.entered.wait, 2.0)
        queued = [await batcher.submit(x) for x in ("second", "third")]
        task = batcher._task
        assert task is not None
        await asyncio.wait_for(batcher.aclose(), 2.0)
        assert task.done()
        assert in_flight.cancelled() and all(f.cancelled() for f in queued)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "batcher-test"]
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit("after close")
    finally:
        fn.gate.set()
    assert fn.batches == [["first"]]  # nothing queued was computed after close


async def test_submit_blocked_on_a_full_queue_is_released_by_aclose(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = await _started(fn, executor, max_batch=1, max_wait_ms=1, queue_size=1)
    try:
        await batcher.submit("in flight")
        assert await asyncio.to_thread(fn.entered.wait, 2.0)
        await batcher.submit("queued")
        blocked = asyncio.create_task(batcher.submit("blocked"))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        await asyncio.wait_for(batcher.aclose(), 2.0)
        # The blocked caller must not end up holding a future that nobody will ever resolve.
        try:
            fut = await asyncio.wait_for(blocked, 1.0)
        except (asyncio.CancelledError, RuntimeError):
            pass
        else:
            assert fut.cancelled()
    finally:
        fn.gate.set()


async def test_full_queue_makes_submit_wait_until_there_is_room(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = await _started(fn, executor, max_batch=1, max_wait_ms=1, queue_size=2)
    try:
        first = await batcher.submit(0)
        assert await asyncio.to_thread(fn.entered.wait, 2.0)  # item 0 is in the executor, queue empty
        queued = [await asyncio.wait_for(batcher.submit(i), 0.5) for i in (1, 2)]  # fills the queue
        blocked = asyncio.create_task(batcher.submit(3))
        await asyncio.sleep(0.1)
        assert not blocked.done(), "submit on a full queue returned instead of waiting (policy: block)"
        fn.gate.set()
        last = await asyncio.wait_for(blocked, 2.0)
        outs = await asyncio.wait_for(asyncio.gather(first, *queued, last), 2.0)
    finally:
        fn.gate.set()
        await batcher.aclose()
    assert outs == [("out", i) for i in range(4)]
    assert fn.batches == [[0], [1], [2], [3]]


async def test_bad_settings_are_refused(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(list, executor=executor, name="x", max_batch=0)
    with pytest.raises(ValueError):
        DynamicBatcher(list, executor=executor, name="x", queue_size=0)
    idle = DynamicBatcher(list, executor=executor, name="idle")
    with pytest.raises(RuntimeError, match="not running"):
        await idle.submit(1)


async def test_aclose_while_a_batch_waits_for_company_cancels_it(executor: ThreadPoolExecutor) -> None:
    fn = Recorder()
    batcher = await _started(fn, executor, max_batch=8, max_wait_ms=5000)
    waiting = await batcher.submit("waiting for company")
    await asyncio.sleep(0.05)  # the batcher has taken it off the queue and waits up to 5 s for more
    await asyncio.wait_for(batcher.aclose(), 2.0)
    assert waiting.cancelled(), "a request taken into a batch that never ran was left pending forever"
    assert fn.batches == []


async def test_live_items_go_first_and_background_fills_at_most_its_share(executor: ThreadPoolExecutor) -> None:
    """An offline job (background) queued ahead of live streams must not delay them: the next batch takes the
    live items first and only ``background_batch`` background ones while live traffic is about."""
    recorder = Recorder()
    recorder.gate.clear()
    batcher = await _started(recorder, executor, max_batch=6, max_wait_ms=20, background_batch=2)
    try:
        blocker = await batcher.submit("first")  # occupies the thread while the queues fill
        assert await asyncio.to_thread(recorder.entered.wait, 5)
        background = [await batcher.submit(f"bg{i}", background=True) for i in range(8)]
        live = [await batcher.submit(f"live{i}") for i in range(3)]
        recorder.gate.set()
        await asyncio.gather(blocker, *live, *background)
        assert recorder.batches[1] == ["live0", "live1", "live2", "bg0", "bg1"]
        assert [len(b) for b in recorder.batches[2:]] and all(len(b) <= 6 for b in recorder.batches[2:])
        assert [x for b in recorder.batches[2:] for x in b] == [f"bg{i}" for i in range(2, 8)]
        assert [f.result() for f in live] == [("out", f"live{i}") for i in range(3)]
    finally:
        await batcher.aclose()


async def test_background_alone_gets_full_batches(executor: ThreadPoolExecutor) -> None:
    """With no live stream about, an offline job keeps the worker's full batch size (CLI analyse speed)."""
    recorder = Recorder()
    recorder.gate.clear()
    batcher = await _started(recorder, executor, max_batch=4, max_wait_ms=20, background_batch=1)
    try:
        first = await batcher.submit("bg-first", background=True)
        assert await asyncio.to_thread(recorder.entered.wait, 5)
        rest = [await batcher.submit(f"bg{i}", background=True) for i in range(8)]
        recorder.gate.set()
        await asyncio.gather(first, *rest)
        assert recorder.sizes == [1, 4, 4]
    finally:
        await batcher.aclose()


async def test_aclose_cancels_waiting_background_items(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = await _started(recorder, executor, max_batch=2, max_wait_ms=1)
    blocker = await batcher.submit("first")
    assert await asyncio.to_thread(recorder.entered.wait, 5)
    waiting = [await batcher.submit(i, background=True) for i in range(5)]
    closing = asyncio.ensure_future(batcher.aclose())
    await asyncio.sleep(0.05)
    recorder.gate.set()
    await closing
    assert blocker.cancelled() or blocker.done()
    assert all(f.cancelled() for f in waiting[2:])


async def test_busy_time_is_the_calls_own_not_the_wait_behind_another_batcher() -> None:
    """Two batchers on one thread (a model's encoder and classifier): each counts only its own calls' time."""
    def slow(items: list[int]) -> list[int]:
        time.sleep(0.2)
        return items

    with ThreadPoolExecutor(max_workers=1) as executor:
        a = DynamicBatcher(slow, executor=executor, name="a", max_wait_ms=1.0)
        b = DynamicBatcher(slow, executor=executor, name="b", max_wait_ms=1.0)
        a.start()
        b.start()
        try:
            await asyncio.gather(a(1), b(2))  # b's call waits 0.2 s behind a's on the one thread
        finally:
            await a.aclose()
            await b.aclose()
    assert 0.19 <= a.stats.busy_s < 0.3 and 0.19 <= b.stats.busy_s < 0.3, (a.stats, b.stats)
