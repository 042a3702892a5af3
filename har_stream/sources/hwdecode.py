"""``--hwdecode``: decode on the GPU's video engine (NVDEC) through PyAV's hardware decoding, where FFmpeg can.

PyAV (>= 14) passes an ``av.codec.hwaccel.HWAccel`` to ``av.open``; FFmpeg then decodes on the card and copies
each frame back to memory (NV12), which the preparers convert to RGB like any other frame. H.264/HEVC decoding is
bit-exact, so the frames are the software decoder's. ``allow_software_fallback`` lets FFmpeg decode a stream
NVDEC cannot take (a codec or profile it lacks) in software.

* ``none`` (the default, until it is measured on a card): software decoding, on the source's thread.
* ``auto``: NVDEC when this FFmpeg has CUDA hardware decoding and torch sees a CUDA device; else software.
* ``cuda``: NVDEC, and when it cannot start (no driver, no device, no support) software decoding with the
  reason logged as a warning: the stream is never lost for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import av
import av.container

from ..errors import ConfigError

log = logging.getLogger(__name__)

HWDECODE = ("auto", "none", "cuda")


def check_hwdecode(value: str) -> None:
    if value not in HWDECODE:
        raise ConfigError(f"--hwdecode must be one of {', '.join(HWDECODE)} (got {value!r})")


def _cuda_device() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def hwaccel_for(hwdecode: str) -> tuple[Any | None, str]:
    """(the ``HWAccel`` to open with, or None and why not)."""
    check_hwdecode(hwdecode)
    if hwdecode == "none":
        return None, "software decoding was asked for"
    try:
        from av.codec.hwaccel import HWAccel, hwdevices_available
    except ImportError:
        return None, f"PyAV {av.__version__} has no hardware decoding (it needs PyAV 14 or newer)"
    if "cuda" not in hwdevices_available():
        return None, "this FFmpeg build has no CUDA hardware decoding"
    if hwdecode == "auto" and not _cuda_device():
        return None, "no CUDA device"
    return HWAccel("cuda", allow_software_fallback=True), ""


def open_decoding(target: str, *, options: Mapping[str, str], timeout: tuple[float, float], hwdecode: str,
                  name: str) -> tuple[av.container.InputContainer, str]:
    """``av.open`` with NVDEC as ``hwdecode`` asks, else in software; returns the container and how it decodes.

    A failure with NVDEC is tried once more in software: when the media itself is at fault, that attempt raises
    the same error the caller already turns into a message."""
    accel, why = hwaccel_for(hwdecode)
    if accel is not None:
        try:
            return av.open(target, options=dict(options), timeout=timeout, hwaccel=accel), "cuda (NVDEC)"
        except (av.FFmpegError, OSError) as err:
            text = getattr(err, "strerror", None) or str(err) or type(err).__name__
            why = f"the CUDA decoder could not start ({str(text).splitlines()[0]})"
    if hwdecode == "cuda":
        log.warning("%s: --hwdecode cuda: decoding in software instead: %s", name, why)
    elif hwdecode == "auto":
        log.info("%s: decoding in software: %s", name, why)
    how = "software" if hwdecode == "none" else f"software ({why})"
    return av.open(target, options=dict(options), timeout=timeout), how
