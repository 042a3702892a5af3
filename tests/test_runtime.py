"""Other runtimes (OpenVINO, ONNX Runtime) give PyTorch fp32's labels: on the test-trained model over real and
synthetic clips, on a Kinetics network, end to end through `har-stream analyse`; a missing runtime is a clear
message; conversions are cached by the weights' hash."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from har_stream.errors import ConfigError
from har_stream.models.cnn_lstm import CnnLstmModel, load_cnn_lstm
from har_stream.models.torchvision_video import TorchvisionVideoModel, model_info, spec_of
from har_stream.preprocess import FramePreparer
from har_stream.runtime import RuntimeMissingError, RuntimeModel, check_runtime, export_path, pick_runtime
from har_stream.synthetic import LABELS, render
from tests.helpers.clips import SHARED_DATA, check_labels_and_boundary, run_cli

CPU = torch.device("cpu")
RUNTIMES = ("openvino", "onnxruntime")
LOGIT_TOLERANCE = 1e-3  # of the logits' spread (at least 1): float32 reordering, no more


def _clip_windows(model: CnnLstmModel | TorchvisionVideoModel, per_clip: int = 4) -> torch.Tensor:
    """(N, T, h, w, 3) uint8 windows: the real clips (where present) and synthetic motion, prepared as served."""
    info = model.info
    preparer = FramePreparer.for_model(info)
    clips = []
    for path in sorted((SHARED_DATA / "videos").glob("*")):
        with av.open(str(path)) as container:
            step = max(1, round(float(container.streams.video[0].average_rate) / info.fps))
            clips.append(np.stack([preparer(f) for i, f in enumerate(container.decode(video=0)) if i % step == 0]))
    rng = np.random.default_rng(3)
    for label in LABELS:
        raw = render(label, info.frames + 12, width=160, height=120, rng=rng)
        clips.append(np.stack([preparer(av.VideoFrame.from_ndarray(f, format="rgb24")) for f in raw]))
    windows = []
    for clip in clips:
        starts = np.linspace(0, len(clip) - info.frames, per_clip).astype(int)
        windows += [clip[s:s + info.frames] for s in starts]
    return torch.from_numpy(np.stack(windows))


def _logits(model, windows: torch.Tensor, bf16: bool = False) -> torch.Tensor:  # type: ignore[no-untyped-def]
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for window in windows:
            feats = model.encode(window)
            out.append(model.classify(feats.unsqueeze(0))[0].float())
    return torch.stack(out)


def _assert_same_labels(reference: torch.Tensor, other: torch.Tensor) -> None:
    assert torch.equal(reference.argmax(1), other.argmax(1))
    spread = (reference.max(1).values - reference.min(1).values).clamp(min=1.0)
    assert ((reference - other).abs().max(1).values <= LOGIT_TOLERANCE * spread).all()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_trained_model_gives_torch_fp32s_labels(runtime: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    fast = RuntimeModel(model, runtime, home=tmp_path)
    windows = _clip_windows(model)
    assert len(windows) >= 16
    _assert_same_labels(_logits(model, windows), _logits(fast, windows))


def test_openvino_in_bf16_keeps_the_labels_of_the_trained_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    fast = RuntimeModel(model, "openvino", home=tmp_path)
    windows = _clip_windows(model, per_clip=8)
    agree = (_logits(model, windows).argmax(1) == _logits(fast, windows, bf16=True).argmax(1)).float().mean()
    assert agree >= 0.99, float(agree)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_kinetics_network_gives_torch_fp32s_logits(runtime: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = spec_of("r2plus1d-18")
    info = replace(model_info("r2plus1d-18"), weights_sha256="ab" * 32)
    model = TorchvisionVideoModel(spec.builder(weights=None), info, CPU, spec.channels_last_3d)
    fast = RuntimeModel(model, runtime, home=tmp_path)
    windows = _clip_windows(model, per_clip=1)[:3]
    _assert_same_labels(_logits(model, windows), _logits(fast, windows))


def test_conversions_are_cached_by_the_weights_hash(tiny_checkpoint: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)
    path = export_path(tmp_path, model, "encode", "openvino")
    assert path is not None and model.info.weights_sha256[:16] in str(path) and not path.exists()
    with caplog.at_level(logging.INFO, logger="har_stream.runtime"):
        RuntimeModel(model, "openvino", home=tmp_path)
        assert path.is_file() and path.with_suffix(".bin").is_file() and "converted and cached" in caplog.text
        caplog.clear()
        RuntimeModel(model, "openvino", home=tmp_path)
        assert "export cached" in caplog.text
    path.write_text("<not a model")  # a damaged cache entry is converted again, not fatal
    frames = _clip_windows(model, per_clip=1)[0]
    again = RuntimeModel(model, "openvino", home=tmp_path)
    _assert_same_labels(_logits(model, frames[None]), _logits(again, frames[None]))


def test_auto_picks_openvino_only_for_the_networks_measured_faster(tiny_checkpoint: Path) -> None:
    from har_stream.bench.machine import untrained_cnn_lstm_net

    assert pick_runtime("auto", load_cnn_lstm(tiny_checkpoint, CPU)) == "torch"  # the tiny test encoder
    assert pick_runtime("auto", CnnLstmModel(untrained_cnn_lstm_net(), CPU)) == "openvino"  # ResNet-18
    torch.manual_seed(0)
    spec = spec_of("s3d")
    s3d = TorchvisionVideoModel(spec.builder(weights=None), model_info("s3d"), CPU, True)
    assert pick_runtime("auto", s3d) == "openvino" and pick_runtime("torch", s3d) == "torch"
    with pytest.raises(ConfigError, match="unknown --runtime 'tensorrt'"):
        check_runtime("tensorrt")


@pytest.fixture
def without_openvino(tmp_path: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes `import openvino` fail as it does where it is not installed."""
    package = tmp_path / "hide" / "openvino"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('No module named openvino')\n")
    return package.parent


def test_a_missing_runtime_is_a_clear_message(tiny_checkpoint: Path, change_clip: Path, cli_env: dict[str, str],
                                              without_openvino: Path, tmp_path: Path) -> None:
    env = {**cli_env, "PYTHONPATH": f"{without_openvino}:{cli_env['PYTHONPATH']}"}
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--runtime", "openvino", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "--runtime openvino needs the openvino package, which is not installed" in proc.stderr
    assert "pip install openvino" in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "auto.json"  # auto without it: torch, and the same labels
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    check_labels_and_boundary(json.loads(out.read_text()), 8)


def test_missing_runtime_error_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # what an absent package looks like
    with pytest.raises(RuntimeMissingError, match=r"pip install onnxruntime onnx"):
        check_runtime("onnxruntime")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_analyse_on_another_runtime_labels_the_clip_right(runtime: str, tiny_checkpoint: Path, change_clip: Path,
                                                          cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--runtime", runtime, "--stride", "4", "--json", str(out), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    check_labels_and_boundary(json.loads(out.read_text()), 4)
