"""CLIP on its own CUDA stream: on a CPU there is none, and CLIP's results through the worker (which runs its
batches under ``cuda_stream()``) are exactly what the model computes when called directly. The CUDA side (a
stream of its own, the same labels as on the CPU) is in tests/test_cuda.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from har_stream.models.clip_zero_shot import load_clip
from har_stream.worker import BatchSettings, ModelWorker
from tests.helpers.tiny_clip import IMAGE_SIZE, make_tiny_clip

CPU = torch.device("cpu")
LABELS = ("ApplyEyeMakeup", "Basketball", "jumping jack", "YoYo")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_on_a_cpu_clip_has_no_stream_and_its_context_changes_nothing(clip_dir: Path) -> None:
    encoder = load_clip(clip_dir, CPU)
    model = encoder.with_labels(LABELS, "mini")
    assert encoder.stream is None
    assert isinstance(model.cuda_stream(), contextlib.nullcontext)
    with model.cuda_stream(), encoder._on_stream():
        assert model.encode(torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8)).shape == (1, 16)


async def test_clip_through_the_worker_equals_the_direct_call_and_transformers(clip_dir: Path) -> None:
    frames = torch.randint(0, 256, (6, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(4))
    model = load_clip(clip_dir, CPU).with_labels(LABELS, "mini")
    direct_features = model.encode(frames)
    direct = torch.softmax(model.classify(direct_features.unsqueeze(0)), dim=-1)[0]
    async with ModelWorker(model, BatchSettings(max_batch=8, max_wait_ms=20.0)) as worker:
        futures = [await worker.encode(frame.numpy()) for frame in frames]
        features = [await f for f in futures]
        probs = await worker.classify(features)
    assert torch.equal(torch.stack(features), direct_features)
    torch.testing.assert_close(torch.from_numpy(probs), direct, rtol=0, atol=1e-6)

    ref = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
    inputs = processor(images=list(frames.numpy()), return_tensors="pt")
    with torch.inference_mode():
        out = ref.get_image_features(pixel_values=inputs["pixel_values"])
    expected = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
    torch.testing.assert_close(torch.stack(features), expected, rtol=1e-4, atol=1e-4)
