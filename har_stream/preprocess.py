"""Frame preparation: decoded ``av.VideoFrame`` → the model's uint8 RGB crop, once per kept frame.

It runs in the decode thread (sources call it as their ``prepare`` hook), so resizing never touches the event
loop, and it reuses one swscale context per stream: PyAV's ``to_ndarray(width=…)`` builds a new scaler per
frame and is about 4× slower.

Two paths, chosen by the model's ``Resampling`` (see ``models/resampling.py``):

* ``area``: swscale converts from YUV and resizes in one pass with its AREA filter (the fastest; what
  har-stream's CNN-LSTM checkpoints record).
* ``bilinear``/``bicubic``: swscale only converts to RGB at the frame's own size, exactly as PyAV's
  ``frame.to_ndarray(format="rgb24")`` does (how torchvision and transformers users decode), then torchvision's
  own ``resize`` and the reference's centre-crop rounding run on that. The result is the reference transform's
  input bit for bit (``har-stream models check`` and ``tests/test_model_parity.py`` prove it); what it costs
  against the AREA path is measured by ``har-stream bench prepare`` (docs/models.md).
"""

from __future__ import annotations

import av
import numpy as np
import torch
import torchvision.transforms.functional as tv_v1
import torchvision.transforms.v2.functional as tv_v2
from av.video.reformatter import Interpolation, VideoReformatter
from torchvision.transforms import InterpolationMode

from .models.base import ModelInfo, Size
from .models.resampling import SWSCALE_AREA, Resampling, crop_start

_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def resized_size(width: int, height: int, resize: int | Size) -> tuple[int, int]:
    """(w, h) after torchvision-style resize: an int sets the short side, a pair sets (h, w) exactly.

    The long side is truncated, not rounded, exactly as torchvision's ``Resize`` and transformers' CLIP
    image processor do, so the crop sees the same pixels the model was trained on.
    """
    if isinstance(resize, int):
        if width <= height:
            return resize, max(1, int(height * resize / width))
        return max(1, int(width * resize / height)), resize
    return int(resize[1]), int(resize[0])


def centre_crop(image: np.ndarray, crop: Size, rounding: str) -> np.ndarray:
    """(H, W, C) → (crop_h, crop_w, C): a centre crop, zero-padded around an image smaller than the crop.

    Padding and offsets follow torchvision's ``center_crop`` (and transformers', which differs only in
    ``rounding``): the pad is split with the odd pixel on the bottom/right, then the crop starts at the
    rounded half margin.
    """
    h, w = image.shape[:2]
    ch, cw = crop
    if ch > h or cw > w:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        padded = np.zeros((h + ph, w + pw, image.shape[2]), dtype=image.dtype)
        padded[ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = image
        image, (h, w) = padded, padded.shape[:2]
    top, left = crop_start(h, ch, rounding), crop_start(w, cw, rounding)  # type: ignore[arg-type]
    return image[top:top + ch, left:left + cw]


class FramePreparer:
    """Callable ``av.VideoFrame → np.ndarray (crop_h, crop_w, 3) uint8``; one per stream and model input."""

    def __init__(self, resize: int | Size, crop: Size, resampling: Resampling = SWSCALE_AREA) -> None:
        self.resize = resize
        self.crop = (int(crop[0]), int(crop[1]))
        self.resampling = resampling
        self._reformatter = VideoReformatter()
        if resampling.filter != "area":
            self._mode = _MODES[resampling.filter]
            self._resize = tv_v2.resize if resampling.kernel == "uint8" else tv_v1.resize

    @classmethod
    def for_model(cls, info: ModelInfo) -> FramePreparer:
        return cls(info.resize, info.crop, info.resampling)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = resized_size(frame.width, frame.height, self.resize)
        if self.resampling.filter == "area":
            rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                             interpolation=Interpolation.AREA).to_ndarray()
        else:
            rgb = self.reference_rgb(frame)
            chw = torch.from_numpy(rgb).permute(2, 0, 1)
            rgb = self._resize(chw, [h, w], interpolation=self._mode,
                               antialias=self.resampling.antialias).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(centre_crop(rgb, self.crop, self.resampling.crop_rounding))

    def reference_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as (H, W, 3) uint8 RGB at its own size: ``frame.to_ndarray(format="rgb24")``, scaler reused."""
        return self._reformatter.reformat(frame, format="rgb24").to_ndarray()
