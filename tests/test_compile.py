"""``--compile``: the trained tiny model compiled by torch.compile (inductor, on this CPU) labels every window as
eager does; a compile that fails falls back to eager with the reason logged; what cannot be compiled is left
as it is. The first test pays for one inductor compile (≈ 5 s with a warm cache, up to about a minute cold).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.compiled import compile_mode, with_compile
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.synthetic import LABELS, render
from har_stream.worker import BatchSettings, ModelWorker

CPU = torch.device("cpu")


def _windows(model, per_label: int = 2) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    h, w = model.info.crop
    return [render(label, model.info.frames, width=w, height=h, rng=rng) for label in LABELS for _ in range(per_label)]


async def _probabilities(model, windows: list[np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each window's 16 frames as one encode batch (one shape: one compile), then classified."""
    out = []
    async with ModelWorker(model, BatchSettings(max_batch=model.info.frames, max_wait_ms=50.0)) as worker:
        for window in windows:
            futures = [await worker.encode(frame) for frame in window]
            out.append(await worker.classify([await f for f in futures]))
    return np.stack(out)


async def test_compiled_model_labels_windows_as_eager(tiny_checkpoint: Path) -> None:
    eager = load_cnn_lstm(tiny_checkpoint, CPU)
    compiled = with_compile(load_cnn_lstm(tiny_checkpoint, CPU), True)
    assert compiled.compile_guard.mode == compile_mode(CPU) == "default"  # type: ignore[attr-defined]
    windows = _windows(eager)
    expected, got = await _probabilities(eager, windows), await _probabilities(compiled, windows)
    assert compiled.compile_guard.failure is None and compiled.compile_guard.compiled is not None  # type: ignore[attr-defined]
    assert np.array_equal(expected.argmax(axis=1), got.argmax(axis=1))
    assert np.abs(expected - got).max() < 1e-4  # fused kernels reorder float sums, nothing more


async def test_a_compile_that_fails_falls_back_to_eager_and_says_why(tiny_checkpoint: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken_backend(gm, example_inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no C compiler on this machine")

    eager = load_cnn_lstm(tiny_checkpoint, CPU)
    model = with_compile(load_cnn_lstm(tiny_checkpoint, CPU), True, backend=broken_backend)
    windows = _windows(eager, per_label=1)
    with caplog.at_level(logging.WARNING, logger="har_stream.compiled"):
        got = await _probabilities(model, windows)
    guard = model.compile_guard  # type: ignore[attr-defined]
    assert guard.compiled is None and "no C compiler on this machine" in guard.failure
    assert [r for r in caplog.records if "torch.compile failed" in r.getMessage() and "running eager" in r.getMessage()]
    assert len([r for r in caplog.records if "torch.compile failed" in r.getMessage()]) == 1  # said once
    assert np.array_equal(got, await _probabilities(eager, windows))


def test_what_is_not_compiled_is_left_as_it_is(tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    assert with_compile(model, False) is model

    class OnOpenVino:  # what runtime.RuntimeModel looks like to with_compile
        runtime = "openvino"
        info = model.info
        device = CPU

    other = OnOpenVino()
    with caplog.at_level(logging.INFO, logger="har_stream.compiled"):
        assert with_compile(other, True) is other  # type: ignore[arg-type]
    assert "--compile skipped: its network runs on openvino" in caplog.text


def test_compiled_models_share_the_weights_and_leave_the_original_eager(tiny_checkpoint: Path) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    compiled = with_compile(model, True)
    assert compiled is not model and compiled.net is model.net  # type: ignore[attr-defined]
    assert with_compile(compiled, True) is compiled  # applied twice (a backend and a command): compiled once
    assert model._encoder is model.net.encoder  # the original still calls its encoder directly
    assert compile_mode(torch.device("cuda")) == "reduce-overhead"  # CUDA graphs on a card


def test_analyse_with_compile_gives_the_eager_segments(tiny_checkpoint: Path, change_clip: Path,
                                                       cli_env: dict[str, str], tmp_path: Path) -> None:
    """The CLI end to end (a real process): ``--compile`` changes how the encoder runs, not one label."""
    from tests.test_analyse_cli import analyse_json

    eager = analyse_json(change_clip, tiny_checkpoint, cli_env, tmp_path / "eager.json", "--stride", "4",
                         "--runtime", "torch")
    compiled = analyse_json(change_clip, tiny_checkpoint, cli_env, tmp_path / "compiled.json", "--stride", "4",
                            "--runtime", "torch", "--compile")
    pairs = zip(eager["segment_predictions"], compiled["segment_predictions"], strict=True)
    for a, b in pairs:
        assert (a["start"], a["end"], a["label"]) == (b["start"], b["end"], b["label"])
        assert abs(a["confidence"] - b["confidence"]) < 1e-4


def test_serve_takes_compile_from_the_option_the_environment_or_the_file(tmp_path: Path) -> None:
    from server.config import load_config

    assert load_config({}, env={}).compile is False
    assert load_config({"compile": True}, env={}).compile is True
    assert load_config({}, env={"HAR_STREAM_COMPILE": "1"}).compile is True
    file = tmp_path / "serve.toml"
    file.write_text("compile = true\n")
    assert load_config({}, env={}, config_file=file).compile is True


def test_cuda_graph_batches_are_padded_to_a_few_sizes_in_their_layout() -> None:
    from har_stream.compiled import bucket, pad_to_bucket

    assert [bucket(n) for n in (1, 2, 3, 5, 8, 9, 255, 256)] == [1, 2, 4, 8, 8, 16, 256, 256]
    x = torch.randn(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    padded = pad_to_bucket(x)
    assert padded.shape == (4, 3, 8, 8) and padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[:3], x) and not padded[3].any()
    clips = torch.randn(5, 3, 4, 8, 8).contiguous(memory_format=torch.channels_last_3d)
    assert pad_to_bucket(clips).is_contiguous(memory_format=torch.channels_last_3d)
    assert pad_to_bucket(x[:2]) is not None and pad_to_bucket(torch.randn(4, 3)).shape == (4, 3)
