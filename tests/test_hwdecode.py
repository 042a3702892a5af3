"""``--hwdecode``: NVDEC through PyAV's hardware decoding, or software decoding with the reason said.

This machine has no GPU, so ``cuda`` must fall back cleanly (a warning naming the reason, the same frames as
software decoding) and ``auto`` must quietly decode in software. On a card (tests/test_cuda.py's machines, via
scripts/gpu_check.sh) the last test checks that NVDEC gives the software decoder's frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.errors import ConfigError
from har_stream.sources import AvSource
from har_stream.sources.hwdecode import hwaccel_for
from tests.helpers.clips import SHARED_DATA

REAL = SHARED_DATA / "videos" / "k400_arm_wrestling__mmaction2_demo.mp4"


@pytest.fixture
def clip(change_clip: Path) -> Path:
    return REAL if REAL.is_file() else change_clip


async def _decode(path: Path, hwdecode: str, count: int = 24) -> tuple[np.ndarray, str]:
    source = AvSource(path, prepare=lambda f: f.to_ndarray(format="rgb24"), policy="block", hwdecode=hwdecode)
    frames = []
    async with source:
        async for frame in source.frames():
            frames.append(frame.image)
            if len(frames) == count:
                break
    return np.stack(frames), source.decoding


def test_settings() -> None:
    assert hwaccel_for("none") == (None, "software decoding was asked for")
    with pytest.raises(ConfigError, match="--hwdecode"):
        AvSource("x.mp4", hwdecode="nvdec")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine decodes with NVDEC here (last test)")
async def test_cuda_without_a_gpu_falls_back_to_software_with_the_reason_and_the_same_frames(
        clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    software, how = await _decode(clip, "none")
    assert how == "software"
    with caplog.at_level(logging.INFO, logger="har_stream.sources.hwdecode"):
        asked, how = await _decode(clip, "cuda")
    assert how.startswith("software (") and how != "software"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "--hwdecode cuda: decoding in software instead" in warnings[0].getMessage()
    assert np.array_equal(asked, software)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="har_stream.sources.hwdecode"):
        auto, how = await _decode(clip, "auto")
    assert how == "software (no CUDA device)" and np.array_equal(auto, software)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_analyse_cli_with_hwdecode_cuda_runs_and_says_why_it_decodes_in_software(
        tiny_checkpoint: Path, change_clip: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    import json

    from tests.helpers.clips import run_cli

    results = {}
    for hwdecode in ("none", "cuda"):
        out = tmp_path / f"{hwdecode}.json"
        proc = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                       "--stride", "8", "--hwdecode", hwdecode, "--json", str(out), env=cli_env)
        assert proc.returncode == 0, proc.stderr
        assert ("--hwdecode cuda: decoding in software instead" in proc.stderr) == (hwdecode == "cuda"), proc.stderr
        results[hwdecode] = json.loads(out.read_text())["segment_predictions"]
    assert results["cuda"] == results["none"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
async def test_nvdec_gives_the_software_decoders_frames(clip: Path) -> None:
    software, _ = await _decode(clip, "none")
    nvdec, how = await _decode(clip, "cuda")
    assert how == "cuda (NVDEC)"
    assert np.abs(nvdec.astype(int) - software).max() <= 1  # NV12 → RGB by the same swscale: identical or ±1
