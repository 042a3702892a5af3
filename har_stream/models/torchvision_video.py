"""torchvision's Kinetics-400 clip models (S3D, R(2+1)D, R3D, MC3, MViT-V2-S, Swin3D-T) behind ``VideoModel``.

Everything about a model's input comes from torchvision's own ``*_Weights.KINETICS400_V1`` enum: the 400
categories (in torchvision's order), resize/crop/interpolation/mean/std from its ``VideoClassification``
transform, whose resize is hard-coded to ``antialias=False`` and whose crop rounds its margin (so frames are
prepared with ``TORCHVISION_VIDEO`` resampling and match the preset's output bit for bit). Only
the window (frames, fps) is chosen here, from the evaluation settings torchvision documents for each
weight (``meta["_docs"]``): clips are sampled at ``frame_rate=15`` (MViT: 7.5) with ``clip_len=16`` (Swin3D:
32). S3D is documented at ``clip_len=128``, which is 8.5 s of video and far too long for live use; it runs at
16 frames here (its minimum is ``meta["min_temporal_size"]`` = 14).

These are clip models: ``encode`` only normalises each frame (once; the ring buffer keeps the result) and
all the work happens per window in ``classify``. The architecture is built with ``weights=None`` and loaded
from a local file, so torchvision never downloads anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models import video as tvv

from ..errors import ModelError
from ..weights import sha256_file
from .base import ModelInfo, Size, VideoModel
from .resampling import TORCHVISION_VIDEO


@dataclass(frozen=True)
class TorchvisionSpec:
    """One registry entry. ``channels_last_3d``: measured faster on CPU (the conv nets), slower for the
    transformers (2 vCPUs, batch 4, 16 frames: r3d-18 1.10 → 0.90 s/clip, r2plus1d-18 1.85 → 1.45 s/clip;
    swin3d-t 2.4 → 5.1 s/clip, mvit-v2-s 7.4 → 7.8 s/clip; s3d ≈ equal to 2× faster, noisy). The conv nets use
    it on CUDA too, where cuDNN's channels-last 3D convolutions are its tensor-core kernels in fp16/bf16 (not yet
    measured on a card: no GPU was lent)."""

    builder: Callable[..., nn.Module]
    weights: WeightsEnum
    frames: int
    fps: float
    channels_last_3d: bool
    description: str


_SPECS: Mapping[str, TorchvisionSpec] = MappingProxyType({
    "s3d": TorchvisionSpec(tvv.s3d, tvv.S3D_Weights.KINETICS400_V1, 16, 15.0, True,
                           "S3D (separable 3D CNN), Kinetics-400, 16 frames at 224x224"),
    "r2plus1d-18": TorchvisionSpec(tvv.r2plus1d_18, tvv.R2Plus1D_18_Weights.KINETICS400_V1, 16, 15.0, True,
                                   "R(2+1)D-18, Kinetics-400, 16 frames at 112x112"),
    "r3d-18": TorchvisionSpec(tvv.r3d_18, tvv.R3D_18_Weights.KINETICS400_V1, 16, 15.0, True,
                              "R3D-18 (3D ResNet), Kinetics-400, 16 frames at 112x112"),
    "mc3-18": TorchvisionSpec(tvv.mc3_18, tvv.MC3_18_Weights.KINETICS400_V1, 16, 15.0, True,
                              "MC3-18 (mixed 3D/2D ResNet), Kinetics-400, 16 frames at 112x112"),
    "mvit-v2-s": TorchvisionSpec(tvv.mvit_v2_s, tvv.MViT_V2_S_Weights.KINETICS400_V1, 16, 7.5, False,
                                 "MViT V2-S (multiscale vision transformer), Kinetics-400, 16 frames at 224x224"),
    "swin3d-t": TorchvisionSpec(tvv.swin3d_t, tvv.Swin3D_T_Weights.KINETICS400_V1, 32, 15.0, False,
                                "Video Swin Transformer T, Kinetics-400, 32 frames at 224x224"),
})

TORCHVISION_MODELS: Mapping[str, str] = MappingProxyType({name: s.description for name, s in _SPECS.items()})


def spec_of(name: str) -> TorchvisionSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ModelError(f"unknown torchvision video model {name!r}; use one of {', '.join(_SPECS)}") from None


def _triple(values: list[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


def model_info(name: str, weights_sha256: str | None = None) -> ModelInfo:
    """The input contract of ``name``, read from torchvision's weight metadata (no weights needed)."""
    spec = spec_of(name)
    preset = spec.weights.transforms()
    resize: int | Size
    if len(preset.resize_size) == 1:  # torchvision: one number scales the short side
        resize = int(preset.resize_size[0])
    else:
        resize = (int(preset.resize_size[0]), int(preset.resize_size[1]))
    crop = (int(preset.crop_size[0]), int(preset.crop_size[1]))
    interpolation = getattr(preset.interpolation, "value", str(preset.interpolation))
    if interpolation != TORCHVISION_VIDEO.filter:  # a new torchvision preset: fail loudly, never resample silently
        raise ModelError(f"{name}: torchvision's preset resizes with {interpolation!r}, which har-stream does not "
                         "reproduce yet")
    return ModelInfo(
        name=name, family="torchvision", labels=tuple(spec.weights.meta["categories"]),
        frames=spec.frames, fps=spec.fps, resize=resize, crop=crop,
        mean=_triple(preset.mean), std=_triple(preset.std),
        label_set="kinetics400", weights_sha256=weights_sha256, caches_features=False,
        resampling=TORCHVISION_VIDEO,
    )


class TorchvisionVideoModel(VideoModel):
    """A torchvision clip network: ``encode`` normalises frames, ``classify`` runs (B, 3, T, H, W)."""

    def __init__(self, net: nn.Module, info: ModelInfo, device: torch.device, channels_last_3d: bool) -> None:
        self.info = info
        self.device = device
        self._memory_format = memory_format(channels_last_3d)
        self.net = net.eval().to(device, memory_format=self._memory_format)
        self._run: Callable[[torch.Tensor], torch.Tensor] = self.net  # the heavy call; see with_heavy

    def with_heavy(self, run: Callable[[torch.Tensor], torch.Tensor]) -> TorchvisionVideoModel:
        """This model (same weights, same device) with its network called through ``run`` (e.g. compiled)."""
        other = copy.copy(self)
        other._run = run
        return other

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.normalise(frames)

    @torch.inference_mode()
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        clips = windows.to(self.device).permute(0, 2, 1, 3, 4)  # (B, T, 3, H, W) → (B, 3, T, H, W)
        return self._run(clips.contiguous(memory_format=self._memory_format))


def memory_format(channels_last_3d: bool) -> torch.memory_format:
    """The weights' and clips' layout, on every device (see ``TorchvisionSpec``)."""
    return torch.channels_last_3d if channels_last_3d else torch.contiguous_format


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"no such weights file: {path}; fetch it with `har-stream weights pull` or "
                         "`har-stream weights import`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise ModelError(f"{path} is not a readable PyTorch weights file ({type(err).__name__}); "
                         "fetch it again with `har-stream weights pull`") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no plain state dict (tensors by name); pass torchvision's published "
                         ".pth file")
    return state


def _mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """A short description of why ``state`` does not fit, or "" when it does."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = f"e.g. missing {missing[0]!r}" if missing else f"e.g. unexpected {unexpected[0]!r}"
        return f"{len(missing)} keys missing, {len(unexpected)} unexpected, {example}"
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"{key!r} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
    return ""


def load_torchvision_video(name: str, weights_file: Path, device: torch.device,
                           sha256: str | None = None) -> TorchvisionVideoModel:
    """Build ``name`` without weights, load ``weights_file`` into it, and put it in eval mode on ``device``.

    ``sha256`` is the file's hash as already checked by the weight store; when ``None`` it is computed here
    so the result always names the exact weights it runs.
    """
    spec = spec_of(name)
    weights_file = Path(weights_file)
    state = _read_state_dict(weights_file)
    net = spec.builder(weights=None)
    problem = _mismatch(net.state_dict(), state)
    if problem:
        raise ModelError(f"{weights_file}: weights do not fit {name} ({problem}); "
                         f"use torchvision's published {name} file (`har-stream weights pull {name}`)")
    net.load_state_dict(state)
    info = model_info(name, sha256 if sha256 is not None else sha256_file(weights_file))
    return TorchvisionVideoModel(net, info, device, spec.channels_last_3d)


def untrained_torchvision_video(name: str, device: torch.device, seed: int = 0) -> TorchvisionVideoModel:
    """``name`` with seeded random weights: for speed figures and input checks where no weights can be had."""
    spec = spec_of(name)
    torch.manual_seed(seed)
    return TorchvisionVideoModel(spec.builder(weights=None), model_info(name), device, spec.channels_last_3d)
