"""Augmentations for video clips: one random crop and one flip per clip, the same for all of its frames.

Per-frame randomness would make a still scene jitter and look like motion, so every frame of a clip gets the
same box and the same flip. The crop is taken from the engine-prepared frame and resized back to its size,
so the model's input contract (size, normalisation) does not change. Runs batched on the training device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError


@dataclass(frozen=True)
class ClipAugment:
    """``min_area``: the crop keeps at least this fraction of the frame (1.0 = no crop); ``flip``: mirror
    half the clips left-right (turn it off when direction is the class, e.g. "moving left" vs "right")."""

    min_area: float = 0.8
    max_aspect_change: float = 4.0 / 3.0
    flip: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.min_area <= 1.0:
            raise ConfigError(f"--crop-area must be in (0, 1] (got {self.min_area})")

    def __call__(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, T, 3, H, W) float → the same shape, each clip cropped, resized back and maybe flipped."""
        b, t, c, h, w = clips.shape
        out = torch.empty_like(clips)
        for i in range(b):
            top, left, ch, cw = self.box(h, w, generator)
            clip = clips[i, :, :, top:top + ch, left:left + cw]
            if (ch, cw) != (h, w):
                clip = F.interpolate(clip, size=(h, w), mode="bilinear", align_corners=False)
            if self.flip and bool(torch.rand((), generator=generator) < 0.5):
                clip = clip.flip(-1)
            out[i] = clip
        return out

    def box(self, h: int, w: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a random crop holding ``min_area``..1 of the frame."""
        u = torch.rand(4, generator=generator).tolist()  # drawn even when unused: the stream stays the same
        if self.min_area >= 1.0:
            return 0, 0, h, w
        area = (self.min_area + (1.0 - self.min_area) * u[0]) * h * w
        log_r = math.log(self.max_aspect_change)
        aspect = math.exp((2.0 * u[1] - 1.0) * log_r)
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        return int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw
