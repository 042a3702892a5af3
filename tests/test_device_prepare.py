"""The device-side preparer (``device_prepare.py``) gives the CPU preparer's frames, byte for byte.

On a GPU the decode thread only converts frames to RGB and the worker resizes and crops them on the card; here
the very same code runs with the CPU as the device (``prepare_on="device"``), on the real clips (several sizes
in one batch, as several streams give) and on synthetic frames with odd margins, portrait frames and frames
smaller than the crop. Bound asserted: identical (max |diff| = 0 grey levels). On CUDA the float resize kernel
may round a pixel the other way; tests/test_cuda.py bounds that at 1 grey level.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from har_stream.device_prepare import DeviceResize, NativeFrame, SplitPreparer, prepares_on_device
from har_stream.errors import ConfigError
from har_stream.models.resampling import SWSCALE_AREA, TORCHVISION_IMAGE, TORCHVISION_VIDEO, Resampling
from har_stream.models.torchvision_video import model_info, untrained_torchvision_video
from har_stream.preprocess import FramePreparer
from har_stream.worker import BatchSettings, ModelWorker
from tests.helpers.clips import SHARED_DATA

VIDEOS = SHARED_DATA / "videos"
CPU = torch.device("cpu")
# transformers' CLIPImageProcessor: bicubic, antialiased, torchvision v2's uint8 kernel, truncated crop
CLIP_RESAMPLING = Resampling("bicubic", antialias=True, kernel="uint8", crop_rounding="floor", reference="test")
GEOMETRIES = {  # (resize, crop, resampling): every kind of reference transform the engine reproduces
    "r2plus1d-18": ((128, 171), (112, 112), TORCHVISION_VIDEO),
    "s3d": (256, (224, 224), TORCHVISION_VIDEO),
    "clip-224": (224, (224, 224), CLIP_RESAMPLING),
    "imagenet-112": (112, (112, 112), TORCHVISION_IMAGE),
}


def _frame(width: int, height: int, seed: int) -> av.VideoFrame:
    """A noisy yuv420p frame, as a decoder gives them (noise makes every rounding difference show)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _clip_frames(count: int = 6) -> list[av.VideoFrame]:
    frames = []
    for path in sorted(VIDEOS.glob("*")):
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= count:
                    break
                frames.append(frame)
    return frames


def _both(frames: list[av.VideoFrame], resize: int | tuple[int, int], crop: tuple[int, int],
          resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
    cpu = FramePreparer(resize, crop, resampling)
    split = SplitPreparer(resize, crop, resampling)
    expected = np.stack([cpu(f) for f in frames])
    got = DeviceResize(resize, crop, resampling)([split(f) for f in frames], CPU)
    assert got.dtype == torch.uint8 and got.device == CPU
    return expected, got.numpy()


@pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real clips not present ({VIDEOS} is absent)")
@pytest.mark.parametrize("geometry", tuple(GEOMETRIES))
def test_real_clips_of_several_sizes_in_one_batch_equal_the_cpu_path(geometry: str) -> None:
    frames = _clip_frames()
    assert len({(f.width, f.height) for f in frames}) >= 3  # 340x256, 454x256, 320x240: three groups in a batch
    expected, got = _both(frames, *GEOMETRIES[geometry])
    assert np.array_equal(expected, got), np.abs(expected.astype(int) - got).max()


@pytest.mark.parametrize("geometry", tuple(GEOMETRIES))
@pytest.mark.parametrize("size", [(686, 512), (684, 512), (256, 454), (641, 479), (1280, 720)])
def test_synthetic_frames_with_odd_margins_and_portrait_equal_the_cpu_path(geometry: str,
                                                                           size: tuple[int, int]) -> None:
    expected, got = _both([_frame(*size, seed) for seed in range(3)], *GEOMETRIES[geometry])
    assert np.array_equal(expected, got), np.abs(expected.astype(int) - got).max()


def test_frames_smaller_than_the_crop_are_padded_as_the_cpu_path_pads() -> None:
    resampling = TORCHVISION_VIDEO
    expected, got = _both([_frame(90, 60, 0), _frame(91, 61, 1)], (97, 101), (112, 120), resampling)
    assert np.array_equal(expected, got)
    assert (got[:, :7] == 0).all() and (got[:, -8:] == 0).all()  # the odd pixel at the bottom, as torchvision


def test_crops_a_cpu_preparer_made_pass_through_beside_native_frames() -> None:
    """One batch may mix both (a source started before the worker resized on the device, or tests)."""
    resize, crop, resampling = GEOMETRIES["r2plus1d-18"]
    cpu = FramePreparer(resize, crop, resampling)
    frames = [_frame(320, 240, 0), _frame(400, 300, 1), _frame(320, 240, 2)]
    mixed: list[np.ndarray | NativeFrame] = [cpu(frames[0]), NativeFrame(cpu.reference_rgb(frames[1])),
                                             cpu(frames[2])]
    got = DeviceResize(resize, crop, resampling)(mixed, CPU).numpy()
    assert np.array_equal(got, np.stack([cpu(f) for f in frames]))


def test_where_frames_are_resized() -> None:
    video, area = model_info("r2plus1d-18"), model_info("r2plus1d-18")
    from dataclasses import replace

    area = replace(area, resampling=SWSCALE_AREA)
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert prepares_on_device("auto", video, cuda) and not prepares_on_device("auto", video, CPU)
    assert prepares_on_device("device", video, CPU) and not prepares_on_device("cpu", video, cuda)
    assert not prepares_on_device("device", area, cuda)  # swscale AREA resizes while converting: stays on the CPU
    with pytest.raises(ConfigError, match="prepare_on"):
        BatchSettings(prepare_on="gpu")
    with pytest.raises(ConfigError, match="AREA"):
        DeviceResize(112, (112, 112), SWSCALE_AREA)


async def test_a_worker_that_resizes_on_the_device_gives_the_same_features() -> None:
    """The whole path: ``worker.preparer()`` in the source's place, the worker's batch resize, ``encode``; and a
    CPU preparer handed to the worker (CLIP's, for frames it gets undecoded) switched to the split one."""
    model = untrained_torchvision_video("r2plus1d-18", CPU)  # encode = normalise: cheap, and it is the input
    frames = [_frame(*size, seed) for seed, size in enumerate([(320, 240), (686, 512), (320, 240), (256, 454)])]
    features = {}
    for where in ("cpu", "device"):
        settings = BatchSettings(max_batch=8, max_wait_ms=20.0, prepare_on=where)
        async with ModelWorker(model, settings, prepare=FramePreparer.for_model(model.info)) as worker:
            assert worker.prepares_on_device == (where == "device")
            prepare = worker.preparer()
            assert isinstance(prepare, SplitPreparer if where == "device" else FramePreparer)
            assert isinstance(worker.prepare, SplitPreparer if where == "device" else FramePreparer)
            futures = [await worker.encode(prepare(f)) for f in frames[:2]]
            futures += [await worker.encode(f) for f in frames[2:]]  # undecoded: the worker's own preparer
            features[where] = torch.stack([await f for f in futures])
    assert torch.equal(features["cpu"], features["device"])
