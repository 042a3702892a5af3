"""`har-stream models check`: engine vs reference input and logits, printed for a user's own clip and model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.clips import run_cli
from tests.helpers.media import make_mp4
from tests.helpers.tiny_clip import make_tiny_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 342x256: after r2plus1d's 128x171 resize the crop margin is 29.5, where rounding matters.
    return make_mp4(tmp_path_factory.mktemp("models-cli") / "clip.mp4", frames=72, fps=30.0, size=(342, 256))


def _figures(stdout: str) -> tuple[float, float, float]:
    m = re.search(r"mean ([\d.]+), p99 ([\d.]+), max ([\d.]+) grey levels", stdout)
    assert m, stdout
    return float(m[1]), float(m[2]), float(m[3])


def test_torchvision_model_with_random_weights_matches_its_preset(clip: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli("models", "check", "r2plus1d-18", str(clip), "--random-weights", "--windows", "2", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "reference:  torchvision R2Plus1D_18_Weights.KINETICS400_V1.transforms()" in out
    assert "bilinear (no antialias, float kernel), round crop" in out
    assert _figures(out)[2] < 0.01
    assert len(re.findall(r"^window ", out, flags=re.M)) == 2
    assert "parity:     OK" in out and "top-1 agrees in 2 of 2 windows" in out


def test_cnn_lstm_checkpoint_matches_its_training_pipeline(clip: Path, tiny_checkpoint: Path,
                                                           cli_env: dict[str, str]) -> None:
    proc = run_cli("models", "check", str(tiny_checkpoint), str(clip), "--windows", "1", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "har-stream training pipeline" in proc.stdout and "swscale AREA" in proc.stdout
    assert _figures(proc.stdout) == (0.0, 0.0, 0.0)
    assert "parity:     OK" in proc.stdout


def test_clip_matches_its_image_processor(clip: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = make_tiny_clip(tmp_path / "clip")
    proc = run_cli("models", "check", "clip", str(clip), "--clip-model", str(folder), "--windows", "1", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "transformers CLIPImageProcessor" in proc.stdout and "bicubic (antialias, uint8 kernel)" in proc.stdout
    assert _figures(proc.stdout)[2] < 0.01 and "parity:     OK" in proc.stdout


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("r2plus1d-18", "missing.mp4", "--random-weights"), 3, "no such file: missing.mp4"),
    (("clip", "CLIP", "--random-weights"), 2, "--random-weights is for the torchvision models"),
    (("s3d", "CLIP"), 6, "har-stream weights import s3d"),
    (("r2plus1d-18", "CLIP", "--random-weights", "--windows", "0"), 5, "--windows and --stride must be at least 1"),
])
def test_bad_requests_are_one_line_errors(args: tuple[str, ...], code: int, needle: str, clip: Path,
                                          cli_env: dict[str, str]) -> None:
    args = tuple(str(clip) if a == "CLIP" else a for a in args)
    proc = run_cli("models", "check", *args, env=cli_env)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
