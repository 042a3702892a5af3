"""The seed model: a per-frame CNN encoder → 2-layer bidirectional LSTM → attention pooling → classifier.

The encoder runs once per frame (``encode``) and the engine caches its features, so sliding the window by any
stride costs one encoder pass per new frame plus this cheap temporal head (``classify``). Checkpoints are
self-describing: they embed the labels and the config, so ``--model my.pt`` is all a user needs.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..errors import ModelError
from ..fileutil import publish
from ..weights import sha256_file as file_sha256
from .base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from .resampling import SWSCALE_AREA, Resampling

CHECKPOINT_FORMAT = "har-stream/cnn-lstm"
CHECKPOINT_VERSION = 1
ENCODERS = ("resnet18", "tiny")


@dataclass(frozen=True)
class CnnLstmConfig:
    """Architecture and input contract. ``encoder="tiny"`` is a small CNN for tests and quick experiments.

    ``resampling`` is how training prepared its frames; the engine prepares them the same way when it serves
    the checkpoint. Checkpoints from before it was recorded were all prepared with ``SWSCALE_AREA``.
    """

    labels: tuple[str, ...]
    label_set: str = "custom"
    encoder: str = "resnet18"
    hidden: int = 256
    layers: int = 2
    frames: int = 16
    size: tuple[int, int] = (112, 112)
    fps: float = 15.0
    dropout: float = 0.3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resampling: Resampling = SWSCALE_AREA
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ModelError(f"unknown CNN-LSTM encoder {self.encoder!r}; use one of {', '.join(ENCODERS)}")
        if len(self.labels) < 2:
            raise ModelError("a CNN-LSTM needs at least two labels")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CnnLstmConfig:
        d = dict(d)
        for key in ("labels", "size", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        if "resampling" in d:
            if not isinstance(d["resampling"], dict):
                raise ModelError(f"the recorded resampling {d['resampling']!r} is not a table of settings")
            d["resampling"] = Resampling.from_dict(d["resampling"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class TinyEncoder(nn.Module):
    """Three strided convs onto a coarse 8×8 grid, flattened: keeps *where* things are, which motion needs.

    For tests and quick experiments (it learns synthetic motion in seconds on a CPU); ResNet-18 is the
    encoder for real footage.
    """

    out_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((8, 8)), nn.Flatten(),
            nn.Linear(8 * 64, self.out_dim), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(name: str) -> tuple[nn.Module, int]:
    if name == "resnet18":
        net = torchvision.models.resnet18(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    enc = TinyEncoder()
    return enc, enc.out_dim


class AttentionPool(nn.Module):
    """Additive attention over time: the clip is the weighted mean of its frames' LSTM states."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(h).squeeze(-1), dim=1)
        return (h * weights.unsqueeze(-1)).sum(dim=1)


class TemporalHead(nn.Module):
    def __init__(self, feature_dim: int, cfg: CnnLstmConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(feature_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.pool = AttentionPool(2 * cfg.hidden)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * cfg.hidden, len(cfg.labels)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(feats)
        return self.classifier(self.pool(h))


class CnnLstmNet(nn.Module):
    """The trainable network: ``forward`` takes (B, T, 3, H, W) normalised clips (used by training)."""

    def __init__(self, cfg: CnnLstmConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder, self.feature_dim = build_encoder(cfg.encoder)
        self.head = TemporalHead(self.feature_dim, cfg)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        feats = self.encoder(clips.flatten(0, 1)).view(b, t, -1)
        return self.head(feats)


class CnnLstmModel(VideoModel):
    """``CnnLstmNet`` wrapped for the engine: ``encode`` = encoder, ``classify`` = temporal head."""

    def __init__(self, net: CnnLstmNet, device: torch.device, weights_sha256: str | None = None,
                 name: str = "cnn-lstm") -> None:
        cfg = net.cfg
        self.net = net.eval().to(device)
        self.device = device
        if cfg.encoder == "resnet18" or device.type == "cuda":  # the tiny encoder's 3 convs: only where cuDNN is
            self.net.encoder.to(memory_format=torch.channels_last)
        self._encoder: Callable[[torch.Tensor], torch.Tensor] = self.net.encoder  # the heavy call; see with_heavy
        self.info = ModelInfo(
            name=name, family="cnn-lstm", labels=cfg.labels, frames=cfg.frames, fps=cfg.fps,
            resize=cfg.size, crop=cfg.size, mean=cfg.mean, std=cfg.std, label_set=cfg.label_set,
            weights_sha256=weights_sha256, caches_features=True, resampling=cfg.resampling,
        )

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.normalise(frames).contiguous(memory_format=torch.channels_last)
        return self._encoder(x)

    def with_heavy(self, run: Callable[[torch.Tensor], torch.Tensor]) -> CnnLstmModel:
        """This model (same weights, same device) with its frame encoder called through ``run`` (e.g. compiled)."""
        other = copy.copy(self)
        other._encoder = run
        return other

    @torch.inference_mode()
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net.head(windows.to(self.device))


def save_checkpoint(net: CnnLstmNet, path: Path, *, metrics: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a self-describing checkpoint (labels + config embedded) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": net.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "metrics": dict(metrics or {}),
        **(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and check a checkpoint's envelope; every failure is a one-line ``ModelError``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no such checkpoint file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a non-checkpoint file
        raise ModelError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}); "
                         "pass a checkpoint written by har-stream's CNN-LSTM trainer") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a har-stream CNN-LSTM checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    return payload


def _state_dict_problem(err: RuntimeError) -> str:
    """The first concrete complaint of ``load_state_dict`` (its first line is only a generic header)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    details = lines[1:] or lines or ["unknown mismatch"]
    more = f" and {len(details) - 1} more" if len(details) > 1 else ""
    return details[0].rstrip(".")[:300] + more


def load_cnn_lstm(path: Path, device: torch.device, *, name: str = "cnn-lstm",
                  sha256: str | None = None) -> CnnLstmModel:
    """``sha256``: the digest the weight store already checked; computed from the file when not given."""
    payload = read_checkpoint(path)
    config, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ModelError(f"{path} is a damaged CNN-LSTM checkpoint (no config or state_dict); "
                         "use an intact copy or retrain the model")
    try:
        net = CnnLstmNet(CnnLstmConfig.from_dict(config))
    except ModelError as err:
        raise ModelError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ModelError(f"{path}: its config cannot build a CNN-LSTM ({err}); "
                         "use an intact copy or retrain the model") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"{path}: weights do not fit the CNN-LSTM config ({_state_dict_problem(err)}); "
                         "the file is damaged or was edited: use an intact copy or retrain") from None
    return CnnLstmModel(net, device, weights_sha256=sha256 or file_sha256(path), name=name)
