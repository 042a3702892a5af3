"""Wires one source to the engine: sample → prepare → encode (cached) → window → classify → smooth → sinks.

Live and offline run this same code; they differ only in queue policies (``drop_oldest`` keeps live
streams current, ``block`` makes offline runs lose nothing), in the final ``flush`` window offline, and in the
stride: a live stream widens it while the model cannot answer windows as fast as it asks for them
(``adaptive_stride.py``), an offline run keeps the one asked for.
Each pipeline owns its tasks through a ``TaskGroup``: when ``run`` returns or is cancelled, nothing of it
is left running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from .adaptive_stride import AdaptiveStride
from .errors import ConfigError, InferenceStalledError
from .fallback import ClipFallback
from .queues import put_drop_oldest
from .ring_buffer import FrameSlot
from .scheduler import Window, WindowScheduler
from .smoother import Smoother
from .sources.base import FrameSource
from .types import LabelEvent, Prediction
from .worker import ModelWorker

log = logging.getLogger(__name__)

T = TypeVar("T")
Policy = Literal["block", "drop_oldest"]
EventSink = Callable[[LabelEvent, np.ndarray], None]


@dataclass(frozen=True)
class StreamSettings:
    window: int = 16
    stride: int = 8
    fps: float | None = None  # sampling rate; None = the model's
    smoothing: int = 3
    hysteresis: float = 0.1
    live: bool = False
    window_queue: int = 64  # offline: how far the source may run ahead, so batches fill
    fallback_queue: int = 8
    max_in_flight: int | None = None  # cap on this stream's frames waiting for the shared encoder (live)
    adaptive_stride: bool = True  # live: widen the stride while the model falls behind (offline never does)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"--window must be at least 1 (got {self.window})")
        if self.stride < 1:
            raise ConfigError(f"--stride must be at least 1 (got {self.stride})")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"--fps must be positive (got {self.fps})")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1 (got {self.max_in_flight})")

    @property
    def policy(self) -> Policy:
        return "drop_oldest" if self.live else "block"

    @property
    def background(self) -> bool:
        """Offline work yields to live streams on a shared worker."""
        return not self.live


def top_prediction(probs: np.ndarray, labels: tuple[str, ...], source: Literal["model", "clip"],
                   k: int = 5) -> Prediction:
    order = np.argsort(probs)[::-1][:k]
    top = tuple((labels[i], float(probs[i])) for i in order)
    return Prediction(label=top[0][0], confidence=top[0][1], top5=top, source=source)


async def offer(queue: asyncio.Queue, item: object, policy: Policy) -> int:
    """Put with a named policy; returns how many items were dropped to make room."""
    if policy == "block":
        await queue.put(item)
        return 0
    return put_drop_oldest(queue, item)


MAX_FAILED_IN_A_ROW = 3  # live: model calls that raised, one after another, before the stream fails


class WorkerStoppedError(RuntimeError):
    """The worker a running stream uses was closed under it: the stream stops (see ``_answer``)."""


@dataclass
class StreamStats:
    frames: int = 0
    windows: int = 0
    refined: int = 0
    fallback_dropped: int = 0
    stalled: int = 0  # live windows given up because their model call stalled (the inference watchdog)
    out_of_order: int = 0  # primary labels not emitted: their window was not newer than the last one emitted
    failed: int = 0  # live windows given up because their model call raised


class StreamPipeline:
    """One stream through the engine. ``run()`` returns when the source ends (or raises its error)."""

    def __init__(self, name: str, source: FrameSource, worker: ModelWorker, settings: StreamSettings,
                 sink: EventSink, fallback: ClipFallback | None = None) -> None:
        self.name = name
        self.source = source
        self.worker = worker
        self.settings = settings
        self.sink = sink
        self.fallback = fallback
        self.labels = worker.info.labels
        self.stats = StreamStats()
        self._failed_in_a_row = 0  # live: failed model calls (not windows) since a window was last answered
        self._last_failure: BaseException | None = None  # a batch's callers all get the same exception
        self.smoother = Smoother(self.labels, settings.smoothing, settings.hysteresis)
        self.stride_control: AdaptiveStride | None = None  # made in run(), once the sampling rate is known
        self._scheduler: WindowScheduler | None = None
        self._last_emitted = -1  # the newest window whose primary label went out (indexes only grow)

    @property
    def effective_stride(self) -> int:
        """The stride windows close at now: the configured one, or wider while a live model falls behind."""
        return self.stride_control.stride if self.stride_control is not None else self.settings.stride

    @property
    def primary_source(self) -> Literal["model", "clip"]:
        """CLIP as the primary model (open vocabulary) is still CLIP deciding."""
        return "clip" if self.worker.info.family == "clip" else "model"

    @property
    def sample_fps(self) -> float:
        return self.settings.fps or self.worker.info.fps

    async def run(self, source_fps: float | None = None) -> None:
        fps = min(self.sample_fps, source_fps) if source_fps else self.sample_fps
        scheduler = self._scheduler = WindowScheduler(self.settings.window, self.settings.stride, 1.0 / fps)
        if self.settings.live and self.settings.adaptive_stride:
            self.stride_control = AdaptiveStride(self.settings.stride, fps, self.settings.window)
        windows: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.window_queue)
        refine: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.fallback_queue)
        keep_frames = self.fallback is not None
        # Encode requests not answered yet. The ring only holds the last ``window`` frames, but the source may
        # run ahead of the shared worker by more than that (queued windows), so on failure or cancellation
        # these are cancelled too: a dead stream must not keep the worker busy with its frames.
        in_flight: set[asyncio.Future[Any]] = set()
        # Why a cap per live stream: the worker's queue is shared and sized for batching, so one stream could
        # park a second of frames in it when the model is slow, and its labels would lag by that much. Capped,
        # the pipeline stops pulling instead, and the source's drop_oldest queue sheds (and counts) old frames.
        slots = asyncio.Semaphore(self.settings.max_in_flight) if self.settings.max_in_flight else None
        background = self.settings.background
        epoch: int | None = None  # a live source's connection number (``LiveFrame.epoch``), when it has one
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._classify_loop(windows, refine), name=f"{self.name}-classify")
                if self.fallback is not None:
                    tg.create_task(self._fallback_loop(refine), name=f"{self.name}-fallback")
                async for frame in self.source.frames():
                    if slots is not None:
                        await slots.acquire()
                    feature = await self.worker.encode(frame.image, background=background)
                    if slots is not None:
                        feature.add_done_callback(lambda _: slots.release())
                    if not feature.done():
                        in_flight.add(feature)
                        feature.add_done_callback(in_flight.discard)
                    if (frame_epoch := getattr(frame, "epoch", None)) != epoch:
                        if epoch is not None:
                            scheduler.restart()  # reconnected: windows start again on the new connection
                        epoch = frame_epoch
                    slot = FrameSlot(self.stats.frames, frame.pts, frame.arrival, feature,
                                     frame.frame if keep_frames else None)
                    self.stats.frames += 1
                    window = scheduler.push(slot)
                    if window is not None:
                        await windows.put(window)
                if not self.settings.live and (window := scheduler.flush()) is not None:
                    await windows.put(window)
                await windows.put(None)  # end of stream: the loops drain and return
        except* Exception as group:
            raise group.exceptions[0] from None
        finally:
            for feature in tuple(in_flight):
                feature.cancel()
            scheduler.ring.clear()
            if self.fallback is not None:
                self.fallback.forget(self.name)

    async def _classify_loop(self, windows: asyncio.Queue[Window | None],
                             refine: asyncio.Queue[Window | None]) -> None:
        """Classify windows in order. Live: one at a time, each published at once. Offline: up to
        ``window_queue`` windows are in flight, so the shared batcher sees batches, and results are published
        in order as they complete."""
        in_flight = 1 if self.settings.live else max(1, self.settings.window_queue)
        pending: deque[tuple[Window, asyncio.Future[np.ndarray], float]] = deque()
        while (window := await windows.get()) is not None:
            try:
                features = await self._answer(asyncio.gather(*(s.feature for s in window.slots)))
            except Exception as err:  # noqa: BLE001 - a failed model call: _give_up decides
                self._give_up(err)
                continue
            submitted = time.monotonic()
            pending.append((window, await self.worker.submit_classify(features, background=self.settings.background),
                            submitted))
            while pending and (len(pending) >= in_flight or pending[0][1].done()):
                await self._publish(*pending.popleft(), refine)
        while pending:
            await self._publish(*pending.popleft(), refine)
        await offer(refine, None, self.settings.policy)

    async def _publish(self, window: Window, answer: asyncio.Future[np.ndarray], submitted: float,
                       refine: asyncio.Queue[Window | None]) -> None:
        try:
            probs = await self._answer(answer)
        except Exception as err:  # noqa: BLE001 - a failed model call: _give_up decides
            self._give_up(err)
            return
        self._failed_in_a_row = 0
        if self.stride_control is not None and self._scheduler is not None:
            self._scheduler.stride = self.stride_control.observe(time.monotonic() - submitted)
        prediction = top_prediction(probs, self.labels, self.primary_source)
        smoothed, _ = self.smoother.update(probs)
        self.stats.windows += 1
        self._emit(window, prediction, smoothed, probs, refines=None)
        if self.fallback is not None and self.fallback.wants(prediction.confidence):
            self.stats.fallback_dropped += await offer(refine, window, self.settings.policy)

    async def _fallback_loop(self, refine: asyncio.Queue[Window | None]) -> None:
        assert self.fallback is not None
        while (window := await refine.get()) is not None:
            try:
                probs = await self._answer(self.fallback.refine(self.name, window))
            except Exception as err:  # noqa: BLE001 - a failed model call: _give_up decides
                self._give_up(err)
                continue
            prediction = top_prediction(probs, self.labels, "clip")
            self.stats.refined += 1
            self._emit(window, prediction, prediction.label, probs, refines=window.index)

    def _give_up(self, err: Exception) -> None:
        """A window whose model call failed. A live stream skips it and goes on with the next: the call's batch
        held other streams' windows too, and one bad call (out of memory, say) must not end them all. A model
        that keeps failing still ends the stream, with its error, after ``MAX_FAILED_IN_A_ROW`` failed calls; a
        stalled call never does (the model answers once it is back). An offline run fails at once, since a
        result with holes would pass for complete."""
        if not self.settings.live or isinstance(err, WorkerStoppedError):
            raise err
        if isinstance(err, InferenceStalledError):
            self.stats.stalled += 1
            return
        self.stats.failed += 1
        if err is self._last_failure:  # the same failed call, met again in an overlapping window
            return
        self._last_failure = err
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            raise err
        log.warning("stream %s: window given up, its model call failed (%s: %s); going on", self.name,
                    type(err).__name__, err)

    async def _answer(self, pending: Awaitable[T]) -> T:
        """Await a worker's answer; a worker stopped under a running stream fails the stream, never hangs it.

        A worker that is closed cancels its pending futures, so ``CancelledError`` reaches this loop although
        nobody cancelled the loop. ``TaskGroup`` takes that for a quiet exit, and the other loop would then
        wait forever on a full queue; a ``RuntimeError`` makes ``run()`` stop and say why instead.
        """
        try:
            return await pending
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise WorkerStoppedError(f"stream {self.name}: a model worker was stopped while the stream was still "
                                     "running; stop streams before their workers") from None

    def _emit(self, window: Window, prediction: Prediction, smoothed: str, probs: np.ndarray,
              refines: int | None) -> None:
        if refines is None:  # each window's label once, in window order, whatever a backend retried or reordered
            if window.index <= self._last_emitted:
                self.stats.out_of_order += 1
                log.warning("stream %s: window %d answered after window %d; not emitted", self.name, window.index,
                            self._last_emitted)
                return
            self._last_emitted = window.index
        now = time.monotonic()
        event = LabelEvent(stream=self.name, t=window.end, window=(window.start, window.end),
                           prediction=prediction, smoothed_label=smoothed,
                           latency_ms=(now - window.newest_arrival) * 1000.0, window_index=window.index,
                           refines=refines, stride=self.effective_stride if self.settings.live else None)
        if self.settings.live and refines is None:
            self.worker.latency.observe(event.latency_ms / 1000.0)
        self.sink(event, probs)
