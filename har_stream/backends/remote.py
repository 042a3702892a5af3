"""A ``VideoModel`` whose networks run elsewhere: what a front end holds under ``--backend ray``.

What crosses the network is kept small. Frames are resized and cropped at the edge (the front end's decode
threads, as for a local model) and go as uint8 at the model's input size. A frame-level model (CNN-LSTM, CLIP)
sends each frame once and gets its feature back (the ring buffer caches it, so overlapping windows cost
nothing more), then sends a window's features (floats, a few KB) for the temporal head's logits. A clip model
(the 3D CNNs) does nothing per frame: ``encode`` keeps the uint8 frame here and ``classify`` sends the window
once. CLIP's text side runs remotely once per label set; the zero-shot dot product is done here.

Probabilities (softmax), top-5, smoothing and the fallback stay in the front end's unchanged code, so labels
are the same as with the local backend given the same logits.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models.base import ModelInfo, VideoModel
from ..models.clip_zero_shot import TEXT_CACHE_SETS, ClipZeroShotModel
from ..precision import PrecisionChoice

Call = Callable[..., Any]  # call(method, *args) -> the replica's answer; raises BackendError when it cannot


def _tensor(array: np.ndarray) -> torch.Tensor:
    """An answer as a tensor; Ray hands arrays out of its object store read-only, so those are copied."""
    return torch.from_numpy(np.require(array, requirements="W"))


@dataclass
class WireStats:
    """What crossed the network for one model (the bench's bytes per stream per second)."""

    calls: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    retries: int = 0  # calls sent again after a failure (a replica died, a timeout)
    failures: int = 0  # calls that failed even after the retries


def _remote_precision() -> PrecisionChoice:
    # Autocast here would change nothing (no network runs here); the replica applies its own precision.
    return PrecisionChoice("fp32", "the network runs on a Ray Serve replica, at the replica's precision")


class RemoteModel(VideoModel):
    """``encode``/``classify`` as calls to a replica. Called on the worker's one inference thread."""

    runtime = "ray"  # --compile and --runtime are the replica's business (with_compile logs and skips)

    def __init__(self, call: Call, info: ModelInfo, stats: WireStats) -> None:
        self.call = call
        self.info = info
        self.stats = stats
        self.device = torch.device("cpu")
        self._auto_precision = _remote_precision()

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if not self.info.caches_features:
            return frames  # a clip model's window is sent once, in classify
        return _tensor(self.call("encode", np.ascontiguousarray(frames.numpy())))

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        method = "classify" if self.info.caches_features else "classify_clip"
        return _tensor(self.call(method, np.ascontiguousarray(windows.cpu().numpy())))


class RemoteClipEncoder:
    """The front end's face of a CLIP replica, shaped like ``ClipEncoder`` for ``ClipViews`` and the fallback."""

    def __init__(self, call: Call, image_info: ModelInfo, logit_scale: float, prompt: str, stats: WireStats) -> None:
        self.call = call
        self.image_info = image_info
        self.logit_scale = logit_scale
        self.prompt = prompt
        self.stats = stats
        self.device = torch.device("cpu")
        self._text_cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    def cuda_stream(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def text_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """(L, D) prompt embeddings, from the replica once per label set (same LRU bound as ``ClipEncoder``)."""
        key = tuple(labels)
        cached = self._text_cache.get(key)
        if cached is None:
            cached = self._text_cache[key] = _tensor(self.call("text_embeddings", key))
            while len(self._text_cache) > TEXT_CACHE_SETS:
                self._text_cache.popitem(last=False)
        self._text_cache.move_to_end(key)
        return cached

    def with_labels(self, labels: Sequence[str], label_set: str) -> RemoteClipModel:
        return RemoteClipModel(self, labels, label_set)  # type: ignore[arg-type]


class RemoteClipModel(ClipZeroShotModel):
    """CLIP over a label set: image embeddings from the replica, the zero-shot scores here."""

    runtime = "ray"

    def __init__(self, encoder: RemoteClipEncoder, labels: Sequence[str], label_set: str) -> None:
        super().__init__(encoder, labels, label_set)  # type: ignore[arg-type]
        self._auto_precision = _remote_precision()

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        encoder: RemoteClipEncoder = self.encoder  # type: ignore[assignment]
        return _tensor(encoder.call("encode", np.ascontiguousarray(frames.numpy())))
