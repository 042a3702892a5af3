"""CLIP on one inference thread, seen through many label lists ("views").

``ClipEncoder`` is not thread-safe (its tokenizer and prompt cache are mutated on use), so every CLIP use —
the fallback of each model, zero-shot over a label set, free-text labels of a peer — is a ``ModelWorker``
view of the same encoder on ONE executor owned here. Views of label lists that peers ask for are shared
and reference-counted; a free-text view closes when its last peer leaves, built-in label sets stay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from har_stream.preprocess import FramePreparer
from har_stream.worker import BatchSettings, ModelWorker


class _View:
    def __init__(self, worker: ModelWorker, permanent: bool) -> None:
        self.worker = worker
        self.users = 0
        self.permanent = permanent


class ClipViews:
    """Owns the CLIP thread and the shared views; ``aclose()`` after every view's users have left."""

    def __init__(self, encoder: Any, batch: BatchSettings) -> None:
        self.encoder = encoder
        self.batch = batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="har-infer-clip")
        self._views: dict[tuple[str, ...], _View] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def new_worker(self, labels: tuple[str, ...], label_set: str,
                         settings: BatchSettings | None = None) -> ModelWorker:
        """A started view over ``labels`` with warm prompt embeddings; the caller owns (and closes) it."""
        model = self.encoder.with_labels(labels, label_set)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.encoder.text_embeddings, labels)
        worker = ModelWorker(model, settings or self.batch, prepare=FramePreparer.for_model(model.info),
                             executor=self.executor)  # CLIP is not thread-safe: every view on our one thread
        worker.start()
        return worker

    def add(self, worker: ModelWorker) -> None:
        """Share an existing view (e.g. CLIP's own Kinetics-400 view) for peers asking for its labels."""
        self._views[worker.info.labels] = _View(worker, permanent=True)

    async def acquire(self, labels: tuple[str, ...], label_set: str,
                      permanent: bool) -> tuple[ModelWorker, Callable[[], None]]:
        """The shared view over ``labels`` (made on first use) and the function that releases it."""
        async with self._lock:
            view = self._views.get(labels)
            if view is None:
                view = self._views[labels] = _View(await self.new_worker(labels, label_set), permanent)
            view.users += 1

        def release() -> None:
            view.users -= 1
            if view.users == 0 and not view.permanent and self._views.get(labels) is view:
                del self._views[labels]
                task = asyncio.get_running_loop().create_task(view.worker.aclose(), name="clip-view-close")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

        return view.worker, release

    @property
    def label_sets(self) -> tuple[tuple[str, ...], ...]:
        return tuple(self._views)

    @property
    def workers(self) -> tuple[ModelWorker, ...]:
        """The shared views (closed by ``aclose``); fallback workers from ``new_worker`` are not among them."""
        return tuple(view.worker for view in self._views.values())

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for view in self._views.values():
            await view.worker.aclose()
        self._views.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
