"""CUDA paths (pinned uint8 upload, cuDNN autotuning, fp16/bf16 autocast, frames resized on the GPU, CLIP on its
own stream, --compile with CUDA graphs, channels_last_3d): the same labels as on the CPU.

They skip with the reason on a machine without CUDA; `scripts/gpu_check.sh` runs them on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.synthetic import LABELS, render
from har_stream.worker import BatchSettings, ModelWorker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
async def test_the_trained_model_labels_windows_as_on_the_cpu(tiny_checkpoint: Path, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cpu = load_cnn_lstm(tiny_checkpoint, torch.device("cpu"))
    gpu = load_cnn_lstm(tiny_checkpoint, torch.device("cuda"))
    rng = np.random.default_rng(1)
    h, w = cpu.info.crop
    windows = [render(label, cpu.info.frames, width=w, height=h, rng=rng) for label in LABELS for _ in range(3)]
    tops = {}
    for name, model, p in (("cpu", cpu, "fp32"), ("gpu", gpu, precision)):
        async with ModelWorker(model, BatchSettings(max_batch=32, precision=p)) as worker:
            assert worker._pin == (name == "gpu")
            probs = []
            for window in windows:
                feats = [await (await worker.encode(frame)) for frame in window]
                probs.append(await worker.classify(feats))
        tops[name] = np.argmax(np.stack(probs), axis=1)
    assert np.mean(tops["cpu"] == tops["gpu"]) >= 0.99


# -- the GPU half of issue 12: device-side preparation, CLIP's stream, --compile, channels_last_3d ----------------

CUDA = torch.device("cuda") if torch.cuda.is_available() else None
CPU = torch.device("cpu")


@pytest.fixture
def no_tf32():  # type: ignore[no-untyped-def]
    """fp32 on the card as on the CPU: cuDNN's and cuBLAS's TF32 would round each product to 10 mantissa bits."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _noisy_frames(sizes: list[tuple[int, int]]) -> list:  # type: ignore[type-arg]
    import av

    rng = np.random.default_rng(5)
    return [av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            .reformat(format="yuv420p") for w, h in sizes]


@pytest.mark.parametrize("geometry", ["r2plus1d-18", "s3d", "clip-224", "imagenet-112"])
def test_frames_resized_on_the_gpu_are_the_cpu_path_to_one_grey_level(geometry: str) -> None:
    """The float resize kernel on the card may round a pixel the other way: at most 1 grey level, rarely."""
    from har_stream.device_prepare import DeviceResize, SplitPreparer
    from har_stream.preprocess import FramePreparer
    from tests.test_device_prepare import GEOMETRIES, VIDEOS, _clip_frames

    resize, crop, resampling = GEOMETRIES[geometry]
    frames = _noisy_frames([(686, 512), (256, 454), (1280, 720)])
    if VIDEOS.is_dir():
        frames += _clip_frames(4)
    cpu, split = FramePreparer(resize, crop, resampling), SplitPreparer(resize, crop, resampling)
    expected = np.stack([cpu(f) for f in frames]).astype(int)
    got = DeviceResize(resize, crop, resampling)([split(f) for f in frames], CUDA).cpu().numpy().astype(int)
    diff = np.abs(expected - got)
    assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())


async def test_a_cuda_worker_resizes_on_the_gpu_by_default_and_labels_as_the_cpu(no_tf32: None) -> None:
    from har_stream.device_prepare import SplitPreparer
    from har_stream.models.torchvision_video import untrained_torchvision_video

    frames = _noisy_frames([(320, 240)] * 16)
    features, probs = {}, {}
    for device in (CPU, CUDA):
        model = untrained_torchvision_video("r3d-18", device)
        async with ModelWorker(model, BatchSettings(max_batch=16, precision="fp32")) as worker:
            assert worker.prepares_on_device == (device.type == "cuda")
            prepare = worker.preparer()
            assert isinstance(prepare, SplitPreparer) == (device.type == "cuda")
            futures = [await worker.encode(prepare(f)) for f in frames]
            feats = [await f for f in futures]
            features[device.type] = torch.stack(feats).cpu()
            probs[device.type] = await worker.classify(feats)
    step = 1.0 / 255.0 / min(model.info.std)  # one grey level, normalised
    assert float((features["cpu"] - features["cuda"]).abs().max()) <= step + 1e-5
    assert np.abs(probs["cpu"] - probs["cuda"]).max() < 1e-4  # 400 classes at about 1/400 each, untrained


def test_the_3d_cnns_run_channels_last_3d_on_the_gpu_with_the_cpu_logits(no_tf32: None) -> None:
    from har_stream.models.torchvision_video import untrained_torchvision_video

    gpu, cpu = untrained_torchvision_video("r2plus1d-18", CUDA), untrained_torchvision_video("r2plus1d-18", CPU)
    assert gpu.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    frames = torch.randint(0, 256, (16, 112, 112, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = gpu.classify(gpu.encode(frames).unsqueeze(0)).cpu()
        b = cpu.classify(cpu.encode(frames).unsqueeze(0))
    assert float((a - b).abs().max()) <= 1e-3 * float(b.max() - b.min())


async def test_clip_runs_on_its_own_stream_with_the_cpu_results(tmp_path: Path, no_tf32: None) -> None:
    from har_stream.models.clip_zero_shot import load_clip
    from tests.helpers.tiny_clip import IMAGE_SIZE, make_tiny_clip

    clip_dir = make_tiny_clip(tmp_path / "clip")
    frames = torch.randint(0, 256, (6, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(4))
    out = {}
    for device in (CPU, CUDA):
        encoder = load_clip(clip_dir, device)
        model = encoder.with_labels(("a", "b", "c"), "abc")
        assert (encoder.stream is not None) == (device.type == "cuda")
        if encoder.stream is not None:
            assert encoder.stream != torch.cuda.default_stream(device)
        async with ModelWorker(model, BatchSettings(max_batch=8, max_wait_ms=20.0)) as worker:
            futures = [await worker.encode(frame.numpy()) for frame in frames]
            out[device.type] = await worker.classify([await f for f in futures])
        direct = model.encode(frames.to(device))  # from the default stream: the handshake orders it
        assert direct.device.type == device.type
    np.testing.assert_allclose(out["cuda"], out["cpu"], atol=1e-4)


async def test_compile_on_cuda_uses_cuda_graphs_and_keeps_earlier_features(tiny_checkpoint: Path,
                                                                           no_tf32: None) -> None:
    """reduce-overhead replays CUDA graphs whose outputs are reused at the next call: features kept in the ring
    buffer must survive later batches (they are copied out)."""
    from har_stream.compiled import with_compile

    eager = load_cnn_lstm(tiny_checkpoint, CUDA)
    compiled = with_compile(load_cnn_lstm(tiny_checkpoint, CUDA), True)
    assert compiled.compile_guard.mode == "reduce-overhead"  # type: ignore[attr-defined]
    h, w = eager.info.crop
    rng = np.random.default_rng(2)
    batches = [torch.from_numpy(render(label, 16, width=w, height=h, rng=rng)) for label in LABELS]
    kept = [compiled.encode(b) for b in batches]  # each call replays the graph over the last one's memory
    assert compiled.compile_guard.failure is None, compiled.compile_guard.failure  # type: ignore[attr-defined]
    for batch, feats in zip(batches, kept, strict=True):
        torch.testing.assert_close(feats, eager.encode(batch), rtol=1e-3, atol=1e-3)
    logits = compiled.classify(torch.stack(kept))
    assert torch.equal(logits.argmax(1), eager.classify(torch.stack([eager.encode(b) for b in batches])).argmax(1))
