"""CNN-LSTM: the encode/classify split, self-describing checkpoints, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from har_stream.errors import ModelError
from har_stream.models.cnn_lstm import (
    CnnLstmConfig,
    CnnLstmModel,
    CnnLstmNet,
    file_sha256,
    load_cnn_lstm,
    read_checkpoint,
    save_checkpoint,
)

CPU = torch.device("cpu")
CFG = CnnLstmConfig(labels=("wave", "clap", "jump"), label_set="toy", encoder="tiny", hidden=16, layers=2,
                    frames=8, size=(32, 40), fps=10.0, extra={"trained_on": "synthetic"})


def _net(seed: int = 0) -> CnnLstmNet:
    torch.manual_seed(seed)
    return CnnLstmNet(CFG)


def _clips(b: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, CFG.frames, *CFG.size, 3), dtype=torch.uint8, generator=gen)


def _logits(model: CnnLstmModel, clips: torch.Tensor) -> torch.Tensor:
    b, t = clips.shape[:2]
    feats = model.encode(clips.flatten(0, 1))
    return model.classify(feats.view(b, t, -1))


def test_encode_then_classify_equals_the_trainable_forward() -> None:
    net = _net()
    model = CnnLstmModel(net, CPU)
    assert not net.training  # eval mode: BatchNorm uses running stats, dropout is off
    clips = _clips()
    normalised = model.normalise(clips.flatten(0, 1)).view(2, CFG.frames, 3, *CFG.size)
    with torch.no_grad():
        expected = net(normalised)
    torch.testing.assert_close(_logits(model, clips), expected, rtol=1e-5, atol=1e-5)
    assert model.encode(clips[0]).shape == (CFG.frames, net.feature_dim)


def test_checkpoint_round_trip_embeds_labels_and_config_and_gives_identical_logits(tmp_path: Path) -> None:
    net = _net()
    path = save_checkpoint(net, tmp_path / "sub" / "toy.pt", metrics={"val_acc": 0.75})
    assert path.is_file() and not list(path.parent.glob("*.tmp"))  # written atomically, no leftovers
    payload = read_checkpoint(path)
    assert payload["metrics"] == {"val_acc": 0.75}

    loaded = load_cnn_lstm(path, CPU, name="toy-model")
    assert loaded.net.cfg == CFG
    info = loaded.info
    assert (info.name, info.family, info.labels, info.label_set) == ("toy-model", "cnn-lstm", CFG.labels, "toy")
    assert (info.frames, info.fps, info.resize, info.crop) == (8, 10.0, (32, 40), (32, 40))
    assert info.weights_sha256 == file_sha256(path) and len(info.weights_sha256) == 64

    clips = _clips()
    assert torch.equal(_logits(loaded, clips), _logits(CnnLstmModel(net, CPU), clips))
    other = _net(seed=5)  # a differently initialised net gives different logits: the weights really loaded
    assert not torch.allclose(_logits(CnnLstmModel(other, CPU), clips), _logits(loaded, clips))


def _assert_one_line(err: pytest.ExceptionInfo[ModelError], *needles: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        load_cnn_lstm(tmp_path / "nope.pt", CPU)
    _assert_one_line(err, "no such checkpoint file", "nope.pt")


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n" * 50, encoding="utf-8")
    with pytest.raises(ModelError) as err:
        load_cnn_lstm(path, CPU)
    _assert_one_line(err, str(path), "not a readable PyTorch checkpoint", "pass a")


def test_a_torch_file_without_the_header(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(_net().state_dict(), path)  # a bare state_dict: readable, but not self-describing
    with pytest.raises(ModelError) as err:
        load_cnn_lstm(path, CPU)
    _assert_one_line(err, str(path), "not a har-stream CNN-LSTM checkpoint")


def _edited(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    source = save_checkpoint(_net(), tmp_path / "good.pt")
    payload = torch.load(source, map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(("edit", "needles"), [
    (lambda p: p["config"].update(hidden=32), ("weights do not fit", "size mismatch for head.")),
    (lambda p: p["config"].update(labels=["wave", "clap"]), ("weights do not fit", "head.classifier.1")),
    (lambda p: p["state_dict"].pop("head.pool.score.0.bias"), ("weights do not fit", "Missing key")),
    (lambda p: p["config"].update(encoder="vgg"), ("unknown CNN-LSTM encoder 'vgg'",)),
    (lambda p: p["config"].update(hidden="wide"), ("config cannot build a CNN-LSTM",)),
    (lambda p: p.pop("config"), ("damaged CNN-LSTM checkpoint",)),
    (lambda p: p.update(state_dict=None), ("damaged CNN-LSTM checkpoint",)),
], ids=["hidden", "labels", "missing-key", "encoder", "bad-type", "no-config", "no-state"])
def test_checkpoints_that_do_not_fit_are_model_errors(tmp_path: Path, edit, needles: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    path = _edited(tmp_path, edit)
    with pytest.raises(ModelError) as err:
        load_cnn_lstm(path, CPU)
    _assert_one_line(err, str(path), *needles)


def test_config_validation() -> None:
    with pytest.raises(ModelError, match="unknown CNN-LSTM encoder"):
        CnnLstmConfig(labels=("a", "b"), encoder="vgg")
    with pytest.raises(ModelError, match="at least two labels"):
        CnnLstmConfig(labels=("a",))
    assert CnnLstmConfig.from_dict({**CFG.to_dict(), "unknown_future_key": 1}) == CFG


def test_checkpoint_records_its_resampling_and_the_engine_serves_with_it(tmp_path: Path) -> None:
    from dataclasses import replace

    from har_stream.models.resampling import TORCHVISION_IMAGE
    from har_stream.preprocess import FramePreparer

    torch.manual_seed(0)
    net = CnnLstmNet(replace(CFG, resampling=TORCHVISION_IMAGE))
    path = save_checkpoint(net, tmp_path / "bilinear.pt")
    assert read_checkpoint(path)["config"]["resampling"] == TORCHVISION_IMAGE.to_dict()
    loaded = load_cnn_lstm(path, CPU)
    assert loaded.info.resampling == TORCHVISION_IMAGE
    assert FramePreparer.for_model(loaded.info).resampling == TORCHVISION_IMAGE


def test_a_checkpoint_from_before_resampling_was_recorded_is_served_with_swscale_area(tmp_path: Path) -> None:
    from har_stream.models.resampling import SWSCALE_AREA

    path = save_checkpoint(_net(), tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["resampling"]  # what version-1 checkpoints written before this field look like
    torch.save(payload, path)
    assert load_cnn_lstm(path, CPU).info.resampling == SWSCALE_AREA


@pytest.mark.parametrize("record", ["bilinear", {"filter": "lanczos"}])
def test_an_unreadable_resampling_record_is_a_one_line_error(tmp_path: Path, record: object) -> None:
    path = save_checkpoint(_net(), tmp_path / "bad.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["resampling"] = record
    torch.save(payload, path)
    with pytest.raises(ModelError) as err:
        load_cnn_lstm(path, CPU)
    _assert_one_line(err, str(path), "resampling")
