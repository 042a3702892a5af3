"""``--resume`` continues from the saved epoch with the saved optimiser state: a run stopped twice (once in each
stage) and resumed ends with exactly the weights of a run that never stopped."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from har_stream.datasets import open_dataset
from har_stream.errors import ConfigError
from har_stream.models.cnn_lstm import read_checkpoint
from har_stream.training.settings import RunOptions, TrainSettings
from har_stream.training.trainer import Trainer
from tests.helpers.motion_dataset import make_motion_dataset
from tests.helpers.training import device_for_tests

SETTINGS = TrainSettings(encoder="tiny", pretrained=False, size=32, hidden=16, layers=1, dropout=0.2,
                         epochs=2, fine_tune_epochs=2, batch_size=4, lr=3e-3, fine_tune_lr=3e-3,
                         clips_per_video=2, val_fraction=0.34, flip=True, seed=3, precision="fp32")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    data = make_motion_dataset(tmp_path_factory.mktemp("small"), train_groups=3, test_groups=1, clips_per_group=1,
                               seconds=1.2, width=64, height=48)
    return open_dataset(data.root)


def train(dataset, out: Path, cache: Path, *, resume: bool = False, stop_after: int | None = None,
          settings: TrainSettings = SETTINGS):
    options = RunOptions(device=device_for_tests(), workers=0, stop_after=stop_after)
    return Trainer(dataset, settings, out, options, cache=cache, say=lambda line: None).run(resume=resume)


@pytest.fixture
def deterministic():
    """Bit-for-bit repeatable kernels (matters on a GPU; a CPU run is repeatable anyway)."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b) if device_for_tests() == "cpu" else torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resume_continues_with_the_saved_optimiser_state(dataset, tmp_path: Path, one_torch_thread,
                                                         deterministic) -> None:
    cache = tmp_path / "cache"
    whole = train(dataset, tmp_path / "whole", cache)
    assert whole.finished and whole.epochs_done == 4

    first = train(dataset, tmp_path / "split", cache, stop_after=1)  # stops inside stage 1
    assert not first.finished and first.epochs_done == 1
    saved = read_checkpoint(first.last)["resume"]
    assert saved["epoch"] == 1 and saved["optimizer"]["state"], "Adam moments are saved"

    second = train(dataset, tmp_path / "split", cache, resume=True, stop_after=3)  # stops inside stage 2
    assert second.epochs_done == 3 and not second.finished
    third = train(dataset, tmp_path / "split", cache, resume=True)
    assert third.finished and third.epochs_done == 4

    a = read_checkpoint(whole.last)
    b = read_checkpoint(third.last)
    for key, tensor in a["state_dict"].items():
        assert same(tensor, b["state_dict"][key]), key
    moments = zip(a["resume"]["optimizer"]["state"].values(), b["resume"]["optimizer"]["state"].values())
    for sa, sb in moments:
        assert int(sa["step"]) == int(sb["step"]) and same(sa["exp_avg"], sb["exp_avg"])

    def rows(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "clips_per_s")} for r in csv.DictReader(path.open())]

    if device_for_tests() == "cpu":
        assert rows(whole.log) == rows(third.log)
    else:
        for ra, rb in zip(rows(whole.log), rows(third.log), strict=True):
            assert (ra["epoch"], ra["stage"], ra["lr"]) == (rb["epoch"], rb["stage"], rb["lr"])
            assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), rel=1e-4)
    assert [int(r["epoch"]) for r in rows(third.log)] == [1, 2, 3, 4]


def test_resume_refuses_other_settings_and_a_new_run_refuses_an_old_folder(dataset, tmp_path: Path,
                                                                           one_torch_thread) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    train(dataset, out, cache, stop_after=1)
    with pytest.raises(ConfigError, match=r"already holds a training run .*--resume"):
        train(dataset, out, cache)
    with pytest.raises(ConfigError, match=r"--resume with different settings .*lr 0.003 → 0.01"):
        train(dataset, out, cache, resume=True, settings=TrainSettings(**{**SETTINGS.to_dict(), "lr": 0.01}))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(dataset, tmp_path / "empty", cache, resume=True)
