"""Frame preparation split between the decode thread and the model's device (the GPU path).

On a CPU the decode thread prepares every frame completely (``preprocess.FramePreparer``): swscale converts it
to RGB at its own size, then torchvision's ``resize`` and the reference's centre crop run on it. On a GPU the
resize is what costs (up to 2.3 ms a frame on a CPU core for a 1080p frame, ``har-stream bench prepare``), so it
moves to the card: the decode thread only converts to RGB (``SplitPreparer`` → ``NativeFrame``), the inference
thread uploads the uint8 frames (from pinned memory on CUDA, without blocking) and resizes and crops them there
with the very same torchvision function, interpolation, antialias setting and crop rounding
(``DeviceResize``). On a CPU device the two paths give identical bytes (tests/test_device_prepare.py); on CUDA
the float resize kernel may round a pixel the other way, ±1 grey level at most (tests/test_cuda.py).

swscale's AREA filter (har-stream's own CNN-LSTM checkpoints) resizes while it converts from YUV, in one pass:
there is no separate resize to move, and no device kernel reproduces it, so such models keep the CPU path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import torch
import torchvision.transforms.functional as tv_v1
import torchvision.transforms.v2.functional as tv_v2
from torchvision.transforms import InterpolationMode

from .errors import ConfigError
from .models.base import ModelInfo, Size
from .models.resampling import Resampling, crop_start
from .preprocess import FramePreparer, resized_size

PREPARE_ON = ("auto", "cpu", "device")
_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class NativeFrame:
    """A decoded frame as (H, W, 3) uint8 RGB at its own size: resized and cropped later, on the device."""

    rgb: np.ndarray


def check_prepare_on(prepare_on: str) -> None:
    if prepare_on not in PREPARE_ON:
        raise ConfigError(f"prepare_on must be one of {', '.join(PREPARE_ON)} (got {prepare_on!r})")


def prepares_on_device(prepare_on: str, info: ModelInfo, device: torch.device) -> bool:
    """Whether frames for this model are resized on ``device``: ``auto`` does it on CUDA, ``device`` anywhere
    (a CPU too: how the path is tested without a GPU), ``cpu`` never; a swscale AREA model never (see above)."""
    check_prepare_on(prepare_on)
    if info.resampling.filter == "area" or prepare_on == "cpu":
        return False
    return prepare_on == "device" or device.type == "cuda"


class SplitPreparer:
    """The decode thread's half: ``av.VideoFrame → NativeFrame``, one reused swscale context (not thread-safe:
    one per source, like ``FramePreparer``)."""

    def __init__(self, resize: int | Size, crop: Size, resampling: Resampling) -> None:
        self._rgb = FramePreparer(resize, crop, resampling)

    @classmethod
    def for_model(cls, info: ModelInfo) -> SplitPreparer:
        return cls(info.resize, info.crop, info.resampling)

    def __call__(self, frame: av.VideoFrame) -> NativeFrame:
        return NativeFrame(self._rgb.reference_rgb(frame))


class DeviceResize:
    """The device's half: frames (``NativeFrame``s, or crops a CPU preparer already made) → one
    (N, crop_h, crop_w, 3) uint8 tensor on the device, in the order given."""

    def __init__(self, resize: int | Size, crop: Size, resampling: Resampling) -> None:
        if resampling.filter == "area":
            raise ConfigError("swscale AREA frames are prepared on the CPU; there is no device kernel for it")
        self.resize = resize
        self.crop = (int(crop[0]), int(crop[1]))
        self.resampling = resampling
        self._mode = _MODES[resampling.filter]
        # the function FramePreparer uses for this resampling (float kernel: v1; uint8 kernel: v2)
        self._resize = tv_v2.resize if resampling.kernel == "uint8" else tv_v1.resize

    @classmethod
    def for_model(cls, info: ModelInfo) -> DeviceResize:
        return cls(info.resize, info.crop, info.resampling)

    def __call__(self, items: Sequence[np.ndarray | NativeFrame], device: torch.device) -> torch.Tensor:
        """Frames of one size go up and are resized as one batch; a batch of many streams has a few sizes."""
        pin = device.type == "cuda"
        groups: dict[tuple[bool, tuple[int, ...]], list[int]] = {}
        for i, item in enumerate(items):
            native = isinstance(item, NativeFrame)
            shape = (item.rgb if isinstance(item, NativeFrame) else item).shape
            groups.setdefault((native, tuple(shape)), []).append(i)
        ch, cw = self.crop
        out = torch.empty((len(items), ch, cw, 3), dtype=torch.uint8, device=device)
        for (native, shape), index in groups.items():
            host = torch.empty((len(index), *shape), dtype=torch.uint8, pin_memory=pin)
            np.stack([items[i].rgb if native else items[i] for i in index],  # type: ignore[union-attr]
                     out=host.numpy())
            batch = host.to(device, non_blocking=pin)
            if native:
                batch = self._resize_crop(batch.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            out[torch.tensor(index, device=device)] = batch
        return out

    def _resize_crop(self, chw: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 → (N, 3, crop_h, crop_w) uint8: ``FramePreparer``'s resize, then ``centre_crop``."""
        w, h = resized_size(chw.shape[-1], chw.shape[-2], self.resize)
        x = self._resize(chw, [h, w], interpolation=self._mode, antialias=self.resampling.antialias)
        ch, cw = self.crop
        if ch > h or cw > w:  # zero-padded around, the odd pixel bottom/right, as torchvision pads
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            padded = x.new_zeros((*x.shape[:2], h + ph, w + pw))
            padded[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = x
            x, (h, w) = padded, (h + ph, w + pw)
        top = crop_start(h, ch, self.resampling.crop_rounding)
        left = crop_start(w, cw, self.resampling.crop_rounding)
        return x[..., top:top + ch, left:left + cw]
