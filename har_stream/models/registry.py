"""Load a model by name (or checkpoint path): the one place that knows which family serves which name.

Families live one per module; this registry only maps names onto them and fetches their weights through the
``WeightStore`` (hash-checked, downloaded or imported), so nothing else needs to know where files come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from ..labels import DEFAULT_PROMPT, LabelSet, load_label_set
from ..weights import WeightStore
from .base import VideoModel
from .torchvision_video import TORCHVISION_MODELS

DEFAULT_MODEL = "s3d"
CLIP_WEIGHTS = "clip"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str


def model_entries() -> tuple[ModelEntry, ...]:
    entries = [ModelEntry("cnn-lstm", "cnn-lstm",
                          "ResNet-18 → 2-layer BiLSTM → attention; a checkpoint you trained or imported")]
    entries += [ModelEntry(name, "torchvision", desc) for name, desc in TORCHVISION_MODELS.items()]
    entries.append(ModelEntry("clip", "clip", "CLIP ViT-B/32 zero-shot over any label set"))
    return tuple(entries)


def model_names() -> tuple[str, ...]:
    return tuple(e.name for e in model_entries())


def _single_file(store: WeightStore, name: str) -> tuple[Path, str | None]:
    files = store.files(name)
    if len(files) != 1:
        raise ModelError(f"weights of {name} should be one file, found {len(files)}")
    return next(iter(files.values())), store.sha256_of(name)


@dataclass(frozen=True)
class ClipSource:
    """Where CLIP comes from: a local directory, or the weight store's ``clip`` entry."""

    directory: Path | None = None
    prompt: str = DEFAULT_PROMPT


def load_clip_encoder(store: WeightStore, device: torch.device, source: ClipSource = ClipSource()):
    from .clip_zero_shot import load_clip

    if source.directory is not None:
        return load_clip(Path(source.directory), device, prompt=source.prompt)
    return load_clip(store.directory(CLIP_WEIGHTS), device, prompt=source.prompt, sha256=store.sha256_of(CLIP_WEIGHTS))


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint_path(spec: str) -> bool:
    """A ``--model`` value that names a CNN-LSTM checkpoint file rather than a registry model."""
    path = Path(spec).expanduser()
    return spec not in model_names() and (path.suffix in CHECKPOINT_SUFFIXES or path.exists())


def load_model(spec: str, *, device: torch.device, store: WeightStore, labels: LabelSet | None = None,
               clip: ClipSource = ClipSource()) -> VideoModel:
    """``spec`` is a registry name or a path to a CNN-LSTM checkpoint file."""
    from .cnn_lstm import load_cnn_lstm

    path = Path(spec).expanduser()
    if is_checkpoint_path(spec):
        return load_cnn_lstm(path, device, name=path.stem)
    if spec == "cnn-lstm":
        file, sha = _single_file(store, "cnn-lstm")
        return load_cnn_lstm(file, device, sha256=sha)
    if spec in TORCHVISION_MODELS:
        from .torchvision_video import load_torchvision_video

        file, sha = _single_file(store, spec)
        return load_torchvision_video(spec, file, device, sha256=sha)
    if spec == "clip":
        label_set = labels or load_label_set("kinetics400")
        return load_clip_encoder(store, device, clip).with_labels(label_set.labels, label_set.name)
    raise ModelError(f"unknown model {spec!r}; choose one of {', '.join(model_names())} "
                     "or pass a CNN-LSTM checkpoint file")
