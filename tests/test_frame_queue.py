"""FrameQueue: a real producer thread feeding an asyncio consumer under both policies."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from har_stream.errors import ConfigError, InputError
from har_stream.frame_queue import FrameQueue


def _produce(queue: FrameQueue[int], items: range, results: list[bool]) -> threading.Thread:
    def run() -> None:
        for item in items:
            results.append(queue.put(item))
        queue.close()

    thread = threading.Thread(target=run, name="test-producer", daemon=True)
    thread.start()
    return thread


async def _wait_until(predicate, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


async def test_block_policy_loses_nothing_and_bounds_the_queue() -> None:
    queue: FrameQueue[int] = FrameQueue(4, "block")
    results: list[bool] = []
    thread = _produce(queue, range(200), results)
    got, sizes = [], []
    async for item in queue:
        sizes.append(len(queue))
        got.append(item)
        if item % 50 == 0:
            await asyncio.sleep(0.01)  # a slow consumer: the producer must wait, not drop
    thread.join(timeout=2)
    assert got == list(range(200))
    assert all(results) and len(results) == 200
    assert queue.dropped == 0
    assert max(sizes) <= 3  # at most maxsize - 1 left after taking one


async def test_block_policy_producer_waits_while_full() -> None:
    queue: FrameQueue[int] = FrameQueue(2, "block")
    results: list[bool] = []
    thread = _produce(queue, range(5), results)
    await _wait_until(lambda: len(results) == 2)
    await asyncio.sleep(0.05)
    assert len(results) == 2 and thread.is_alive()  # third put is blocked on a full queue
    assert [item async for item in queue] == [0, 1, 2, 3, 4]
    thread.join(timeout=2)


async def test_drop_oldest_keeps_newest_and_counts_drops() -> None:
    queue: FrameQueue[int] = FrameQueue(3, "drop_oldest")
    results: list[bool] = []
    thread = _produce(queue, range(10), results)
    thread.join(timeout=2)  # never blocks, even with nobody reading
    assert not thread.is_alive()
    assert all(results)
    assert [item async for item in queue] == [7, 8, 9]
    assert queue.dropped == 7


async def test_close_releases_a_blocked_producer() -> None:
    queue: FrameQueue[int] = FrameQueue(1, "block")
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend([queue.put(1), queue.put(2)]), daemon=True)
    thread.start()
    await _wait_until(lambda: len(queue) == 1)
    await asyncio.sleep(0.02)
    assert thread.is_alive()  # blocked on the second put
    queue.close()
    thread.join(timeout=1)
    assert not thread.is_alive()
    assert results == [True, False]
    assert queue.put(3) is False
    assert [item async for item in queue] == [1]  # what was queued before close is still delivered


async def test_close_wakes_a_waiting_consumer() -> None:
    queue: FrameQueue[int] = FrameQueue(2, "block")

    async def consume() -> list[int]:
        return [item async for item in queue]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.02)
    assert not task.done()
    threading.Thread(target=queue.close, daemon=True).start()
    assert await asyncio.wait_for(task, 1) == []


async def test_error_is_raised_after_the_items_before_it() -> None:
    queue: FrameQueue[int] = FrameQueue(8, "block")

    def run() -> None:
        queue.put(1)
        queue.put(2)
        queue.put_error(InputError("decode failed after 0.07 s"))

    threading.Thread(target=run, daemon=True).start()
    got = []
    with pytest.raises(InputError, match=r"decode failed after 0\.07 s"):
        async for item in queue:
            got.append(item)
    assert got == [1, 2]
    assert queue.put(3) is False
    assert [item async for item in queue] == []  # raised once; then the queue is simply over


async def test_consumer_waiting_before_producer_is_woken_across_threads() -> None:
    queue: FrameQueue[str] = FrameQueue(2, "drop_oldest")

    async def first() -> str:
        async for item in queue:
            return item
        raise AssertionError("queue ended")

    task = asyncio.create_task(first())
    await asyncio.sleep(0.02)
    threading.Timer(0.02, queue.put, args=("frame",)).start()
    assert await asyncio.wait_for(task, 1) == "frame"


async def test_cancelled_consumer_does_not_lose_an_item() -> None:
    queue: FrameQueue[int] = FrameQueue(2, "block")
    it = aiter(queue)
    waiting = asyncio.create_task(anext(it))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    threading.Thread(target=queue.put, args=(42,), daemon=True).start()
    assert await asyncio.wait_for(anext(it), 1) == 42


def test_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        FrameQueue(0, "block")
    with pytest.raises(ConfigError, match="drop_oldest"):
        FrameQueue(4, "drop_newest")  # type: ignore[arg-type]
