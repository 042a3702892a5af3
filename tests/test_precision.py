"""`--precision auto`: bf16 on a CPU with native bf16 only when the model's labels agree with fp32 (measured)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.models.base import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, VideoModel
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.precision import (
    AGREEMENT_MIN,
    DecisionCache,
    PrecisionChoice,
    bf16_agreement,
    choose_auto,
    cpu_flags,
    probe_sequences,
    resolve_precision,
)
from har_stream.preprocess import FramePreparer
from har_stream.synthetic import LABELS, render
from har_stream.worker import BatchSettings, ModelWorker
from tests.helpers.clips import SHARED_DATA

CPU = torch.device("cpu")
NATIVE = frozenset({"avx512f", "avx512_bf16"})


class NearTie(VideoModel):
    """Two labels whose logits differ by 2^-9 of the input: bf16's 8-bit mantissa rounds the difference away."""

    def __init__(self) -> None:
        self.device = CPU
        self.info = ModelInfo(name="near-tie", family="test", labels=("a", "b"), frames=4, fps=15.0, resize=8,
                              crop=(8, 8), mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="t",
                              weights_sha256="0" * 64)
        self.head = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [1.0 + 2 ** -9]]))
        self.calls = 0

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return frames.float().mean(dim=(1, 2, 3)).div(255.0).add(0.5).unsqueeze(1)

    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        return self.head(windows.float().mean(dim=1))


def test_a_cpu_without_native_bf16_stays_on_fp32(tiny_checkpoint: Path) -> None:
    choice = choose_auto(load_cnn_lstm(tiny_checkpoint, CPU), flags=frozenset({"avx2", "avx512f"}))
    assert choice == PrecisionChoice("fp32", "this CPU has no native bf16 (neither AVX512-BF16 nor AMX)")


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_bf16_is_chosen_when_the_trained_model_agrees(tiny_checkpoint: Path, flag: str) -> None:
    choice = choose_auto(load_cnn_lstm(tiny_checkpoint, CPU), flags=frozenset({flag}))
    assert choice.precision == "bf16" and choice.agreement is not None and choice.agreement >= AGREEMENT_MIN
    assert flag in choice.reason and "12 synthetic probe windows" in choice.reason


def test_fp32_is_kept_when_bf16_changes_the_labels() -> None:
    model = NearTie()
    assert bf16_agreement(model, probe_sequences(4, (8, 8), 3)) == 0.0  # every window flips from b to a
    choice = choose_auto(model, flags=NATIVE)
    assert choice.precision == "fp32" and choice.agreement == 0.0
    assert "only 0% of 12 synthetic probe windows (needs 99%)" in choice.reason


def _windows(frames: np.ndarray, length: int, stride: int) -> list[np.ndarray]:
    return [frames[i:i + length] for i in range(0, len(frames) - length + 1, stride)]


def test_the_trained_model_keeps_its_labels_in_bf16_on_real_and_synthetic_clips(tiny_checkpoint: Path) -> None:
    """The measurement behind choosing bf16: top-1 agreement with fp32 over hundreds of windows (>= 99 %)."""
    import av

    model = load_cnn_lstm(tiny_checkpoint, CPU)
    frames, fps = model.info.frames, model.info.fps
    preparer = FramePreparer.for_model(model.info)
    clips = []
    for path in sorted((SHARED_DATA / "videos").glob("*")):  # the real clips, where this checkout has them
        with av.open(str(path)) as container:
            step = max(1, round(float(container.streams.video[0].average_rate) / fps))
            clips.append(np.stack([preparer(f) for i, f in enumerate(container.decode(video=0)) if i % step == 0]))
    rng = np.random.default_rng(5)  # held-out synthetic motion, the model's own domain
    for label in LABELS:
        raw = render(label, 48, width=160, height=120, rng=rng)
        clips.append(np.stack([preparer(av.VideoFrame.from_ndarray(f, format="rgb24")) for f in raw]))
    windows = np.stack([w for clip in clips for w in _windows(clip, frames, 2)])
    assert len(windows) >= 60
    sequences = windows  # each window its own sequence: bf16_agreement slides over none
    agreement = bf16_agreement(model, sequences)
    assert agreement >= AGREEMENT_MIN, agreement


def test_the_decision_is_remembered_per_weights_and_machine(tmp_path: Path) -> None:
    model = NearTie()
    cache = DecisionCache(tmp_path)
    first = choose_auto(model, flags=NATIVE, cache=cache)
    calls = model.calls
    assert calls > 0 and (tmp_path / "precision.json").is_file()
    assert choose_auto(model, flags=NATIVE, cache=cache) == first and model.calls == calls  # not probed again
    other = NearTie()
    other.info = replace(other.info, weights_sha256="1" * 64)  # other weights: probed afresh
    choose_auto(other, flags=NATIVE, cache=cache)
    assert other.calls > 0
    (tmp_path / "precision.json").write_text("{not json")
    assert choose_auto(NearTie(), flags=NATIVE, cache=cache).precision == "fp32"  # a damaged file is ignored


def test_resolve_logs_which_and_why_and_the_worker_uses_it(tiny_checkpoint: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    assert resolve_precision(model, "fp32") == PrecisionChoice("fp32", "asked for")
    with caplog.at_level(logging.INFO, logger="har_stream.precision"):
        choice = resolve_precision(model, "auto", home=tmp_path)
    native = any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))
    assert choice.precision == ("bf16" if native else "fp32")  # this machine's own answer
    assert f"precision {choice.precision} ({choice.reason})" in caplog.text
    worker = ModelWorker(model, BatchSettings(precision="auto"))
    assert worker.precision is choice  # decided once per model
    assert worker._dtype == (torch.bfloat16 if native else None)
