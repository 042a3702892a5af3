"""JPEG snapshots of frames, for action events.

An event carries one small picture of what was seen, so a webhook or the events page can show it without
the video. Pictures are downscaled (``max_size`` on the long side) before encoding: a full 1080p frame
costs ~10 ms and ~200 KB as JPEG, a 320-pixel copy a few KB, and events are kept by the thousand.

``RecentFrames`` keeps a few recent frames of a stream (small copies) by presentation time, so the event
detector can ask for "the frame at stream time t" when a window sets a new peak; they are encoded only then.
Feed it from a ``TapSource`` (``har_stream.sources.tap``) with ``RecentFrames.keep``.
"""

from __future__ import annotations

import io
from collections import deque

import av
import numpy as np
from PIL import Image

from .errors import ConfigError
from .types import DecodedFrame

DEFAULT_MAX_SIZE = 320
DEFAULT_QUALITY = 80


def _fit(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(width, height) scaled down to fit ``max_size`` on the long side (never up), at least 2 pixels each."""
    scale = min(1.0, max_size / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


def encode_jpeg(frame: av.VideoFrame | np.ndarray, *, max_size: int = DEFAULT_MAX_SIZE,
                quality: int = DEFAULT_QUALITY) -> bytes:
    """A JPEG of ``frame`` (an ``av.VideoFrame`` or an (H, W, 3) uint8 RGB array), at most ``max_size`` pixels
    on its long side. Video frames are scaled by swscale while converting to RGB (one pass, fast)."""
    if max_size < 16:
        raise ConfigError(f"snapshot max size must be at least 16 pixels (got {max_size})")
    if not 1 <= quality <= 95:
        raise ConfigError(f"JPEG quality must be between 1 and 95 (got {quality})")
    out = io.BytesIO()
    Image.fromarray(small_rgb(frame, max_size), "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


class RecentFrames:
    """A few recent frames of one stream, small and by stream time: the ``Snapshotter`` for the event detector.

    Feed it the stream's sampled frames (``push(frame.pts, frame.frame)``, or ``TapSource(source, recent.keep)``) and hand it to ``ActionEventDetector(snapshot=...)``. Why copies and not the decoded
    frames: a 1080p frame is 3 MB, so holding a couple of seconds of them per camera would cost hundreds of
    MB. Instead one frame per ``every_s`` is kept, downscaled to ``max_size`` while converting to RGB
    (swscale: ~2 ms for a 1080p frame, so ~10 ms a second per stream at the default rate), and JPEG-encoded
    only when asked for.

    Size it to how far the source runs ahead of published labels: a live pipeline holds at most about one
    window plus two strides of frames ahead (about 2 s at stride 8, 15 fps), so the defaults keep 2.4 s; an
    offline one may run ``window_queue`` windows ahead, so give it room for the whole media or expect None.
    """

    def __init__(self, capacity: int = 12, *, every_s: float = 0.2, max_size: int = DEFAULT_MAX_SIZE,
                 quality: int = DEFAULT_QUALITY) -> None:
        if capacity < 1:
            raise ConfigError(f"snapshot frame capacity must be at least 1 (got {capacity})")
        if every_s < 0:
            raise ConfigError(f"snapshot frame interval must be 0 or more seconds (got {every_s})")
        if max_size < 16:
            raise ConfigError(f"snapshot max size must be at least 16 pixels (got {max_size})")
        self.every_s = every_s
        self.max_size = max_size
        self.quality = quality
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=capacity)

    def keep(self, frame: DecodedFrame) -> None:
        """``push`` for a decoded frame: the ``on_frame`` of a ``TapSource``."""
        self.push(frame.pts, frame.frame)

    def push(self, pts: float, frame: av.VideoFrame | np.ndarray) -> None:
        if self._frames:
            last = self._frames[-1][0]
            if pts < last:
                self._frames.clear()  # time went back: the stream restarted (a reconnect)
            elif pts < last + self.every_s - 1e-9:
                return  # too close to the last kept frame
        self._frames.append((pts, small_rgb(frame, self.max_size)))

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def frame_at(self, t: float) -> np.ndarray | None:
        """The newest kept frame shown before stream time ``t`` (a window's ``end`` is just after its last
        frame); the oldest kept frame if all are later; None when nothing is kept."""
        best = None
        for pts, frame in self._frames:
            if pts < t or best is None:
                best = frame
            if pts >= t:
                break
        return best

    def __call__(self, t: float) -> bytes | None:
        frame = self.frame_at(t)
        if frame is None:
            return None
        return encode_jpeg(frame, max_size=self.max_size, quality=self.quality)


def small_rgb(frame: av.VideoFrame | np.ndarray, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
    """An (H, W, 3) uint8 RGB copy of ``frame`` at most ``max_size`` on its long side."""
    if isinstance(frame, av.VideoFrame):
        width, height = _fit(frame.width, frame.height, max_size)
        return frame.to_ndarray(width=width, height=height, format="rgb24")
    array = _rgb_array(frame)
    size = _fit(array.shape[1], array.shape[0], max_size)
    if size == (array.shape[1], array.shape[0]):
        return array.copy()
    return np.asarray(Image.fromarray(array, "RGB").resize(size, Image.Resampling.BILINEAR))


def _rgb_array(frame: np.ndarray) -> np.ndarray:
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"a snapshot needs an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return array
