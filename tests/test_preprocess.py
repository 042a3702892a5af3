"""FramePreparer: resize (short side or exact) + centre crop (+ padding), checked against a PIL/numpy reference."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from har_stream.preprocess import FramePreparer, resized_size


def _smooth_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Gradients plus low-frequency waves: any resampler agrees on it, and any misplaced crop shows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = np.random.default_rng(seed).random(3) * 6.28
    img = np.empty((height, width, 3), dtype=np.float32)
    img[..., 0] = 255 * x / (width - 1)
    img[..., 1] = 255 * y / (height - 1)
    img[..., 2] = 128 + 100 * np.sin(x / 9 + phase[0]) * np.cos(y / 11 + phase[1])
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference(img: np.ndarray, size_wh: tuple[int, int], crop: tuple[int, int]) -> np.ndarray:
    """PIL resize to ``size_wh`` then a numpy centre crop (with zero padding around a too-small image)."""
    resized = np.asarray(Image.fromarray(img).resize(size_wh, Image.BILINEAR))
    h, w = resized.shape[:2]
    ch, cw = min(crop[0], h), min(crop[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    out = np.zeros((*crop, 3), dtype=np.uint8)
    pt, pl = (crop[0] - ch) // 2, (crop[1] - cw) // 2
    out[pt:pt + ch, pl:pl + cw] = resized[top:top + ch, left:left + cw]
    return out


def _close(out: np.ndarray, ref: np.ndarray, mean_tol: float = 2.0) -> None:
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < mean_tol and np.percentile(diff, 99) <= 12, (diff.mean(), diff.max())


def _frame(img: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(img, format="rgb24")


@pytest.mark.parametrize(("width", "height", "resize", "expected"), [
    (320, 240, 128, (170, 128)),  # long side truncated like torchvision's Resize (170.67 -> 170)
    (240, 320, 128, (128, 170)),
    (640, 360, 112, (199, 112)),
    (200, 200, 112, (112, 112)),
    (320, 240, (100, 150), (150, 100)),  # a pair is (h, w), exactly
])
def test_resized_size(width: int, height: int, resize: int | tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(width, height, resize) == expected


@pytest.mark.parametrize(("width", "height"), [(320, 240), (240, 320), (640, 360)])
def test_short_side_resize_and_centre_crop_match_the_reference(width: int, height: int) -> None:
    img = _smooth_image(width, height)
    out = FramePreparer(128, (112, 112))(_frame(img))
    assert out.flags.c_contiguous
    size = resized_size(width, height, 128)
    ref = _reference(img, size, (112, 112))
    _close(out, ref)
    # The tolerance is tight enough to see a crop taken from the corner instead of the centre.
    corner = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))[:112, :112]
    assert np.abs(out.astype(np.int16) - corner.astype(np.int16)).mean() > 5


def test_exact_resize_without_crop_margin() -> None:
    img = _smooth_image(320, 240, seed=1)
    out = FramePreparer((100, 150), (100, 150))(_frame(img))
    assert out.shape == (100, 150, 3)
    _close(out, _reference(img, (150, 100), (100, 150)))


def test_exact_resize_then_non_square_crop() -> None:
    img = _smooth_image(300, 200, seed=2)
    out = FramePreparer((120, 160), (96, 128))(_frame(img))
    _close(out, _reference(img, (160, 120), (96, 128)))


def test_source_smaller_than_the_crop_is_centred_on_black() -> None:
    img = _smooth_image(64, 48, seed=3)
    out = FramePreparer((40, 50), (112, 112))(_frame(img))
    assert out.shape == (112, 112, 3)
    top, left = (112 - 40) // 2, (112 - 50) // 2
    assert not out[:top].any() and not out[top + 40:].any()
    assert not out[:, :left].any() and not out[:, left + 50:].any()
    _close(out, _reference(img, (50, 40), (112, 112)))


def test_one_preparer_follows_a_stream_whose_resolution_changes() -> None:
    preparer = FramePreparer(64, (64, 64))
    for w, h in [(320, 240), (160, 120), (240, 320), (320, 240)]:  # e.g. WebRTC adapting its resolution
        img = _smooth_image(w, h, seed=w + h)
        _close(preparer(_frame(img)), _reference(img, resized_size(w, h, 64), (64, 64)))


def test_decoded_yuv_frames_are_converted_to_rgb() -> None:
    img = _smooth_image(320, 240, seed=4)
    yuv = _frame(img).reformat(format="yuv420p")  # what decoders hand over
    out = FramePreparer(128, (112, 112))(yuv)
    _close(out, _reference(img, (170, 128), (112, 112)), mean_tol=3.5)  # + chroma subsampling loss


def test_for_model_takes_the_geometry_from_the_model_info() -> None:
    info = ModelInfo(name="m", family="f", labels=("a", "b"), frames=16, fps=15.0, resize=(128, 171),
                     crop=(112, 112), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="x")
    img = _smooth_image(320, 240, seed=5)
    out = FramePreparer.for_model(info)(_frame(img))
    _close(out, _reference(img, (171, 128), (112, 112)))
