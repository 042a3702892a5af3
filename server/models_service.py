"""Models shared by every peer: loaded once, one inference worker each, windows of all peers batched together.

``ModelService`` owns one ``ModelWorker`` per loaded model plus, when CLIP is available, a CLIP fallback
view per model. A background loader (one owned task, one daemon thread per load) loads the default model
first, then CLIP, then every other model whose weights are already cached; weights missing from the cache
download first, with their progress in ``/api/models`` and the log. Offline, a missing model is listed as
``missing`` with the command that imports it, and every other model still serves.

CLIP is special: ``ClipEncoder`` is not thread-safe, so all CLIP views (fallbacks, label sets, free-text
labels) run on one inference thread, owned by ``ClipViews`` (see ``clip_views.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from har_stream.backends import InferenceBackend, LocalBackend, ModelOptions, make_backend
from har_stream.errors import HarStreamError, LabelsError, ModelError, WeightsMissingError
from har_stream.fallback import ClipFallback
from har_stream.labels import BUILTIN_SETS, LabelSet, load_label_set
from har_stream.manifest import Manifest
from har_stream.models.base import VideoModel, pick_device
from har_stream.models.registry import CLIP_WEIGHTS, ClipSource
from har_stream.weights import WeightStore
from har_stream.precision import resolve_precision
from har_stream.threads import CancelToken, Cancelled, join_thread, start_thread
from har_stream.worker import BatchSettings, ModelWorker, warm_up

from .catalogue import ModelSpec, build_catalogue, cached_weights
from .clip_views import ClipViews
from .config import ServerConfig
from .errors import NotReadyError

log = logging.getLogger(__name__)

Status = Literal["ready", "loading", "downloading", "missing", "error"]
MAX_CUSTOM_LABELS = 200
MAX_LABEL_CHARS = 100
MODEL_WAIT_S = 600.0  # how long jobs and cameras wait for their model to finish loading or downloading
DOWNLOAD_RETRY_S = 300.0  # after a failed download, requests say why (the import command) for this long
# On a stop, how long (from the stop request) a load may take to reach its next safe point. A download stops at
# once; a native step (torch.load, an OpenVINO conversion, a compile, the warm-up) cannot be interrupted, and
# the process must not exit while one runs. Within the 10 s that SIGTERM to exit may take.
LOAD_STOP_S = 6.0
LOAD_THREAD_PREFIX = "har-load-"  # the loading threads' names: the runner checks none is left at exit


class ModelSlot:
    """One row of ``/api/models``: a model's state, and its worker once ready. Mutated on the loop only."""

    def __init__(self, spec: ModelSpec, status: Status, message: str | None = None) -> None:
        self.spec = spec
        self.status: Status = status
        self.progress: float | None = None
        self.message = message
        self.error: HarStreamError | None = None
        self.labels = spec.labels
        self.num_labels = spec.num_labels
        self.worker: ModelWorker | None = None
        self.fallback: ClipFallback | None = None
        self.queued = False
        self.download_failed_at: float | None = None  # monotonic time the last download of its weights failed

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.spec.family, "status": self.status,
                "progress": None if self.progress is None else round(self.progress, 3), "message": self.message,
                "labels": self.labels, "num_labels": self.num_labels, "clip_fallback": self.fallback is not None,
                "import_command": self.spec.import_command if self.status == "missing" else None}


class Lease:
    """What one peer uses: a started worker, maybe a CLIP fallback, and the labels. ``release()`` once done."""

    def __init__(self, model: str, worker: ModelWorker, fallback: ClipFallback | None,
                 on_release: Callable[[], None] | None = None) -> None:
        self.model = model
        self.worker = worker
        self.fallback = fallback
        self.labels = worker.info.labels
        self._on_release = on_release

    def release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()


class ModelService:
    """Start with ``await start()``; stop with ``await aclose()`` after every peer has released its lease."""

    def __init__(self, config: ServerConfig, store: WeightStore | None = None) -> None:
        self.config = config
        self.store = store or WeightStore(config.home, Manifest.load(config.manifest) if config.manifest else None,
                                          config.offline)
        remote = config.backend.kind != "local"  # models run on replicas: they apply device and precision
        self.device = torch.device("cpu") if remote else pick_device(config.device)
        specs, self.default = build_catalogue(self.store, config.model, config.clip_model)
        self.batch = BatchSettings(max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                                   queue_size=2 * config.max_batch, precision="fp32" if remote else config.precision,
                                   stall_s=config.inference_stall_s)
        cached = cached_weights(self.store)
        self.slots: dict[str, ModelSlot] = {}
        self._queue: asyncio.Queue[ModelSlot] = asyncio.Queue()
        for spec in specs:
            wanted = (spec.name == self.default or (spec.name == CLIP_WEIGHTS and config.clip_threshold > 0)
                      or spec.weights is None or (config.preload and spec.weights in cached))
            if wanted:
                slot = ModelSlot(spec, "loading", "queued")
                self._enqueue(slot)
            else:
                slot = ModelSlot(spec, "missing", self._missing_message(spec))
            self.slots[spec.name] = slot
        self.clip: ClipViews | None = None  # once CLIP has loaded
        self._cancel = CancelToken()  # set once, when the server stops: loads end at their next safe point
        self._stop_deadline: float | None = None
        self._loading: threading.Thread | None = None  # the thread of the load in progress, joined on close
        self._loader: asyncio.Task[None] | None = None
        self.backend: InferenceBackend = LocalBackend()  # ``start`` connects the one the config names

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        options = ModelOptions(device=self.config.device, runtime=self.config.runtime, compile=self.config.compile,
                               precision=self.config.precision, prompt=self.config.prompt)
        # A cluster that cannot be reached fails the start with one BackendError line, not every model later.
        self.backend = await asyncio.to_thread(make_backend, self.config.backend, options)
        self._loader = asyncio.get_running_loop().create_task(self._load_queued(), name="models-loader")
        log.info("default model: %s; loading %s in the background", self.default,
                 ", ".join(s.name for s in self.slots.values() if s.queued) or "nothing")

    def stop_loading(self) -> None:
        """Ask the load in progress to stop at its next safe point (a download at once); call when a stop
        begins, so that the load ends while peers, jobs and cameras close. Idempotent."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + LOAD_STOP_S
            self._cancel.set("the server is stopping")

    async def aclose(self) -> None:
        self.stop_loading()
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        await self._join_loading()
        shared = {id(w) for w in (self.clip.workers if self.clip else ())}  # closed by ClipViews
        for slot in self.slots.values():
            for worker in (slot.worker, slot.fallback.worker if slot.fallback else None):
                if worker is not None and id(worker) not in shared:
                    await worker.aclose()
            slot.worker, slot.fallback = None, None
        if self.clip is not None:
            await self.clip.aclose()  # the shared views, then the CLIP thread
            self.clip = None
        await asyncio.to_thread(self.backend.close)

    async def _join_loading(self) -> None:
        """Wait (bounded) for the loading thread: torch or OpenVINO torn down under it aborts the process."""
        thread = self._loading
        if thread is None or not thread.is_alive():
            return
        assert self._stop_deadline is not None
        if not await join_thread(thread, max(0.0, self._stop_deadline - time.monotonic())):
            log.warning("model %s is still loading in a step that cannot be interrupted, %g s after the stop; "
                        "the process will exit without waiting for it", thread.name.removeprefix(LOAD_THREAD_PREFIX),
                        LOAD_STOP_S)

    async def wait_ready(self, name: str, timeout: float) -> ModelSlot:
        """Wait until ``name`` has finished loading (ready, missing or error): for tests and the bench."""
        deadline = time.monotonic() + timeout
        slot = self.slots[name]
        while slot.status in ("loading", "downloading"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {name} still {slot.status} after {timeout:g} s")
            await asyncio.sleep(0.05)
        return slot

    async def add_model(self, model: VideoModel, *, default: bool = False) -> ModelSlot:
        """Serve a model loaded elsewhere (an embedding app, the bench's untrained network) under its name."""
        name = model.info.name
        if name in self.slots:
            raise ModelError(f"a model named {name!r} is already served; give the model another name")
        spec = ModelSpec(name, model.info.family, name, None, model.info.label_set, model.info.num_classes, None)
        slot = self.slots[name] = ModelSlot(spec, "loading")
        await asyncio.to_thread(resolve_precision, model, self.config.precision, home=self.store.home)
        await self._install(slot, model)
        slot.status, slot.message = "ready", None
        if default:
            self.default = name
        return slot

    @property
    def clip_label_sets(self) -> tuple[tuple[str, ...], ...]:
        """The label lists of the shared CLIP views (kinetics400, label sets and free text in use; not fallbacks)."""
        return self.clip.label_sets if self.clip else ()

    def describe(self) -> dict[str, Any]:
        """The ``/api/models`` document."""
        return {"default": self.default, "label_sets": list(BUILTIN_SETS),
                "models": [slot.to_json() for slot in self.slots.values()]}

    # -- leases -------------------------------------------------------------------------------------------

    async def acquire(self, model: str | None = None, labels: str | None = None,
                      custom_labels: tuple[str, ...] | None = None) -> Lease:
        """The worker a new peer should use; raises a one-line ``HarStreamError`` saying why it cannot."""
        name = model or self.default
        slot = self.slots.get(name)
        if slot is None:
            raise ModelError(f"unknown model {name!r}; choose one of {', '.join(self.slots)} (GET /api/models)")
        if labels is not None and labels not in BUILTIN_SETS:
            raise LabelsError(f"unknown label set {labels!r}; use one of {', '.join(BUILTIN_SETS)}, null for the "
                              "model's own, or custom_labels for free text")
        if custom_labels is not None:
            return await self._clip_lease(LabelSet("custom", check_custom_labels(custom_labels)))
        worker = self._ready_worker(slot)
        label_set = load_label_set(labels) if labels is not None else None
        if label_set is not None and label_set.labels != worker.info.labels:
            return await self._clip_lease(label_set)
        return Lease(slot.name, worker, slot.fallback)

    async def acquire_when_ready(self, model: str | None = None, labels: str | None = None,
                                 custom_labels: tuple[str, ...] | None = None, *, timeout: float = MODEL_WAIT_S,
                                 on_wait: Callable[[], None] | None = None) -> Lease:
        """``acquire``, but a model still loading or downloading (after a restart, say) is waited for, up to
        ``timeout`` seconds, instead of refused; ``on_wait`` is called once if it has to wait. For work that
        can start late (jobs, cameras), unlike a browser peer that is waiting for its answer."""
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                return await self.acquire(model, labels, custom_labels)
            except NotReadyError:
                if time.monotonic() > deadline:
                    raise
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                await asyncio.sleep(0.25)

    def _ready_worker(self, slot: ModelSlot) -> ModelWorker:
        if slot.status == "ready" and slot.worker is not None:
            return slot.worker
        if slot.status == "missing":
            failed = slot.download_failed_at
            retry = failed is None or time.monotonic() - failed > DOWNLOAD_RETRY_S
            if retry and not self.store.offline and slot.spec.weights is not None \
                    and self.store.manifest.get(slot.spec.weights):
                self._enqueue(slot)  # online: fetch it now; the page polls /api/models for progress
                raise NotReadyError(f"model {slot.name} is not downloaded yet; it is downloading now, try again "
                                    "when /api/models shows it ready")
            # What /api/models says (with the import command): a download that just failed is not retried at once
            raise WeightsMissingError(f"model {slot.name} is not available: {slot.message}")
        if slot.status == "error":
            err = slot.error or ModelError(slot.message or "")
            raise type(err)(f"model {slot.name} failed to load: {slot.message}")
        what = f"downloading ({100 * slot.progress:.0f}%)" if slot.status == "downloading" and slot.progress \
            is not None else slot.status
        raise NotReadyError(f"model {slot.name} is still {what}; try again when /api/models shows it ready")

    async def _clip_lease(self, label_set: LabelSet) -> Lease:
        clip = self.slots[CLIP_WEIGHTS]
        if self.clip is None:
            try:
                self._ready_worker(clip)
            except HarStreamError as err:
                raise type(err)(f"labels {label_set.name!r} need CLIP (open vocabulary), which is not ready: "
                                f"{err}") from None
        assert self.clip is not None
        worker, release = await self.clip.acquire(label_set.labels, label_set.name,
                                                  permanent=label_set.name in BUILTIN_SETS)
        return Lease(CLIP_WEIGHTS, worker, None, release)

    # -- loading ------------------------------------------------------------------------------------------

    def _enqueue(self, slot: ModelSlot) -> None:
        if not slot.queued:
            slot.queued = True
            slot.status, slot.progress, slot.message = "loading", None, "queued"
            self._queue.put_nowait(slot)

    async def _load_queued(self) -> None:
        while not self._cancel.is_set():  # stopping: the queued models stay queued
            slot = await self._queue.get()
            await self._load(slot)
            slot.queued = False

    async def _load(self, slot: ModelSlot) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        slot.message = None
        log.info("loading model %s ...", slot.name)

        def on_progress(done: int, total: int | None) -> None:  # download thread
            loop.call_soon_threadsafe(self._on_progress, slot, done, total)

        try:
            self._loading, result = start_thread(lambda: self._load_until_stopped(slot.spec, on_progress),
                                                 f"{LOAD_THREAD_PREFIX}{slot.name}")
            model, encoder = await result
            if slot.spec.name == CLIP_WEIGHTS:
                await self._install_clip(slot, encoder, model)
            else:
                await self._install(slot, model)
        except asyncio.CancelledError:
            raise
        except HarStreamError as err:  # Cancelled included: the server is stopping
            self._fail(slot, err)
            return
        except Exception as err:  # a broken file can make torch raise anything: show it, keep serving others
            log.exception("loading %s failed", slot.name)
            self._fail(slot, ModelError(f"{type(err).__name__}: {err}"))
            return
        slot.status, slot.progress, slot.message = "ready", None, None
        slot.labels, slot.num_labels = model.info.label_set, model.info.num_classes
        log.info("model %s ready in %.1f s (%d labels '%s', %s%s)", slot.name, time.monotonic() - started,
                 model.info.num_classes, model.info.label_set, self.device,
                 ", CLIP fallback on" if slot.fallback else "")

    def _load_until_stopped(self, spec: ModelSpec,
                            on_progress: Callable[[int, int | None], None]) -> tuple[VideoModel, Any]:
        try:
            return self._load_blocking(spec, on_progress)
        except Cancelled:
            log.info("loading of model %s stopped at a safe point: the server is stopping", spec.name)
            raise

    def _load_blocking(self, spec: ModelSpec, on_progress: Callable[[int, int | None], None]) -> tuple[VideoModel, Any]:
        # Between steps: a stop ends the load here (``Cancelled``) rather than tearing torch down under a step.
        check = self._cancel.raise_if_set
        check()
        if spec.weights is not None:
            self.store.files(spec.weights, on_progress=on_progress, progress=False, cancel=self._cancel)
            check()
        if spec.name == CLIP_WEIGHTS:
            encoder = self.backend.load_clip_encoder(self.store, self.device, ClipSource(
                None if spec.weights else Path(spec.load), self.config.prompt), self._options())
            model, extra = encoder.with_labels(load_label_set("kinetics400").labels, "kinetics400"), encoder
        else:
            # on its runtime, compiled below by the warm-up in this thread (local); or a replica's handle (ray)
            model = self.backend.load_model(spec.load, device=self.device, store=self.store, options=self._options())
            extra = None
        check()
        # Here, in the loading thread: `auto` may run the model to decide, and the event loop must not wait.
        precision = resolve_precision(model, self.batch.precision, home=self.store.home).precision
        check()
        warm_up(model, precision)
        return model, extra

    def _options(self) -> ModelOptions:
        c = self.config
        return ModelOptions(device=c.device, runtime=c.runtime, compile=c.compile, precision=c.precision,
                            prompt=c.prompt)

    async def _install(self, slot: ModelSlot, model: VideoModel) -> None:
        worker = ModelWorker(model, self.batch)
        worker.start()
        slot.worker = worker
        if self.clip is not None and self.config.clip_threshold > 0:
            await self._attach_fallback(slot)

    async def _install_clip(self, slot: ModelSlot, encoder: Any, model: VideoModel) -> None:
        # Every view (label set) of CLIP runs at the precision decided for its Kinetics-400 view at load.
        precision = resolve_precision(model, self.batch.precision).precision
        self.clip = ClipViews(encoder, replace(self.batch, precision=precision))
        worker = await self.clip.new_worker(model.info.labels, model.info.label_set)
        slot.worker = worker
        self.clip.add(worker)
        if self.config.clip_threshold > 0:
            for other in self.slots.values():
                if other.worker is not None and other is not slot and other.fallback is None:
                    await self._attach_fallback(other)

    async def _attach_fallback(self, slot: ModelSlot) -> None:
        assert slot.worker is not None and self.clip is not None
        info = slot.worker.info
        worker = await self.clip.new_worker(info.labels, info.label_set, replace(
            self.clip.batch, max_batch=8, queue_size=2 * self.config.max_batch))
        slot.fallback = ClipFallback(worker, self.config.clip_threshold, cache_frames=4 * info.frames)

    def _fail(self, slot: ModelSlot, err: BaseException) -> None:
        if isinstance(err, Cancelled):
            slot.status, slot.progress, slot.message = "error", None, "the server stopped during the load"
            return
        missing = isinstance(err, WeightsMissingError)
        if missing:
            slot.download_failed_at = time.monotonic()
        slot.status = "missing" if missing else "error"
        slot.progress = None
        slot.error = err if isinstance(err, HarStreamError) else None
        slot.message = self._missing_message(slot.spec, err) if missing else str(err)
        level = logging.WARNING if slot.name == self.default or slot.name == CLIP_WEIGHTS else logging.INFO
        log.log(level, "model %s is %s: %s", slot.name, slot.status, slot.message)

    def _missing_message(self, spec: ModelSpec, err: BaseException | None = None) -> str:
        if isinstance(err, WeightsMissingError):
            return str(err)
        how = f"import them with `{spec.import_command}`" if spec.import_command else "check the path"
        if spec.name == "cnn-lstm":
            return f"no CNN-LSTM checkpoint in the cache; train one or {how}, or start with --model FILE.pt"
        pull = "" if self.store.offline else f"choose it to download it, run `har-stream weights pull {spec.name}`, or "
        return f"weights of {spec.name} are not in the cache; {pull}{how}"

    def _on_progress(self, slot: ModelSlot, done: int, total: int | None) -> None:
        previous = slot.progress
        slot.status = "downloading"
        slot.progress = done / total if total else None
        if slot.progress is not None and (previous is None or int(slot.progress * 10) > int(previous * 10)):
            log.info("downloading %s: %.0f%% of %.1f MB", slot.name, 100 * slot.progress, (total or 0) / 1e6)
        if slot.progress is not None and slot.progress >= 1.0:
            slot.status = "loading"


def check_custom_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Free-text labels for CLIP: 1..200 non-empty lines of at most 100 characters, each once."""
    cleaned = tuple(" ".join(str(label).split()) for label in labels)
    if not cleaned or len(cleaned) > MAX_CUSTOM_LABELS:
        raise LabelsError(f"custom_labels needs 1 to {MAX_CUSTOM_LABELS} labels, got {len(cleaned)}")
    for label in cleaned:
        if not label or len(label) > MAX_LABEL_CHARS:
            raise LabelsError(f"custom label {label!r} must be 1 to {MAX_LABEL_CHARS} characters; fix the list")
    return cleaned

