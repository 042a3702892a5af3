"""What each epoch trains on: a held-out validation part of the training split, and the epoch's windows.

Every random choice of an epoch comes from a generator seeded by (seed, epoch), so a run resumed at an epoch
boundary draws exactly what an uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..datasets.base import Clip
from .cache import FrameCache
from .windows import random_starts, window_at


def split_validation(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Hold out ``fraction`` of each class's groups (UCF101: actor/scene groups), never part of a group.

    A class keeps at least one group for training, so a class with a single group is not validated.
    """
    if fraction <= 0:
        return list(clips), []
    groups: dict[int, dict[str, list[Clip]]] = defaultdict(lambda: defaultdict(list))
    for clip in clips:
        groups[clip.label][clip.group].append(clip)
    train: list[Clip] = []
    val: list[Clip] = []
    for label in sorted(groups):
        names = sorted(groups[label], key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        n_val = min(len(names) - 1, math.floor(len(names) * fraction + 0.5))
        for i, name in enumerate(names):
            (val if i < n_val else train).extend(groups[label][name])
    return sorted(train, key=lambda c: c.name), sorted(val, key=lambda c: c.name)


@dataclass(frozen=True)
class Sample:
    clip: int  # index into the epoch's clip list
    start: int


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def epoch_samples(lengths: Sequence[int], window: int, per_video: int, rng: np.random.Generator) -> list[Sample]:
    """``per_video`` random windows of each clip, shuffled."""
    samples = [Sample(i, int(s)) for i, n in enumerate(lengths) for s in random_starts(n, window, per_video, rng)]
    order = rng.permutation(len(samples))
    return [samples[i] for i in order]


def batches(samples: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start:start + size]


def feature_batch(features: Sequence[np.ndarray], labels: Sequence[int], batch: Sequence[Sample],
                  window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) float32 windows of cached features, and their labels."""
    x = np.stack([features[s.clip][window_at(len(features[s.clip]), s.start, window)] for s in batch])
    y = np.array([labels[s.clip] for s in batch], dtype=np.int64)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


class FrameWindows(torch.utils.data.Dataset):
    """Windows of cached frames as (T, H, W, 3) uint8 tensors; safe in DataLoader worker processes."""

    def __init__(self, cache: FrameCache, clips: Sequence[Clip], lengths: Sequence[int], samples: Sequence[Sample],
                 window: int) -> None:
        self.paths = [cache.path(c) for c in clips]
        self.labels = [c.label for c in clips]
        self.lengths = list(lengths)
        self.samples = list(samples)
        self.window = window

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        frames = np.load(self.paths[s.clip], mmap_mode="r")
        chunk = np.ascontiguousarray(frames[window_at(self.lengths[s.clip], s.start, self.window)])
        return torch.from_numpy(chunk), self.labels[s.clip]
