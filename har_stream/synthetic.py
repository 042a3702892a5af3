"""Synthetic motion clips: a square moving left, right, up, or holding still over a textured background.

The class is visible only in the motion, so a model that labels these correctly has really learnt
something temporal. Used by the tests (train a tiny model, then check labels end to end), by the bench, and
by the README's first command, which needs a video to analyse on a machine that has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MOTIONS: dict[str, tuple[float, float]] = {  # label -> unit velocity (dx, dy) in frame sizes
    "moving left": (-1.0, 0.0),
    "moving right": (1.0, 0.0),
    "moving up": (0.0, -1.0),
    "holding still": (0.0, 0.0),
}
LABELS: tuple[str, ...] = tuple(MOTIONS)


def render(label: str, n_frames: int, *, width: int = 160, height: int = 120, fps: float = 15.0,
           speed: float = 0.5, rng: np.random.Generator | None = None, t0: float = 0.0,
           start: tuple[float, float] | None = None, colour: tuple[int, int, int] | None = None,
           background: np.ndarray | None = None) -> np.ndarray:
    """(n_frames, height, width, 3) uint8; ``speed`` in frame sizes per second; positions wrap around."""
    if label not in MOTIONS:
        raise ValueError(f"unknown motion {label!r}; use one of {', '.join(MOTIONS)}")
    rng = rng or np.random.default_rng(0)
    if background is None:
        background = make_background(width, height, rng)
    colour = colour or tuple(int(c) for c in rng.integers(150, 256, 3))
    sx, sy = start if start is not None else (rng.random(), rng.random())
    side = max(4, min(width, height) // 4)
    dx, dy = MOTIONS[label]
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    yy = np.arange(height)[:, None]
    xx = np.arange(width)[None, :]
    for i in range(n_frames):
        t = t0 + i / fps
        cx = ((sx + dx * speed * t) % 1.0) * width
        cy = ((sy + dy * speed * t) % 1.0) * height
        mask = (((xx - cx) % width) < side) & (((yy - cy) % height) < side)
        frame = background.copy()
        frame[mask] = colour
        frames[i] = frame
    return frames


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Dark, low-contrast texture: gives the encoder something to ignore."""
    base = rng.integers(10, 70, 3)
    noise = rng.integers(-12, 13, (height // 8 + 1, width // 8 + 1, 1))
    tex = np.kron(noise, np.ones((8, 8, 1)))[:height, :width]
    return np.clip(base + tex, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: float, *, codec: str = "libx264",
                options: dict[str, str] | None = None) -> Path:
    """Encode RGB frames to a real video file (H.264 mp4 by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = options if options is not None else ({"crf": "18", "preset": "veryfast"}
                                                              if codec == "libx264" else {})
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_motion_clip(path: Path, script: Sequence[tuple[str, float]], *, width: int = 160, height: int = 120,
                      fps: float = 15.0, speed: float = 0.5, seed: int = 0, codec: str = "libx264",
                      start: tuple[float, float] | None = None) -> Path:
    """A clip that performs each (label, seconds) of ``script`` in turn, one continuous scene."""
    rng = np.random.default_rng(seed)
    background = make_background(width, height, rng)
    colour = tuple(int(c) for c in rng.integers(150, 256, 3))
    parts, t = [], 0.0
    pos = start if start is not None else (rng.random(), rng.random())
    for label, seconds in script:
        n = int(round(seconds * fps))
        parts.append(render(label, n, width=width, height=height, fps=fps, speed=speed, rng=rng, start=pos,
                            colour=colour, background=background))
        dx, dy = MOTIONS[label]
        pos = ((pos[0] + dx * speed * n / fps) % 1.0, (pos[1] + dy * speed * n / fps) % 1.0)
        t += n / fps
    return write_video(path, np.concatenate(parts), fps, codec=codec)
