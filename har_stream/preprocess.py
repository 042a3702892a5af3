"""Frame preparation: decoded ``av.VideoFrame`` → the model's uint8 RGB crop, once per kept frame.

It runs in the decode thread (sources call it as their ``prepare`` hook), so resizing never touches the event
loop, and it reuses one swscale context per stream: PyAV's ``to_ndarray(width=…)`` builds a new scaler per
frame and is about 4× slower.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from .models.base import ModelInfo, Size


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


class FramePreparer:
    """Callable ``av.VideoFrame → np.ndarray (crop_h, crop_w, 3) uint8``; one per stream and model input."""

    def __init__(self, resize: int | Size, crop: Size, interpolation: str = "AREA") -> None:
        self.resize = resize
        self.crop = (int(crop[0]), int(crop[1]))
        self._reformatter = VideoReformatter()
        self._interp = Interpolation[interpolation]

    @classmethod
    def for_model(cls, info: ModelInfo) -> FramePreparer:
        return cls(info.resize, info.crop)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = resized_size(frame.width, frame.height, self.resize)
        ch, cw = min(self.crop[0], h), min(self.crop[1], w)
        rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                         interpolation=self._interp).to_ndarray()
        top, left = (h - ch) // 2, (w - cw) // 2
        out = rgb[top:top + ch, left:left + cw]
        if out.shape[:2] != self.crop:  # smaller than the crop: centre it on black, as CenterCrop does
            padded = np.zeros((*self.crop, 3), dtype=np.uint8)
            pt, pl = (self.crop[0] - ch) // 2, (self.crop[1] - cw) // 2
            padded[pt:pt + ch, pl:pl + cw] = out
            out = padded
        return np.ascontiguousarray(out)
