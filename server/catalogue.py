"""Which models the server can offer, and what is known about each before it loads.

Every registry model is listed (so the page can say which ones are missing and how to get them), plus a
CNN-LSTM checkpoint given as ``--model path.pt``, which then is the default. A model's weights are looked up
in the ``WeightStore`` without hashing anything, so building the catalogue is instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from har_stream.errors import ModelError
from har_stream.models.registry import CLIP_WEIGHTS, is_checkpoint_path, model_entries, model_names
from har_stream.models.torchvision_video import TORCHVISION_MODELS, model_info
from har_stream.weights import WeightStore

@dataclass(frozen=True)
class ModelSpec:
    """One servable model, before loading. ``weights`` is the store entry to fetch first (None: a local path)."""

    name: str
    family: str
    load: str  # what ``load_model`` is given: a registry name or a checkpoint path
    weights: str | None
    labels: str  # label set name, as far as it is known before loading
    num_labels: int
    import_command: str | None  # how to put the weights into the cache by hand


def import_command(store: WeightStore, weights: str) -> str:
    """The exact ``har-stream weights import`` line for a store entry (a folder for multi-file models)."""
    entry = store.manifest.get(weights)
    if entry is None:  # a local checkpoint name such as cnn-lstm: one file
        return f"har-stream weights import {weights} /path/to/checkpoint.pt"
    if len(entry.files) == 1:
        return f"har-stream weights import {weights} /path/to/{entry.files[0].name}"
    return f"har-stream weights import {weights} /path/to/{weights}-dir"


def build_catalogue(store: WeightStore, default: str, clip_dir: str | None) -> tuple[tuple[ModelSpec, ...], str]:
    """All servable models (default first) and the default's name.

    ``default`` is a registry name or a CNN-LSTM checkpoint path; an unknown name or a checkpoint path that
    does not exist is a ``ModelError`` (a typo should stop the server at once, not show up later).
    """
    specs: list[ModelSpec] = []
    default_name = default
    if is_checkpoint_path(default):
        path = Path(default).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"--model {default}: no such checkpoint file; pass an existing .pt file or a model "
                             f"name ({', '.join(model_names())})")
        default_name = path.stem
        if default_name in model_names():
            default_name = f"{path.stem}.pt"  # never shadow a registry name
        specs.append(ModelSpec(default_name, "cnn-lstm", str(path), None, "custom", 0, None))
    elif default not in model_names():
        raise ModelError(f"unknown model {default!r}; choose one of {', '.join(model_names())} or pass a CNN-LSTM "
                         "checkpoint file")
    for entry in model_entries():
        if entry.name in TORCHVISION_MODELS:
            info = model_info(entry.name)
            labels, count = info.label_set, info.num_classes
        elif entry.name == CLIP_WEIGHTS:
            labels, count = "kinetics400", 400
        else:  # cnn-lstm: the seed model is trained in the UCF101 layout; the checkpoint says for sure once loaded
            labels, count = "ucf101", 101
        weights = None if entry.name == CLIP_WEIGHTS and clip_dir else entry.name
        load = clip_dir if weights is None and clip_dir else entry.name
        specs.append(ModelSpec(entry.name, entry.family, load, weights, labels, count,
                               import_command(store, entry.name) if weights else None))
    specs.sort(key=lambda s: s.name != default_name)  # default first: it loads first
    return tuple(specs), default_name


def cached_weights(store: WeightStore) -> frozenset[str]:
    """Store entries whose files are all present (not hashed here; loading verifies them)."""
    return frozenset(row.name for row in store.list() if row.cached)
