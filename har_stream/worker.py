"""One inference worker per loaded model: a single named thread owns the model and the device.

Every stream of the model shares the worker's two batchers — one for per-frame ``encode``, one for
per-window ``classify`` — so N streams cost batched calls, not N times the calls.

On CUDA the worker also resizes frames on the card (``device_prepare.py``: sources get ``worker.preparer()``,
which leaves the resize to the worker), and runs a model that owns a CUDA stream (CLIP) on that stream, so its
kernels overlap the primary model's instead of queueing behind them on the default stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
import torch

from .batcher import DynamicBatcher
from .device_prepare import DeviceResize, NativeFrame, SplitPreparer, check_prepare_on, prepares_on_device
from .errors import ConfigError
from .latency import LatencyHistogram
from .models.base import VideoModel
from .precision import resolve_precision
from .preprocess import FramePreparer

log = logging.getLogger(__name__)

Prepare = Callable[[av.VideoFrame], np.ndarray | NativeFrame]


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INFER_THREAD_PREFIX = "har-infer-"  # every model's inference thread: a stop leaves without joining a stuck one


@dataclass(frozen=True)
class BatchSettings:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    queue_size: int = 256
    precision: str = "fp32"  # autocast dtype for inference; "auto": see precision.py (measured per model)
    prepare_on: str = "auto"  # where frames are resized: auto = on the GPU when the model runs on CUDA (see above)
    stall_s: float | None = None  # the inference watchdog's bound (batcher.py); None: no watchdog

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        check_prepare_on(self.prepare_on)
        if self.stall_s is not None and not self.stall_s > 0:
            raise ConfigError(f"inference_stall_s must be positive (got {self.stall_s})")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The reduced-precision dtype to autocast to, or None for full fp32."""
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("--precision fp16 needs a CUDA device; on a CPU use bf16 or fp32")
        return torch.float16
    return None


@torch.inference_mode()
def warm_up(model: VideoModel, precision: str, max_batch: int = 16) -> None:
    """One window through ``encode`` and ``classify`` at ``precision`` (resolved), off the event loop: kernels
    are chosen and a runtime's graph compiled before the first stream's first window pays for it. A model under
    ``--compile`` is compiled at every batch size up to ``max_batch`` (``compiled.warm_buckets``)."""
    from .compiled import warm_buckets

    dtype = autocast_dtype(precision, model.device)
    h, w = model.info.crop
    frames = torch.zeros(model.info.frames, h, w, 3, dtype=torch.uint8)
    with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        model.classify(model.encode(frames).unsqueeze(0))
    warm_buckets(model, precision, max_batch)


def _nothing() -> None:
    """Queued behind the running call on the inference thread: it returns when that call has."""


def _same_geometry(prepare: FramePreparer, model: VideoModel) -> bool:
    info = model.info
    return (prepare.resize, prepare.crop, prepare.resampling) == (info.resize, tuple(info.crop), info.resampling)


class ModelWorker:
    """Async face of a ``VideoModel``. Start with ``async with`` (or ``start``/``aclose``)."""

    def __init__(self, model: VideoModel, settings: BatchSettings = BatchSettings(),
                 prepare: Prepare | None = None, executor: ThreadPoolExecutor | None = None) -> None:
        """``executor``: run on a thread someone else owns (several views of one model that is not thread-safe
        share one); ``aclose`` then leaves it running. By default the worker owns a thread of its own."""
        self.model = model
        self.info = model.info
        self.prepare = prepare
        self.precision = resolve_precision(model, settings.precision)  # `auto`: decided once per model
        self._dtype = autocast_dtype(self.precision.precision, model.device)
        self._pin = model.device.type == "cuda"  # uint8 frames go up from pinned memory, without blocking
        if self._pin:
            torch.backends.cudnn.benchmark = True  # batch shapes repeat: let cuDNN pick its fastest kernels
        self.prepares_on_device = prepares_on_device(settings.prepare_on, model.info, model.device)
        self._device_resize = DeviceResize.for_model(model.info) if self.prepares_on_device else None
        if self.prepares_on_device and isinstance(prepare, FramePreparer) and _same_geometry(prepare, model):
            self.prepare = SplitPreparer.for_model(model.info)  # frames handed over undecoded (CLIP's) are resized here too
        self._owns_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{INFER_THREAD_PREFIX}{model.info.name}")
        self.encoder = DynamicBatcher(self._encode_batch, executor=self.executor, name=f"{model.info.name}-encode",
                                      max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                      queue_size=settings.queue_size, stall_s=settings.stall_s)
        self.classifier = DynamicBatcher(self._classify_batch, executor=self.executor,
                                         name=f"{model.info.name}-classify", max_batch=settings.max_batch,
                                         max_wait_ms=settings.max_wait_ms, queue_size=settings.queue_size,
                                         stall_s=settings.stall_s)
        self.stall_s = settings.stall_s
        self.latency = LatencyHistogram()  # live labels of every stream of this worker (pipeline.py observes)

    def stalled_for(self) -> float | None:
        """How long the call the watchdog gave up on has run, for either batcher (None when none is stuck)."""
        stalls = [s for s in (self.encoder.stalled_for(), self.classifier.stalled_for()) if s is not None]
        return max(stalls, default=None)

    # -- runs on the inference thread ------------------------------------------------------------------
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.model.device.type, dtype=self._dtype or torch.float32,
                              enabled=self._dtype is not None)

    def _stream(self) -> contextlib.AbstractContextManager[object]:
        """The model's own CUDA stream when it has one (``cuda_stream()``: CLIP's), else nothing changes. A whole
        batch runs on it, upload and readback included, so no tensor crosses streams."""
        own = getattr(self.model, "cuda_stream", None)
        return own() if own is not None else contextlib.nullcontext()

    def _encode_batch(self, items: list[np.ndarray | NativeFrame | av.VideoFrame]) -> Sequence[torch.Tensor]:
        images = [self.prepare(x) if isinstance(x, av.VideoFrame) else x for x in items]  # type: ignore[misc]
        with self._stream():
            if self._device_resize is not None:  # NativeFrames resized here; crops made on a CPU just go up
                batch = self._device_resize(images, self.model.device)
            else:
                batch = torch.from_numpy(np.stack(images))  # type: ignore[arg-type]
                if self._pin:
                    batch = batch.pin_memory()  # normalise() copies it to the device with non_blocking=True
            with self._autocast():
                return self.model.encode(batch).unbind(0)

    def _classify_batch(self, windows: list[Sequence[torch.Tensor]]) -> Sequence[np.ndarray]:
        with self._stream():
            stacked = torch.stack([torch.stack(tuple(w)) for w in windows])
            with self._autocast():
                logits = self.model.classify(stacked)
            return list(torch.softmax(logits.float(), dim=-1).cpu().numpy())

    def preparer(self) -> Prepare:
        """A new decode-thread preparer for one source feeding this worker: the whole preparation on the CPU, or
        only the RGB conversion when this worker resizes on the device. One per source (not thread-safe)."""
        if self.prepares_on_device:
            return SplitPreparer.for_model(self.info)
        return FramePreparer.for_model(self.info)

    # -- async API ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.encoder.start()
        self.classifier.start()

    async def aclose(self) -> None:
        """Close the batchers, then the inference thread. A call still running is waited for only while the
        watchdog's bound (``stall_s``) allows: past it, the thread is left to finish (or to the process's exit,
        which ``server/runner.py`` takes without joining it, since it may never return)."""
        running = max((s for s in (self.encoder.running_for(), self.classifier.running_for()) if s is not None),
                      default=0.0)  # before the batchers close and forget it
        stuck = self.stalled_for()
        await self.encoder.aclose()
        await self.classifier.aclose()
        if not self._owns_executor:
            return
        # The batch already running must finish before the model can go: a no-op queued behind it says when.
        drained = asyncio.get_running_loop().run_in_executor(self.executor, _nothing)
        bound = None if self.stall_s is None else 0.0 if stuck is not None else max(0.0, self.stall_s - running)
        started = time.monotonic()
        done, _ = await asyncio.wait({drained}, timeout=bound)
        if not done:  # waiting could take forever: let the rest of the shutdown go on
            log.error("model %s: the inference thread is still inside a model call (%.0f s, past the %g s bound of "
                      "inference_stall_s); not waiting for it: the process leaves without joining it",
                      self.info.name, running + time.monotonic() - started, self.stall_s)
            drained.cancel()
            self.executor.shutdown(wait=False, cancel_futures=True)
            return
        self.executor.shutdown(wait=True, cancel_futures=True)  # idle now: the join is immediate

    async def __aenter__(self) -> ModelWorker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def encode(self, image: np.ndarray | av.VideoFrame, *,
                     background: bool = False) -> asyncio.Future[torch.Tensor]:
        """Queue one frame for encoding; returns the future of its feature (waits only for queue room).
        ``background`` work (offline jobs) yields to live streams (see ``DynamicBatcher``)."""
        return await self.encoder.submit(image, background=background)

    async def submit_classify(self, features: Sequence[torch.Tensor], *,
                              background: bool = False) -> asyncio.Future[np.ndarray]:
        """Queue one window; returns the future of its probabilities (waits only for queue room)."""
        return await self.classifier.submit(features, background=background)

    async def classify(self, features: Sequence[torch.Tensor], *, background: bool = False) -> np.ndarray:
        """Probabilities over ``info.labels`` for one window of features."""
        return await self.classifier(features, background=background)
