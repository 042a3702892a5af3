"""Dynamic batching: many streams' requests → one batched call on the model's inference thread.

Requests wait at most ``max_wait_ms`` for company, and a batch never exceeds ``max_batch``. Both request
queues are bounded with the ``block`` policy: a caller that outruns the model waits in ``submit``
(backpressure), so live sources shed load at their own frame queue (``drop_oldest``), where dropping is cheap
and counted.

Two lanes: live requests first, then ``background`` ones (offline jobs) to fill the batch. While live
requests are about (one came in the last ``LIVE_RECENT_S``), at most ``background_batch`` background items
(default 1) join a batch. Why: an offline job can always supply a full batch, and live streams sharing the
model must not wait behind it; keeping its share to one item also keeps each batch short, so a live frame that
arrives while a batch runs waits for a short batch. Measured with ``har-stream bench jobs`` on 2 cores at 4
live peers: half a batch of job frames broke the peers' real time (drops, p95 ≥ 400 ms), one frame a batch
kept it (docs/benchmarks.md). With no live traffic, background work gets full batches.

Faults stay in their batch: a call that raises fails that batch's callers, and the next batch is served. A call
that runs past ``stall_s`` (the inference watchdog) is logged once, its callers are failed with
``InferenceStalledError`` so their streams move on, and ``stalled_for()`` reports it until the call returns.
The batcher then waits for that call rather than running the next batch on a fresh thread: the model (a
runtime's inference request, CLIP's tokenizer) belongs to one thread and is not safe to call from two at once.
Later batches queue meanwhile (bounded, ``block``) and are answered once the call returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import InferenceStalledError

In = TypeVar("In")
Out = TypeVar("Out")

log = logging.getLogger(__name__)

LIVE_RECENT_S = 1.0


@dataclass
class BatcherStats:
    """Counters for the bench and the metrics endpoint."""

    batches: int = 0
    items: int = 0
    busy_s: float = 0.0
    failed: int = 0  # batches whose call raised
    stalls: int = 0  # batches that ran past ``stall_s``

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class DynamicBatcher(Generic[In, Out]):
    """Collects items, calls ``fn(list_of_items) -> sequence_of_outputs`` in ``executor``, resolves futures.

    Owned by its creator: ``start()`` it inside a running loop and ``aclose()`` it on shutdown (pending
    requests then fail with ``CancelledError``).
    """

    def __init__(self, fn: Callable[[list[In]], Sequence[Out]], *, executor: Executor, name: str,
                 max_batch: int = 16, max_wait_ms: float = 5.0, queue_size: int = 256,
                 background_batch: int | None = None, stall_s: float | None = None) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be positive")
        if stall_s is not None and not stall_s > 0:
            raise ValueError("stall_s must be positive (or None: no watchdog)")
        if background_batch is not None and background_batch < 1:
            raise ValueError("background_batch must be positive")
        self.fn = fn
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.executor = executor
        self.stats = BatcherStats()
        self.background_batch = min(max_batch, background_batch or 1)
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue(maxsize=queue_size)
        self._background: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue(maxsize=queue_size)
        self._wake = asyncio.Event()  # set on every submit; the collector sleeps on it
        self._last_live = float("-inf")  # monotonic time a live item was last taken
        self._task: asyncio.Task[None] | None = None
        self.stall_s = stall_s
        self._call_since: float | None = None  # monotonic time the batch now in the executor was handed to it
        self._stalled = False  # the watchdog gave up on the batch now in the executor

    @property
    def depth(self) -> int:
        """Items waiting for a batch, both lanes."""
        return self._queue.qsize() + self._background.qsize()

    def running_for(self) -> float | None:
        """Seconds since the batch now in the executor was handed to it (None when no batch is out)."""
        since = self._call_since
        return None if since is None else time.monotonic() - since

    def stalled_for(self) -> float | None:
        """``running_for()`` once the watchdog has given up on that batch, else None."""
        return self.running_for() if self._stalled else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(self, item: In, *, background: bool = False) -> asyncio.Future[Out]:
        """Enqueue one item (waiting for room: policy ``block``) and return the future of its output.

        ``background`` items are served only after every waiting live item (see the module docstring)."""
        task = self._task
        if task is None or task.done():
            raise RuntimeError(f"batcher {self.name} is not running")
        fut: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        await (self._background if background else self._queue).put((item, fut))
        self._wake.set()
        if self._task is not task:  # closed while we waited for room: nobody would ever serve this
            self._cancel_queued()
        return fut

    async def __call__(self, item: In, *, background: bool = False) -> Out:
        return await (await self.submit(item, background=background))

    def _take(self, batch: list[tuple[In, asyncio.Future[Out]]], background_taken: int) -> int | None:
        """Move one waiting item into ``batch``, live first. Returns 0 for a live item, 1 for a background
        one, None when nothing may be taken."""
        if not self._queue.empty():
            batch.append(self._queue.get_nowait())
            self._last_live = time.monotonic()
            return 0
        live_about = time.monotonic() - self._last_live < LIVE_RECENT_S
        if (not live_about or background_taken < self.background_batch) and not self._background.empty():
            batch.append(self._background.get_nowait())
            return 1
        return None

    async def _collect(self) -> list[tuple[In, asyncio.Future[Out]]]:
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        background = 0
        try:
            while (taken := self._take(batch, background)) is None:
                self._wake.clear()
                await self._wake.wait()
            background += taken
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if (taken := self._take(batch, background)) is not None:
                    background += taken
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
        except asyncio.CancelledError:  # closed while waiting for company: these left the queue, so
            for _, fut in batch:        # aclose's drain cannot see them; their callers must not wait forever
                fut.cancel()
            raise
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self._call_since = time.monotonic()
            try:
                call = loop.run_in_executor(self.executor, self._timed, [item for item, _ in live])
                outputs, busy = await self._watch(call, live)
                if len(outputs) != len(live):
                    raise RuntimeError(f"batcher {self.name}: fn returned {len(outputs)} outputs "
                                       f"for {len(live)} inputs")
            except asyncio.CancelledError:
                self._call_since, self._stalled = None, False  # closed: nothing answered
                for _, fut in live:
                    fut.cancel()
                raise
            except Exception as err:  # one bad batch fails its callers, never the batcher
                self._call_returned()
                self.stats.failed += 1
                log.exception("batch in %s failed", self.name)
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self._call_returned()
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.busy_s += busy
            for (_, fut), out in zip(live, outputs):
                if not fut.done():
                    fut.set_result(out)

    async def _watch(self, call: asyncio.Future[tuple[Sequence[Out], float]],
                     live: list[tuple[In, asyncio.Future[Out]]]) -> tuple[Sequence[Out], float]:
        """Await the executor's answer; past ``stall_s``, fail the batch's callers once and keep waiting."""
        if self.stall_s is not None:
            try:
                done, _ = await asyncio.wait({call}, timeout=self.stall_s)
            except asyncio.CancelledError:
                call.cancel()
                raise
            if not done:
                self._stalled = True
                self.stats.stalls += 1
                log.warning("inference stuck: a batch of %d in %s has run for more than %g s (inference_stall_s); "
                            "its windows are given up and its streams go on, later batches wait for the call",
                            len(live), self.name, self.stall_s)
                err = InferenceStalledError(
                    f"inference on {self.name} has been stuck for more than {self.stall_s:g} s; this window is "
                    "given up (inference_stall_s)")
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
        return await call

    def _call_returned(self) -> None:
        if self._stalled:
            log.warning("inference on %s answered again after %.1f s", self.name, self.running_for() or 0.0)
        self._call_since, self._stalled = None, False

    def _timed(self, items: list[In]) -> tuple[Sequence[Out], float]:
        """``fn(items)`` and how long it ran, measured on the executor: time queued behind another batcher that
        shares the thread is not this batcher's busy time."""
        started = time.perf_counter()
        return self.fn(items), time.perf_counter() - started

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._cancel_queued()

    def _cancel_queued(self) -> None:
        for queue in (self._queue, self._background):
            while not queue.empty():
                _, fut = queue.get_nowait()
                fut.cancel()
