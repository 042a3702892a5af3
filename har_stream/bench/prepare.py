"""Frame preparation: the reference-exact torchvision path against swscale's one-pass AREA resize, side by side.

For each frame size and model geometry, every preparer runs over the same decoded frames in turn (alternating,
best of ``repeats``), so the ratio between them is measured on one machine in one run. Each row also says how far
the preparer's output is from the model's reference transform (grey levels), which is why the exact path was
chosen for the torchvision and CLIP models (docs/models.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import torch

from ..models.base import ModelInfo
from ..models.resampling import SWSCALE_AREA
from ..models.torchvision_video import model_info, spec_of
from ..parity import InputDiff, grey_levels
from ..preprocess import FramePreparer

SIZES = ((320, 240), (640, 480), (1280, 720), (1920, 1080))


@dataclass(frozen=True)
class PrepareFigures:
    size: tuple[int, int]
    model: str
    preparer: str
    fps: float  # frames prepared per second, one thread
    diff: InputDiff  # against the model's reference transform


def decoded_frames(video: Path, count: int, size: tuple[int, int]) -> list[av.VideoFrame]:
    """``count`` frames of ``video`` as yuv420p at ``size``, as a decoder hands them over."""
    out: list[av.VideoFrame] = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            out.append(frame.reformat(width=size[0], height=size[1], format="yuv420p"))
            if len(out) >= count:
                break
    return out


def clip_processor():  # -> CLIPImageProcessor; untyped so transformers loads only when asked for
    """openai/clip-vit-base-patch32's image processor: its saved config is transformers' defaults."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor()


def geometry(name: str) -> ModelInfo:
    """The input contract of ``name`` (a torchvision model, or ``clip`` for ViT-B/32's), with no weights."""
    if name != "clip":
        return model_info(name)
    from ..models.base import IMAGENET_MEAN, IMAGENET_STD
    from ..models.clip_zero_shot import image_resampling

    processor = clip_processor()
    return ModelInfo(name="clip", family="clip", labels=(), frames=16, fps=15.0, resize=224, crop=(224, 224),
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="", resampling=image_resampling(processor))


def _reference_levels(info: ModelInfo, frames: Sequence[av.VideoFrame]) -> np.ndarray:
    rgb = [f.to_ndarray(format="rgb24") for f in frames]
    if info.name == "clip":
        processor = clip_processor()
        pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
        return grey_levels(pixels, processor.image_mean, processor.image_std)
    preset = spec_of(info.name).weights.transforms()
    video = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)
    return grey_levels(preset(video).permute(1, 0, 2, 3), preset.mean, preset.std)


def _time(prepare: Callable[[av.VideoFrame], np.ndarray], frames: Sequence[av.VideoFrame]) -> float:
    started = time.perf_counter()
    for frame in frames:
        prepare(frame)
    return len(frames) / (time.perf_counter() - started)


def run_prepare_bench(video: Path, *, models: Sequence[str] = ("r2plus1d-18", "s3d", "clip"), frames: int = 60,
                      repeats: int = 3, sizes: Sequence[tuple[int, int]] = SIZES) -> list[PrepareFigures]:
    figures: list[PrepareFigures] = []
    for size in sizes:
        batch = decoded_frames(video, frames, size)
        for name in models:
            exact = geometry(name)
            other_kernel = "float" if exact.resampling.kernel == "uint8" else "uint8"
            variants = {
                f"{exact.resampling.filter} {exact.resampling.kernel} kernel (served)": exact,
                f"{exact.resampling.filter} {other_kernel} kernel": replace(
                    exact, resampling=replace(exact.resampling, kernel=other_kernel)),
                "swscale AREA (before)": replace(exact, resampling=SWSCALE_AREA),
            }
            preparers = {label: FramePreparer.for_model(info) for label, info in variants.items()}
            best = dict.fromkeys(preparers, 0.0)
            for _ in range(repeats):  # alternate, so a noisy moment hurts every preparer alike
                for label, prepare in preparers.items():
                    best[label] = max(best[label], _time(prepare, batch))
            reference = _reference_levels(exact, batch)
            for label, prepare in preparers.items():
                diff = InputDiff.between(np.stack([prepare(f) for f in batch]), reference)
                figures.append(PrepareFigures(size, name, label, best[label], diff))
    return figures
