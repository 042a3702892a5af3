"""``har-stream train`` then ``eval`` on a synthetic UCF101-layout dataset, end to end, as a user runs them.

The dataset's classes differ only in motion, its test groups are scenes never seen in training, and the
checkpoint goes on to ``analyse``: the labels it gives there are the labels ``eval`` scored.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from har_stream.errors import ConfigError
from har_stream.models.cnn_lstm import read_checkpoint
from tests.helpers.clips import REPO, run_cli
from tests.helpers.motion_dataset import MotionDataset, make_motion_dataset
from tests.helpers.training import TINY_RECIPE, device_for_tests

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[MotionDataset, Path, dict[str, str]]:
    """The dataset and one training run, made once per test session and shared by xdist workers (under a lock
    in the session's common temp folder): training is the slow part."""
    shared = tmp_path_factory.getbasetemp().parent / "train-eval-motion"
    shared.mkdir(exist_ok=True)
    env = dict(os.environ, HAR_STREAM_HOME=str(shared / "home"), HAR_STREAM_OFFLINE="1", NO_COLOR="1",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = shared / "run"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").exists():
            shutil.rmtree(shared / "data", ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            make_motion_dataset(shared / "data", train_groups=30, test_groups=7, clips_per_group=1, seed=0)
            proc = run_cli("train", "--data", str(shared / "data"), "--split", "1", "--out", str(out), *TINY_RECIPE,
                           "--epochs", "1", "--fine-tune-epochs", "8", "--val-fraction", "0.1",
                           "--device", device_for_tests(), env=env, timeout=280)
            (shared / "train.log").write_text(proc.stdout + proc.stderr)
            assert proc.returncode == 0, proc.stderr
            assert "stage 1: frozen encoder" in proc.stderr and "stage 2: fine-tuning" in proc.stderr
            assert f"held-out figures: har-stream eval --model {out / 'model.pt'}" in proc.stdout
            (shared / "done").touch()
    return listed(shared / "data"), out, env


def listed(root: Path) -> MotionDataset:
    """The dataset as its split files list it (read as text, not through the reader under test)."""
    def names(file: str) -> tuple[str, ...]:
        return tuple(line.split()[0] for line in (root / file).read_text().splitlines() if line.strip())

    classes = tuple(line.split()[1] for line in (root / "classInd.txt").read_text().splitlines() if line.strip())
    return MotionDataset(root, root, classes, names("trainlist01.txt"), names("testlist01.txt"))


def test_train_writes_a_self_describing_checkpoint_log_and_plot(trained) -> None:
    motion, out, _ = trained
    payload = read_checkpoint(out / "model.pt")
    assert tuple(payload["config"]["labels"]) == motion.classes
    training = payload["training"]
    data = training["dataset"]
    assert data["layout"] == "ucf101" and data["split"] == "1" and len(data["train_sha256"]) == 64
    assert set(data["train_videos"]) | set(data["val_videos"]) == set(motion.train)
    assert not set(data["train_videos"]) & set(motion.test)
    assert data["val_videos"], "a tenth of the training groups is held out for validation"
    assert training["settings"]["encoder"] == "tiny" and training["encoder_init"] is None
    assert "resume" not in payload and "resume" in read_checkpoint(out / "last.pt")
    assert payload["metrics"]["epoch"] == training["history"][-1]["epoch"]

    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 10))
    assert [int(r["stage"]) for r in rows] == [1] + [2] * 8
    assert all(r["val_video_top1"] != "" for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (out / "curves.png").read_bytes()[:8] == PNG


def test_eval_on_the_held_out_split_and_analyse_agree(trained, tmp_path: Path) -> None:
    motion, out, env = trained
    report_dir = tmp_path / "eval"
    proc = run_cli("eval", "--model", str(out / "model.pt"), "--data", str(motion.root), "--split", "1",
                   "--out", str(report_dir), "--device", device_for_tests(), env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert report["dataset"]["held_out"] and report["dataset"]["evaluated_videos"] == len(motion.test)
    assert {v["name"] for v in report["videos"]} == set(motion.test)
    assert report["video"]["top1"] >= 0.95, report["videos"]
    assert report["clip"]["count"] > report["video"]["count"]  # several windows per video
    assert report["settings"]["window"] == 16 and report["settings"]["stride"] == 8
    assert "per video: top-1" in proc.stdout
    assert (report_dir / "confusion.png").read_bytes()[:8] == PNG
    per_class = list(csv.DictReader((report_dir / "per_class.csv").open()))
    assert [r["class"] for r in per_class] == list(motion.classes)

    video = report["videos"][0]
    result = tmp_path / "analyse.json"
    proc = run_cli("analyse", str(motion.root / video["name"]), "--model", str(out / "model.pt"),
                   "--clip-threshold", "0", "--json", str(result), "--device", device_for_tests(), env=env)
    assert proc.returncode == 0, proc.stderr
    segments = json.loads(result.read_text())["segment_predictions"]
    assert [s["label"] for s in segments] == video["window_labels"]


def test_eval_refuses_test_videos_the_model_was_trained_on(trained, tmp_path: Path) -> None:
    motion, out, env = trained
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text((motion.lists / "classInd.txt").read_text())
    (lists / "trainlist01.txt").write_text("".join(f"{n}\n" for n in motion.test))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in motion.train[:6]))  # trained on
    proc = run_cli("eval", "--model", str(out / "model.pt"), "--data", str(motion.root), "--lists", str(lists),
                   "--out", str(tmp_path / "eval"), "--device", device_for_tests(), env=env)
    assert proc.returncode == 5, proc.stderr
    assert "were used to train" in proc.stderr and "not be held-out" in proc.stderr
    assert not (tmp_path / "eval").exists()


def test_checkpoint_serves_on_the_device_it_is_asked_for(trained) -> None:
    from har_stream.models.cnn_lstm import load_cnn_lstm

    _, out, _ = trained
    model = load_cnn_lstm(out / "model.pt", torch.device(device_for_tests()))
    assert model.info.frames == 16 and model.info.crop == (32, 32) and model.info.fps == 15.0


def test_training_and_serving_share_one_frame_preparation(trained, tmp_path: Path) -> None:
    """The checkpoint records how training resized its frames, and the engine prepares them the same way."""
    from har_stream.datasets.decode import FrameSpec
    from har_stream.models.cnn_lstm import load_cnn_lstm
    from har_stream.models.resampling import SWSCALE_AREA, TORCHVISION_IMAGE
    from har_stream.training.settings import TrainSettings
    from har_stream.training.trainer import Trainer

    _, out, _ = trained
    assert read_checkpoint(out / "model.pt")["config"]["resampling"] == SWSCALE_AREA.to_dict()
    info = load_cnn_lstm(out / "model.pt", torch.device("cpu")).info
    settings = TrainSettings(encoder="tiny", pretrained=False, size=32, resample="area")
    trainer = Trainer(None, settings, tmp_path / "run", cache=tmp_path / "cache")  # type: ignore[arg-type]
    assert trainer.frames.spec == FrameSpec(info.fps, info.resize, info.crop, info.resampling)
    assert TrainSettings(encoder="tiny", pretrained=False, resample="bilinear").resampling == TORCHVISION_IMAGE
    with pytest.raises(ConfigError, match="--resample must be one of area, bilinear"):
        TrainSettings(encoder="tiny", pretrained=False, resample="lanczos")
