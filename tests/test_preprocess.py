"""FramePreparer: resize (short side or exact) + centre crop (+ padding), checked against a PIL/numpy reference."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from har_stream.preprocess import FramePreparer, centre_crop, resized_size


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


# ---------------------------------------------------------------------------------------- reference parity
# Margins (size - crop) / 2 that are whole, .5 with an even integer part (round half to even keeps it) and
# .5 with an odd one (torchvision rounds up, transformers truncates): 16, 8.5, 29.5, 58.5, 59.5.
@pytest.mark.parametrize(("height", "width"), [(144, 144), (129, 171), (128, 171), (229, 341), (256, 343)])
@pytest.mark.parametrize("crop", [(112, 112), (224, 224), (100, 150)])
def test_centre_crop_rounds_like_torchvision_and_truncates_like_transformers(height: int, width: int,
                                                                            crop: tuple[int, int]) -> None:
    import torch
    import torchvision.transforms.functional as F
    from transformers.image_transforms import center_crop as hf_center_crop

    img = _smooth_image(width, height, seed=height + width)
    chw = torch.from_numpy(img).permute(2, 0, 1)
    torchvision_crop = F.center_crop(chw, list(crop)).permute(1, 2, 0).numpy()
    assert np.array_equal(centre_crop(img, crop, "round"), torchvision_crop)
    transformers_crop = hf_center_crop(img, crop, input_data_format="channels_last")
    if crop[0] <= height and crop[1] <= width:  # transformers' numpy crop pads differently; its processors pad first
        assert np.array_equal(centre_crop(img, crop, "floor"), transformers_crop)
    odd = [(n - c) / 2 for n, c in zip((height, width), crop, strict=True) if (n - c) % 2 and n >= c]
    if any(int(m) % 2 for m in odd):  # a margin like 29.5: the two conventions disagree, and both are met
        assert not np.array_equal(centre_crop(img, crop, "round"), centre_crop(img, crop, "floor"))


@pytest.mark.parametrize(("height", "width"), [(60, 80), (100, 90), (111, 113)])
def test_centre_crop_pads_a_small_image_like_torchvision(height: int, width: int) -> None:
    import torch
    import torchvision.transforms.functional as F

    img = _smooth_image(width, height, seed=7)
    expected = F.center_crop(torch.from_numpy(img).permute(2, 0, 1), [112, 112]).permute(1, 2, 0).numpy()
    assert np.array_equal(centre_crop(img, (112, 112), "round"), expected)


@pytest.mark.parametrize("name", ["r2plus1d-18", "s3d", "mvit-v2-s"])
@pytest.mark.parametrize(("width", "height"), [(320, 240), (343, 256), (240, 427), (1920, 1080), (100, 80)])
def test_torchvision_models_get_their_preset_output_bit_for_bit(name: str, width: int, height: int) -> None:
    import torch

    from har_stream.models.torchvision_video import model_info, spec_of

    info = model_info(name)
    img = _smooth_image(width, height, seed=width)
    out = FramePreparer.for_model(info)(_frame(img))
    preset = spec_of(name).weights.transforms()
    ref = preset(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0))  # (C, T=1, H, W), normalised
    mean = torch.tensor(preset.mean).view(3, 1, 1, 1)
    std = torch.tensor(preset.std).view(3, 1, 1, 1)
    levels = ((ref.double() * std.double() + mean.double()) * 255)[:, 0].permute(1, 2, 0).numpy()
    assert out.shape == (*info.crop, 3)
    assert np.abs(out - levels).max() < 0.01


def test_the_area_path_is_the_default_and_is_recorded_by_name() -> None:
    from har_stream.models.resampling import SWSCALE_AREA, TORCHVISION_VIDEO, Resampling

    assert FramePreparer(64, (64, 64)).resampling == SWSCALE_AREA
    assert Resampling.from_dict(TORCHVISION_VIDEO.to_dict()) == TORCHVISION_VIDEO
    with pytest.raises(Exception, match="unknown resampling filter"):
        Resampling("lanczos")  # type: ignore[arg-type]
