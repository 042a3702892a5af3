"""Training inputs: clip augmentations are the same for every frame of a clip, and validation windows are the
engine's windows."""

from __future__ import annotations

import pytest
import torch

from har_stream.errors import ConfigError
from har_stream.training.augment import ClipAugment
from har_stream.training.windows import engine_windows, window_at


def still_clips(batch: int = 6, frames: int = 5) -> torch.Tensor:
    """(B, T, 3, H, W): every frame of a clip the same picture, with a bright block off-centre."""
    one = torch.zeros(batch, 1, 3, 24, 32)
    one[:, :, :, 4:12, 3:9] = 1.0
    return one.expand(batch, frames, 3, 24, 32).clone()


def test_one_crop_and_one_flip_per_clip() -> None:
    out = ClipAugment(min_area=0.6, flip=True)(still_clips(), torch.Generator().manual_seed(1))
    assert out.shape == (6, 5, 3, 24, 32)
    for clip in out:  # a still clip stays still: no frame is cropped or flipped differently
        assert all(torch.equal(clip[0], frame) for frame in clip[1:])
    left = out[:, 0, 0, :, :16].sum(dim=(1, 2))
    right = out[:, 0, 0, :, 16:].sum(dim=(1, 2))
    assert (right > left).any() and (left > right).any()  # some clips flipped, some not


def test_no_crop_and_no_flip_is_the_identity() -> None:
    clips = still_clips()
    assert torch.equal(ClipAugment(min_area=1.0, flip=False)(clips, torch.Generator().manual_seed(0)), clips)
    with pytest.raises(ConfigError, match="crop-area"):
        ClipAugment(min_area=0.0)


def test_the_same_seed_gives_the_same_augmentation() -> None:
    a = ClipAugment()(still_clips(), torch.Generator().manual_seed(5))
    b = ClipAugment()(still_clips(), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_validation_windows_are_the_engines() -> None:
    # 16-frame windows every 8 frames, then the window aligned to the end (as analyse flushes it)
    assert [w[0] for w in engine_windows(36, 16, 8)] == [0, 8, 16, 20]
    assert all(len(w) == 16 and w == tuple(range(w[0], w[0] + 16)) for w in engine_windows(36, 16, 8))
    assert engine_windows(32, 16, 8) == [tuple(range(s, s + 16)) for s in (0, 8, 16)]  # no extra end window
    assert engine_windows(3, 5, 2) == [(0, 0, 1, 1, 2)]  # shorter than a window: its frames repeated in order
    assert window_at(3, 0, 5).tolist() == [0, 0, 1, 1, 2]
    assert window_at(40, 7, 16).tolist() == list(range(7, 23))
