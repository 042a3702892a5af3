"""What a training run is (``TrainSettings``: must not change on ``--resume``) and how it runs (``RunOptions``).

Defaults follow the original design: an ImageNet ResNet-18 frame encoder, 16 frames at 15 fps and 112×112 (the
engine's window), about 20 epochs on frozen-encoder features, then fine-tuning of the whole network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..models.cnn_lstm import ENCODERS
from ..models.resampling import TRAINING_CHOICES, Resampling, training_resampling

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainSettings:
    encoder: str = "resnet18"
    pretrained: bool = True  # ImageNet weights for resnet18, from the weight store (`resnet18-imagenet`)
    frames: int = 16
    fps: float = 15.0
    size: int = 112
    resample: str = "area"  # how frames are resized (models/resampling.py); recorded in the checkpoint
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.3
    epochs: int = 20  # stage 1: frozen encoder, head trained on cached features
    fine_tune_epochs: int = 5  # stage 2: the whole network, on augmented frames
    batch_size: int = 32
    lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    weight_decay: float = 1e-4
    clips_per_video: int = 1  # random windows drawn from each training video per epoch
    stride: int = 8  # between validation windows, as the engine's default
    val_fraction: float = 0.1  # of the training groups, held out to pick the best epoch
    flip: bool = True
    crop_area: float = 0.8
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"--encoder must be one of {', '.join(ENCODERS)} (got {self.encoder!r})")
        if self.pretrained and self.encoder != "resnet18":
            raise ConfigError(f"--pretrained needs the resnet18 encoder; the {self.encoder} encoder starts from "
                              "random weights (add --no-pretrained)")
        positive = {"frames": self.frames, "size": self.size, "hidden": self.hidden, "layers": self.layers,
                    "batch-size": self.batch_size, "clips-per-video": self.clips_per_video, "stride": self.stride}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} must be at least 1 (got {value})")
        if self.epochs < 0 or self.fine_tune_epochs < 0 or self.epochs + self.fine_tune_epochs < 1:
            raise ConfigError("--epochs and --fine-tune-epochs must be 0 or more, and not both 0")
        if self.fps <= 0 or self.lr <= 0 or self.fine_tune_lr <= 0 or self.weight_decay < 0:
            raise ConfigError("--fps, --lr and --fine-tune-lr must be positive and --weight-decay not negative")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if not 0.0 < self.crop_area <= 1.0:
            raise ConfigError(f"--crop-area must be in (0, 1] (got {self.crop_area})")
        if self.resample not in TRAINING_CHOICES:
            raise ConfigError(f"--resample must be one of {', '.join(TRAINING_CHOICES)} (got {self.resample!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")

    @property
    def resampling(self) -> Resampling:
        return training_resampling(self.resample)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune_epochs

    def stage(self, epoch: int) -> int:
        """1 (frozen encoder) or 2 (fine-tuning) for a 1-based epoch."""
        return 1 if epoch <= self.epochs else 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def differences(self, other: TrainSettings) -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {a[k]!r} → {b[k]!r}" for k in a if a[k] != b[k]]


@dataclass(frozen=True)
class RunOptions:
    """How to run, free to change between a run and its ``--resume``."""

    device: str = "auto"
    workers: int | None = None  # DataLoader processes for fine-tuning (0: in this process; None: 0 on CPU, else 8)
    jobs: int = 2  # clips decoded at once while filling the frame cache
    stop_after: int | None = None  # stop after this epoch (continue later with --resume)
    progress: bool = False

    def __post_init__(self) -> None:
        if (self.workers is not None and self.workers < 0) or self.jobs < 1:
            raise ConfigError("--workers must be 0 or more and --jobs at least 1")
        if self.stop_after is not None and self.stop_after < 1:
            raise ConfigError(f"--stop-after must be at least 1 (got {self.stop_after})")
