"""The ImageNet ResNet-18 encoder comes from the weight store: missing weights are a clear error naming the
import command; imported weights are what the frozen first stage trains on, and the checkpoint records them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision

from har_stream.models.cnn_lstm import read_checkpoint
from har_stream.weights import sha256_file
from tests.helpers.clips import REPO, run_cli
from tests.helpers.motion_dataset import make_motion_dataset
from tests.helpers.training import device_for_tests, manifest_with

FILE = "resnet18-f37072fd.pth"  # the manifest's file name for resnet18-imagenet


@pytest.fixture
def setup(tmp_path: Path):
    torch.manual_seed(7)
    weights = tmp_path / "src" / FILE
    weights.parent.mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)  # stands in for ImageNet's
    env = dict(os.environ, HAR_STREAM_HOME=str(tmp_path / "home"), HAR_STREAM_OFFLINE="1", PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1",
               HAR_STREAM_MANIFEST=str(manifest_with(tmp_path / "manifest.json", "resnet18-imagenet", weights)))
    data = make_motion_dataset(tmp_path / "data", train_groups=2, test_groups=1, clips_per_group=1, seconds=0.6,
                               width=64, height=48)
    return weights, env, data


SMALL = ("--size", "32", "--frames", "4", "--hidden", "16", "--layers", "1", "--batch-size", "4",
         "--val-fraction", "0", "--no-flip")


def test_resnet18_starts_from_the_imported_imagenet_weights(setup, tmp_path: Path) -> None:
    weights, env, data = setup
    out = tmp_path / "run"
    args = ("train", "--data", str(data.root), "--out", str(out), *SMALL, "--epochs", "1", "--fine-tune-epochs", "0",
            "--device", device_for_tests())
    proc = run_cli(*args, env=env)
    assert proc.returncode == 6, proc.stderr
    assert "`har-stream weights import resnet18-imagenet /path/to/resnet18-f37072fd.pth`" in proc.stderr
    assert not out.exists()

    assert run_cli("weights", "import", "resnet18-imagenet", str(weights), env=env).returncode == 0
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    payload = read_checkpoint(out / "model.pt")
    assert payload["training"]["encoder_init"] == {"weights": "resnet18-imagenet", "sha256": sha256_file(weights)}
    imagenet = torch.load(weights, weights_only=True)
    encoder = {k.removeprefix("encoder."): v for k, v in payload["state_dict"].items() if k.startswith("encoder.")}
    assert encoder and all(torch.equal(v, imagenet[k]) for k, v in encoder.items())  # frozen in stage 1


def test_fine_tuning_changes_the_encoder(setup, tmp_path: Path) -> None:
    weights, env, data = setup
    assert run_cli("weights", "import", "resnet18-imagenet", str(weights), env=env).returncode == 0
    out = tmp_path / "run"
    proc = run_cli("train", "--data", str(data.root), "--out", str(out), *SMALL, "--epochs", "1",
                   "--fine-tune-epochs", "1", "--fine-tune-lr", "1e-3", "--device", device_for_tests(), env=env)
    assert proc.returncode == 0, proc.stderr
    state = read_checkpoint(out / "model.pt")["state_dict"]
    imagenet = torch.load(weights, weights_only=True)
    assert not torch.equal(state["encoder.conv1.weight"], imagenet["conv1.weight"])
