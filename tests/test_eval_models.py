"""``har-stream eval`` for every kind of model: CLIP zero-shot over the dataset's classes (with a prompt
template), and a torchvision Kinetics model on a dataset of Kinetics classes given as Kinetics-style CSVs.

The weights are made in the test (a tiny CLIP, a randomly initialised MC3-18) and go through the real
loading code, so these check the plumbing and the report, not accuracy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import REPO, run_cli
from tests.helpers.motion_dataset import make_motion_dataset
from tests.helpers.tiny_clip import make_tiny_clip
from tests.helpers.training import device_for_tests, manifest_with


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory):
    return make_motion_dataset(tmp_path_factory.mktemp("motion"), train_groups=1, test_groups=2, clips_per_group=1,
                               seconds=1.2, width=64, height=48)


def test_clip_zero_shot_over_the_dataset_classes(motion, tmp_path: Path, cli_env) -> None:
    clip_dir = make_tiny_clip(tmp_path / "clip")
    out = tmp_path / "eval"
    proc = run_cli("eval", "--model", "clip", "--clip-model", str(clip_dir), "--prompt", "a video of {label}",
                   "--data", str(motion.root), "--out", str(out), "--device", device_for_tests(), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["family"] == "clip" and report["model"]["prompt"] == "a video of {label}"
    assert report["model"]["label_set"] == motion.root.name
    assert report["video"]["count"] == len(motion.test) == 6
    assert report["confusion"]["columns"] == list(motion.classes)  # CLIP chooses among the classes only
    assert sum(map(sum, report["confusion"]["matrix"])) == 6
    assert {v["predicted"] for v in report["videos"]} <= set(motion.classes)


def test_clip_prompt_without_label_is_refused(motion, cli_env) -> None:
    proc = run_cli("eval", "--model", "clip", "--prompt", "a video", "--data", str(motion.root), env=cli_env)
    assert proc.returncode == 2 and "must contain {label}" in proc.stderr


@pytest.fixture
def mc3_env(tmp_path: Path) -> dict[str, str]:
    from torchvision.models.video import mc3_18

    torch.manual_seed(0)
    weights = tmp_path / "src" / "mc3_18-a90a0ba3.pth"
    weights.parent.mkdir()
    torch.save(mc3_18(weights=None).state_dict(), weights)
    env = dict(os.environ, HAR_STREAM_HOME=str(tmp_path / "home"), HAR_STREAM_OFFLINE="1", PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1", HAR_STREAM_MANIFEST=str(manifest_with(tmp_path / "m.json", "mc3-18", weights)))
    assert run_cli("weights", "import", "mc3-18", str(weights), env=env).returncode == 0
    return env


def test_kinetics_model_on_kinetics_style_csv(mc3_env, tmp_path: Path) -> None:
    root = tmp_path / "kinetics"
    for i, (label, motion) in enumerate((("abseiling", "moving up"), ("archery", "moving left"))):
        for split, yid in (("train", f"tr{i}"), ("val", f"va{i}")):
            write_motion_clip(root / split / label / f"{yid}_000000_000010.mp4", [(motion, 1.2)], width=64,
                              height=48, seed=i)
    header = "label,youtube_id,time_start,time_end,split\n"
    (root / "train.csv").write_text(header + "abseiling,tr0,0,10,train\narchery,tr1,0,10,train\n")
    (root / "validate.csv").write_text(header + "abseiling,va0,0,10,val\narchery,va1,0,10,val\n"
                                                "archery,vanished,0,10,val\n")
    out = tmp_path / "eval"
    proc = run_cli("eval", "--model", "mc3-18", "--data", str(root), "--out", str(out),
                   "--device", device_for_tests(), env=mc3_env)
    assert proc.returncode == 0, proc.stderr
    assert "1 annotated video(s) are not under" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["label_set"] == "kinetics400" and report["dataset"]["layout"] == "kinetics"
    assert report["dataset"]["skipped_unlisted"] == 1
    assert report["video"]["count"] == 2 and report["video"]["top5_k"] == 5
    assert report["confusion"]["columns"] == ["abseiling", "archery", "(other)"]
    assert all(len(v["window_labels"]) == 2 for v in report["videos"])  # 18 frames: one window + the end one
    assert (out / "confusion.png").exists()


def test_kinetics_model_cannot_score_other_classes(mc3_env, motion, tmp_path: Path) -> None:
    proc = run_cli("eval", "--model", "mc3-18", "--data", str(motion.root), "--out", str(tmp_path / "e"),
                   env=mc3_env)
    assert proc.returncode == 5
    assert "cannot predict 3 of the dataset's 3 classes" in proc.stderr and "--model clip" in proc.stderr
