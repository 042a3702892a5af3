"""On-disk caches for training: each clip's sampled frames (decoded once), and frozen-encoder features.

Frames are stored as the engine prepares them (uint8, model size, model fps) in one ``.npy`` per clip and
memory-mapped when read, so epochs never decode video again. A clip's key hashes its resolved path, size and
mtime, so an edited file is decoded afresh. Features are keyed by a digest of the encoder's weights as well:
the first stage trains the head on them, and a resumed or repeated run reuses them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets.base import Clip
from ..datasets.decode import DecodedClip, FrameSpec, decode_clips
from ..errors import InputError
from ..fileutil import publish
from ..models.resampling import SWSCALE_AREA

log = logging.getLogger(__name__)

Tick = Callable[[int], None]  # progress: called with the number of clips just finished


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.save(out, array, allow_pickle=False)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clip_key(clip: Clip) -> str:
    path = clip.path.resolve()
    st = path.stat()
    return hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]


def spec_key(spec: FrameSpec) -> str:
    resize = spec.resize if isinstance(spec.resize, int) else f"{spec.resize[0]}x{spec.resize[1]}"
    key = f"{spec.fps:g}fps-r{resize}-c{spec.crop[0]}x{spec.crop[1]}"
    if spec.resampling != SWSCALE_AREA:  # the AREA folders keep the names they had before resampling was chosen
        r = spec.resampling
        key += f"-{r.filter}{'-aa' if r.antialias else ''}-{r.kernel}-{r.crop_rounding}"
    return key


@dataclass(frozen=True)
class Failure:
    name: str
    reason: str


class FrameCache:
    """Sampled, prepared frames of every clip, one ``.npy`` each under ``<root>/frames/<spec>/``."""

    def __init__(self, root: Path, spec: FrameSpec) -> None:
        self.spec = spec
        self.folder = Path(root) / "frames" / spec_key(spec)

    def path(self, clip: Clip) -> Path:
        return self.folder / f"{clip_key(clip)}.npy"

    def load(self, clip: Clip) -> np.ndarray:
        """(N, H, W, 3) uint8, memory-mapped."""
        return np.load(self.path(clip), mmap_mode="r")

    def fill(self, clips: Sequence[Clip], *, jobs: int = 2, tick: Tick | None = None) -> list[Failure]:
        """Decode the clips not cached yet; returns the ones that could not be decoded (they stay out)."""
        todo = [c for c in clips if not self.path(c).is_file()]
        if tick is not None and len(clips) > len(todo):
            tick(len(clips) - len(todo))
        by_path = {c.path: c for c in todo}
        failures: list[Failure] = []

        def done(path: Path, result: DecodedClip | InputError) -> None:
            clip = by_path[path]
            if isinstance(result, InputError):
                log.warning("skipping %s: %s", clip.name, result)
                failures.append(Failure(clip.name, str(result)))
            else:
                save_array(self.path(clip), result.frames)
            if tick is not None:
                tick(1)

        if todo:
            asyncio.run(decode_clips([c.path for c in todo], self.spec, done, jobs=jobs))
        return failures


def module_digest(module: nn.Module) -> str:
    """Identity of a module's weights (and buffers): equal digests, equal features."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


class FeatureCache:
    """Per-frame features of a frozen encoder, float16, under ``<root>/features/<encoder digest>/``."""

    def __init__(self, root: Path, frames: FrameCache, encoder_digest: str) -> None:
        self.frames = frames
        self.folder = Path(root) / "features" / f"{spec_key(frames.spec)}-{encoder_digest}"

    def path(self, clip: Clip) -> Path:
        return self.folder / f"{clip_key(clip)}.npy"

    def load(self, clip: Clip) -> np.ndarray:
        return np.load(self.path(clip))

    def fill(self, clips: Sequence[Clip], encode: Callable[[np.ndarray], np.ndarray], *,
             tick: Tick | None = None) -> None:
        """Compute features for the clips that have none yet; ``encode`` maps (N, H, W, 3) uint8 → (N, D)."""
        for clip in clips:
            path = self.path(clip)
            if not path.is_file():
                save_array(path, encode(np.asarray(self.frames.load(clip))).astype(np.float16))
            if tick is not None:
                tick(1)
