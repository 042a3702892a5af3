"""How a model's reference implementation resizes and centre-crops a frame, so the engine can do exactly that.

A model is only as good as the input it gets: published accuracies were measured with each model's own
reference transform, and a crop one pixel off or another resampling filter shifts every input by several grey
levels. ``Resampling`` names the four choices that make up such a transform (besides the sizes and mean/std,
which ``ModelInfo`` holds):

* ``filter``: ``area`` is swscale's AREA filter applied while converting from YUV (the fastest path, and what
  har-stream's own CNN-LSTM checkpoints were trained with); ``bilinear``/``bicubic`` are torchvision's resize.
* ``antialias``: torchvision's video presets hard-code ``antialias=False``; CLIP's processor resizes with it on.
* ``kernel``: ``float`` resizes in float32 and rounds back to uint8, as ``torchvision.transforms.functional``
  does (the video presets); ``uint8`` uses ``torchvision.transforms.v2``'s native uint8 kernels, as
  transformers' ``CLIPImageProcessor`` does. The two differ by up to one grey level.
* ``crop_rounding``: where a centre crop starts when its margin is odd. torchvision rounds the half margin
  half to even (``int(round(29.5))`` = 30, ``int(round(58.5))`` = 58); transformers truncates (29, 58).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import ModelError

Filter = Literal["area", "bilinear", "bicubic"]
Kernel = Literal["float", "uint8"]
CropRounding = Literal["round", "floor"]

FILTERS = ("area", "bilinear", "bicubic")
KERNELS = ("float", "uint8")
CROP_ROUNDINGS = ("round", "floor")


@dataclass(frozen=True)
class Resampling:
    filter: Filter = "area"
    antialias: bool = True
    kernel: Kernel = "float"
    crop_rounding: CropRounding = "floor"
    reference: str = "har-stream's swscale AREA preparer"

    def __post_init__(self) -> None:
        for name, value, allowed in (("filter", self.filter, FILTERS), ("kernel", self.kernel, KERNELS),
                                     ("crop_rounding", self.crop_rounding, CROP_ROUNDINGS)):
            if value not in allowed:
                raise ModelError(f"unknown resampling {name} {value!r}; use one of {', '.join(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Resampling:
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as err:
            raise ModelError(f"unreadable resampling record {d!r} ({err})") from None

    def describe(self) -> str:
        if self.filter == "area":
            return f"swscale AREA, {self.crop_rounding} crop"
        aa = "antialias" if self.antialias else "no antialias"
        return f"{self.filter} ({aa}, {self.kernel} kernel), {self.crop_rounding} crop"


def crop_start(size: int, crop: int, rounding: CropRounding) -> int:
    """First row/column of a centre crop of ``crop`` out of ``size`` (``crop <= size``), rounded like the reference."""
    half = (size - crop) / 2.0
    return int(round(half)) if rounding == "round" else int(half)


# har-stream's own preparer: the CNN-LSTM checkpoints written before resampling was recorded used it.
SWSCALE_AREA = Resampling()

# torchvision.transforms._presets.VideoClassification: F.resize(..., antialias=False) then F.center_crop.
TORCHVISION_VIDEO = Resampling("bilinear", antialias=False, kernel="float", crop_rounding="round",
                               reference="torchvision *_Weights.KINETICS400_V1.transforms()")

# torchvision.transforms._presets.ImageClassification (ImageNet): bilinear with antialias, round crop.
TORCHVISION_IMAGE = Resampling("bilinear", antialias=True, kernel="float", crop_rounding="round",
                               reference="torchvision ImageClassification preset (bilinear, antialias)")

# What `har-stream train --resample NAME` offers for a CNN-LSTM; the checkpoint records the whole spec.
TRAINING_CHOICES = {"area": SWSCALE_AREA, "bilinear": TORCHVISION_IMAGE}


def training_resampling(name: str) -> Resampling:
    try:
        return TRAINING_CHOICES[name]
    except KeyError:
        raise ModelError(f"unknown --resample {name!r}; use one of {', '.join(TRAINING_CHOICES)}") from None
