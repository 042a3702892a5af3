"""CUDA paths (pinned uint8 upload, cuDNN autotuning, fp16/bf16 autocast): the same labels as on the CPU.

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
