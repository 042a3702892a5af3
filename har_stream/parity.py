"""Engine vs reference: the same frames through the engine's preparer and through each model's reference transform.

``har-stream models check`` and the parity tests use this to show, on a user's own clip and weights, that the
engine feeds a model exactly what its reference implementation would:

* torchvision's Kinetics models: ``*_Weights.KINETICS400_V1.transforms()`` on frames decoded as torchvision
  users decode them (``frame.to_ndarray(format="rgb24")``), then the network;
* CLIP: the transformers image processor saved with the model, then the image encoder;
* a CNN-LSTM checkpoint: the training pipeline's decode (``datasets.decode``) and the training network's
  ``forward``, so what the checkpoint learnt on is what it is served.

Input differences are in grey levels (0–255) after undoing each reference's normalisation; logit differences
are absolute, beside the spread of the logits so a reader can judge them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, ModelError
from .models.base import ModelInfo, VideoModel
from .preprocess import FramePreparer
from .sources import AvSource

INPUT_MEAN_BOUND = 1.0  # grey levels: what the issue of record asks of every model
INPUT_P99_BOUND = 3.0
LOGIT_TOLERANCE = 1e-3  # of the logits' spread (at least 1): what float32 reordering can explain, nothing more


@dataclass(frozen=True)
class InputDiff:
    """|engine − reference| over every pixel and channel of some frames, in grey levels."""

    mean: float
    p99: float
    max: float

    @classmethod
    def between(cls, engine: np.ndarray, reference: np.ndarray) -> InputDiff:
        diff = np.abs(engine.astype(np.float64) - reference.astype(np.float64))
        return cls(float(diff.mean()), float(np.percentile(diff, 99)), float(diff.max()))

    @property
    def within_bounds(self) -> bool:
        return self.mean <= INPUT_MEAN_BOUND and self.p99 <= INPUT_P99_BOUND


@dataclass(frozen=True)
class WindowCheck:
    start: float  # seconds, the window's first frame
    input: InputDiff
    logit_max_diff: float
    logit_spread: float  # max − min of the reference logits
    top1_engine: str
    top1_reference: str


@dataclass(frozen=True)
class ParityReport:
    model: str
    reference: str
    resampling: str
    frame_size: tuple[int, int]  # the clip's (width, height)
    frames: int
    input: InputDiff  # every compared frame
    windows: tuple[WindowCheck, ...]

    @property
    def top1_agree(self) -> int:
        return sum(w.top1_engine == w.top1_reference for w in self.windows)

    @property
    def logits_match(self) -> bool:
        return all(w.logit_max_diff <= LOGIT_TOLERANCE * max(1.0, w.logit_spread) for w in self.windows)

    @property
    def ok(self) -> bool:
        return self.input.within_bounds and self.logits_match


@dataclass(frozen=True)
class _Sampled:
    engine: np.ndarray  # (N, h, w, 3) uint8, what the engine's preparer made
    rgb: list[np.ndarray]  # the same frames as (H, W, 3) RGB at their own size, decoded as the reference decodes
    pts: np.ndarray
    size: tuple[int, int]


async def _sample(path: Path, info: ModelInfo, limit: int) -> _Sampled:
    """Frames at the model's rate through the engine's own source and preparer (stops after ``limit``)."""
    source = AvSource(path, sample_fps=info.fps, prepare=FramePreparer.for_model(info), policy="block")
    engine, rgb, pts = [], [], []
    async with source:
        await source.open()
        async for decoded in source.frames():
            assert decoded.image is not None
            engine.append(decoded.image)
            rgb.append(decoded.frame.to_ndarray(format="rgb24"))
            pts.append(decoded.pts)
            if len(engine) >= limit:
                break
    if not engine:
        raise InputError(f"{path}: no frames could be decoded; give a video file")
    return _Sampled(np.stack(engine), rgb, np.asarray(pts), (rgb[0].shape[1], rgb[0].shape[0]))


def grey_levels(normalised: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N, 3, H, W) normalised → (N, H, W, 3) grey levels, undoing ``(x / 255 − mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    return ((normalised.double() * s + m) * 255.0).permute(0, 2, 3, 1).numpy()


class _Reference:
    """One family's reference: ``inputs`` (the model's normalised frames) and ``logits`` of a window of them;
    ``mean``/``std`` are the reference's own normalisation, used to turn its inputs back into grey levels."""

    name = ""
    mean: Sequence[float] = ()
    std: Sequence[float] = ()

    def inputs(self, sampled: _Sampled) -> torch.Tensor:  # (N, 3, H, W) normalised
        raise NotImplementedError

    def logits(self, model: VideoModel, window: torch.Tensor) -> torch.Tensor:  # (T, 3, H, W) → (classes,)
        raise NotImplementedError


class _TorchvisionReference(_Reference):
    """Needs no network for its inputs: the transform comes from the weights enum alone."""

    def __init__(self, info: ModelInfo) -> None:
        from .models.torchvision_video import spec_of

        self.weights = spec_of(info.name).weights
        self.transform = self.weights.transforms()
        self.mean, self.std = self.transform.mean, self.transform.std
        self.name = f"torchvision {type(self.weights).__name__}.KINETICS400_V1.transforms()"

    def inputs(self, sampled: _Sampled) -> torch.Tensor:
        video = torch.from_numpy(np.stack(sampled.rgb)).permute(0, 3, 1, 2)  # (T, C, H, W), as read_video gives
        return self.transform(video).permute(1, 0, 2, 3)  # (C, T, h, w) → (T, C, h, w)

    @torch.inference_mode()
    def logits(self, model: VideoModel, window: torch.Tensor) -> torch.Tensor:
        net = model.net  # type: ignore[attr-defined]
        return net(window.permute(1, 0, 2, 3).unsqueeze(0).contiguous().to(model.device))[0].float().cpu()


class _ClipReference(_Reference):
    def __init__(self, model: VideoModel) -> None:
        self.encoder = model.encoder  # type: ignore[attr-defined]
        self.processor = self.encoder.image_processor
        self.mean, self.std = self.processor.image_mean, self.processor.image_std
        self.name = f"transformers {type(self.processor).__name__}"

    def inputs(self, sampled: _Sampled) -> torch.Tensor:
        return self.processor(images=sampled.rgb, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def logits(self, model: VideoModel, window: torch.Tensor) -> torch.Tensor:
        embeddings = self.encoder.image_embeddings(window.to(model.device))
        return model.classify(embeddings.unsqueeze(0))[0].float().cpu()


class _CnnLstmReference(_Reference):
    """The training pipeline: ``datasets.decode`` frames (its own decode of the file) and ``CnnLstmNet.forward``."""

    def __init__(self, info: ModelInfo, path: Path) -> None:
        self.info = info
        self.path = path
        self.mean, self.std = info.mean, info.std  # recorded in the checkpoint, as training used
        self.name = "har-stream training pipeline (datasets.decode + CnnLstmNet.forward)"

    def inputs(self, sampled: _Sampled) -> torch.Tensor:
        from .datasets.decode import FrameSpec, decode_clip

        info = self.info
        clip = asyncio.run(decode_clip(self.path, FrameSpec(info.fps, info.resize, info.crop, info.resampling)))
        frames = torch.from_numpy(clip.frames[:len(sampled.engine)]).permute(0, 3, 1, 2).float().div(255.0)
        mean = torch.tensor(info.mean).view(1, 3, 1, 1)
        std = torch.tensor(info.std).view(1, 3, 1, 1)
        return (frames - mean) / std

    @torch.inference_mode()
    def logits(self, model: VideoModel, window: torch.Tensor) -> torch.Tensor:
        net = model.net  # type: ignore[attr-defined]
        return net(window.unsqueeze(0).to(model.device))[0].float().cpu()


def _reference_for(model: VideoModel, path: Path) -> _Reference:
    family = model.info.family
    if family == "torchvision":
        return _TorchvisionReference(model.info)
    if family == "clip":
        return _ClipReference(model)
    if family == "cnn-lstm":
        return _CnnLstmReference(model.info, path)
    raise ModelError(f"no reference implementation is known for {model.info.name} (family {family!r})")


def _compare(sampled: _Sampled, reference: _Reference) -> tuple[torch.Tensor, np.ndarray, int]:
    """The reference's normalised inputs, them in grey levels, and how many frames both sides have."""
    ref_inputs = reference.inputs(sampled)
    ref_levels = grey_levels(ref_inputs, reference.mean, reference.std)
    return ref_inputs, ref_levels, min(len(sampled.engine), len(ref_levels))


def check_torchvision_inputs(info: ModelInfo, path: Path, frames: int = 16) -> InputDiff:
    """Input parity alone for a torchvision model: no network, no weights (the transform is the weights')."""
    sampled = asyncio.run(_sample(Path(path), info, frames))
    _, ref_levels, n = _compare(sampled, _TorchvisionReference(info))
    if n < frames:
        raise InputError(f"{path}: only {n} frames at {info.fps:g} fps; {frames} were asked for")
    return InputDiff.between(sampled.engine[:n], ref_levels[:n])


@torch.inference_mode()
def check_model(model: VideoModel, path: Path, *, windows: int = 2, stride: int | None = None) -> ParityReport:
    """Run ``windows`` windows of ``path`` through the engine and through ``model``'s reference; compare both."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}; give a video file")
    info = model.info
    stride = stride or info.frames
    if windows < 1 or stride < 1:
        raise ModelError("--windows and --stride must be at least 1")
    sampled = asyncio.run(_sample(path, info, info.frames + (windows - 1) * stride))
    reference = _reference_for(model, path)
    ref_inputs, ref_levels, n = _compare(sampled, reference)
    if n < info.frames:
        raise InputError(f"{path}: only {n} frames at {info.fps:g} fps; {info.name} needs {info.frames} per window")
    checks = []
    for start in range(0, n - info.frames + 1, stride)[:windows]:
        span = slice(start, start + info.frames)
        engine_frames = torch.from_numpy(sampled.engine[span])
        engine_logits = model.classify(model.encode(engine_frames).unsqueeze(0))[0].float().cpu()
        ref_logits = reference.logits(model, ref_inputs[span])
        checks.append(WindowCheck(
            start=float(sampled.pts[start]),
            input=InputDiff.between(sampled.engine[span], ref_levels[span]),
            logit_max_diff=float((engine_logits - ref_logits).abs().max()),
            logit_spread=float(ref_logits.max() - ref_logits.min()),
            top1_engine=info.labels[int(engine_logits.argmax())],
            top1_reference=info.labels[int(ref_logits.argmax())],
        ))
    return ParityReport(
        model=info.name, reference=reference.name, resampling=info.resampling.describe(),
        frame_size=sampled.size, frames=n, input=InputDiff.between(sampled.engine[:n], ref_levels[:n]),
        windows=tuple(checks),
    )
