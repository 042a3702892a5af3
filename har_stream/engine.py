"""Load what a run needs — primary model, optional CLIP fallback — from user-facing options.

Shared by the CLI and the server so both resolve names, label sets and fallbacks the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, WeightsError
from .labels import DEFAULT_PROMPT, LabelSet, check_prompt, load_label_set
from .models.base import VideoModel, pick_device
from .backends.base import InferenceBackend, LocalBackend, ModelOptions
from .models.registry import ClipSource
from .runtime import check_runtime
from .types import ModelRef
from .weights import WeightStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    model: str = "s3d"
    labels: str | None = None
    clip_threshold: float = 0.4
    clip_model: str | None = None  # a local CLIP directory; default: the weight store's `clip`
    prompt: str = DEFAULT_PROMPT
    device: str = "auto"
    runtime: str = "auto"  # where the primary model's heavy network runs (runtime.py); CLIP stays on torch

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        if not 0.0 <= self.clip_threshold <= 1.0:
            raise ConfigError(f"--clip-threshold must be between 0 and 1 (got {self.clip_threshold})")
        check_prompt(self.prompt)


@dataclass(frozen=True)
class LoadedModels:
    primary: VideoModel
    fallback: VideoModel | None
    ref: ModelRef
    notices: tuple[str, ...]


def load_models(choice: ModelChoice, store: WeightStore | None = None,
                backend: InferenceBackend | None = None) -> LoadedModels:
    """Primary model + CLIP fallback. A label set the primary cannot predict makes CLIP the primary.

    A fallback that cannot be loaded (e.g. CLIP weights missing offline) is a notice, not an error: the
    primary model still answers. ``backend``: where the models run (``backends/``; default: this process).
    """
    store = store or WeightStore()
    backend = backend or LocalBackend()
    device: torch.device = pick_device(choice.device) if backend.name == "local" else torch.device("cpu")
    labels: LabelSet | None = load_label_set(choice.labels) if choice.labels else None
    clip = ClipSource(Path(choice.clip_model) if choice.clip_model else None, choice.prompt)
    options = ModelOptions(device=choice.device, runtime=choice.runtime, prompt=choice.prompt)
    notices: list[str] = []
    primary = backend.load_model(choice.model, device=device, store=store, options=options, labels=labels, clip=clip)
    if labels is not None and primary.info.family != "clip" and labels.labels != primary.info.labels:
        notices.append(f"{primary.info.name} does not predict the '{labels.name}' labels; "
                       "using CLIP zero-shot over them (open vocabulary)")
        primary = backend.load_model("clip", device=device, store=store, options=options, labels=labels, clip=clip)
    fallback = None
    if choice.clip_threshold > 0 and primary.info.family != "clip":
        try:
            encoder = backend.load_clip_encoder(store, device, clip, options)
            fallback = encoder.with_labels(primary.info.labels, primary.info.label_set)
        except WeightsError as err:
            notices.append(f"CLIP fallback is off: {err}")
    ref = ModelRef(name=primary.info.name, weights_sha256=primary.info.weights_sha256,
                   labels=primary.info.label_set, fallback=fallback.info.name if fallback else None)
    return LoadedModels(primary, fallback, ref, tuple(notices))
