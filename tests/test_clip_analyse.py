"""CLIP through the real CLI with a tiny CLIP saved to a temp directory: zero-shot and fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.clips import run_cli
from tests.helpers.tiny_clip import make_tiny_clip


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def run_json(env, out: Path, *args: str) -> dict:
    proc = run_cli("analyse", *args, "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_zero_shot_labels_come_from_the_given_set(tiny_clip_dir, change_clip, cli_env, tmp_path):
    labels = tmp_path / "mine.txt"
    labels.write_text("waving a flag\nApplyEyeMakeup\nriding a bike\n")
    result = run_json(cli_env, tmp_path / "r.json", str(change_clip), "--model", "clip", "--clip-model",
                      str(tiny_clip_dir), "--labels", str(labels))
    allowed = {"waving a flag", "ApplyEyeMakeup", "riding a bike"}
    assert result["segment_predictions"]
    for seg in result["segment_predictions"]:
        assert seg["label"] in allowed and seg["source"] == "clip"
        assert {name for name, _ in seg["top5"]} == allowed
    assert result["model"]["labels"] == "mine"


def test_open_vocabulary_labels_switch_a_fixed_model_to_clip(tiny_checkpoint, tiny_clip_dir, change_clip,
                                                             cli_env, tmp_path):
    labels = tmp_path / "mine.txt"
    labels.write_text("jumping\nsitting\n")
    proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-model",
                   str(tiny_clip_dir), "--labels", str(labels), "--json", str(tmp_path / "r.json"), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "open vocabulary" in proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert {s["label"] for s in result["segment_predictions"]} <= {"jumping", "sitting"}


def test_fallback_fires_only_below_the_threshold(tiny_checkpoint, tiny_clip_dir, change_clip, cli_env, tmp_path):
    common = (str(change_clip), "--model", str(tiny_checkpoint), "--clip-model", str(tiny_clip_dir),
              "--stride", "2")
    plain = run_json(cli_env, tmp_path / "t0.json", *common, "--clip-threshold", "0")
    confidences = sorted(s["confidence"] for s in plain["segment_predictions"])
    assert all(s["source"] == "model" for s in plain["segment_predictions"])
    assert confidences[0] < confidences[-1], "need a spread of confidences to place a threshold"
    threshold = (confidences[0] + confidences[-1]) / 2
    mixed = run_json(cli_env, tmp_path / "tm.json", *common, "--clip-threshold", f"{threshold:.6f}")
    assert mixed["model"]["fallback"] == "clip"
    refined = 0
    for before, after in zip(plain["segment_predictions"], mixed["segment_predictions"], strict=True):
        assert (before["start"], before["end"]) == (after["start"], after["end"])
        if before["confidence"] < threshold:
            assert after["source"] == "clip"
            refined += 1
        else:
            assert after["source"] == "model" and after["label"] == before["label"]
            assert after["confidence"] == before["confidence"]
    assert refined >= 1
    assert mixed["settings"]["windows_refined_by_clip"] == refined
    always = run_json(cli_env, tmp_path / "t1.json", *common, "--clip-threshold", "1")
    assert all(s["source"] == "clip" for s in always["segment_predictions"])
