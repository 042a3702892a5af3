"""The one interface every model family implements.

The engine splits every model into two calls so per-frame work is done once per frame:

* ``encode(frames)`` turns N preprocessed frames into N per-frame features. For frame-level models
  (CNN-LSTM, CLIP) these are embeddings and the ring buffer caches them, so a window at any stride costs
  one encoder pass per *new* frame. For clip models (3D CNNs, MViT) the "feature" is the normalised frame
  itself and all the work happens in ``classify``.
* ``classify(features)`` turns B windows of T features into B rows of logits.

Both run on the model's inference thread (see ``batcher.py``), never on the event loop.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from .resampling import SWSCALE_AREA, Resampling

Size = tuple[int, int]  # (height, width)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """Everything the engine needs to know about a model; nothing about a model is hard-coded elsewhere.

    ``resize`` follows torchvision's convention: an ``int`` scales the short side to it (aspect kept), a
    ``(h, w)`` pair scales to exactly that. ``crop`` is then a centre crop. Frames reach ``encode`` as
    uint8 RGB tensors of shape (N, crop_h, crop_w, 3). ``resampling`` says how the resize and the crop are
    done, so that frames match the model's reference transform (see ``resampling.py``).
    """

    name: str
    family: str
    labels: tuple[str, ...]
    frames: int
    fps: float
    resize: int | Size
    crop: Size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label_set: str
    weights_sha256: str | None = None
    caches_features: bool = True  # True when encode() output is a compact embedding worth caching
    resampling: Resampling = SWSCALE_AREA

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class VideoModel(abc.ABC):
    """A loaded model on a device. Not thread-safe: one inference thread owns it."""

    info: ModelInfo
    device: torch.device

    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB at ``info.crop`` → (N, ...) per-frame features on ``self.device``."""

    @abc.abstractmethod
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) stacked features of ``encode`` → (B, num_classes) logits."""

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) → float (N, 3, H, W) normalised with the model's mean/std, on the device."""
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        stats = getattr(self, "_norm_stats", None)
        if stats is None or stats[0].device != x.device:  # made once per model, not once per batch
            stats = tuple(torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in (self.info.mean, self.info.std))
            self._norm_stats = stats
        return x.sub_(stats[0]).div_(stats[1])


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error, not a crash."""
    from ..errors import ConfigError

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ConfigError(f"unknown device {requested!r}; use cpu, cuda or auto")
    return torch.device(requested)
