"""`har-stream bench prepare`: every preparer timed on the same frames, each with its distance from the reference."""

from __future__ import annotations

import re

from tests.helpers.clips import run_cli


def test_bench_prepare_reports_speed_and_reference_distance(cli_env: dict[str, str]) -> None:
    proc = run_cli("bench", "prepare", "--frames", "4", "--repeats", "1", "--sizes", "320x240",
                   "--models", "r2plus1d-18,clip", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("machine: ")
    rows = re.findall(r"^\s+320x240\s+(\S+)\s+(.+?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert len(rows) == 6, out
    by = {(model, preparer): float(mean) for model, preparer, _, _, mean, _, _ in rows}
    assert by[("r2plus1d-18", "bilinear float kernel (served)")] == 0.0
    assert by[("clip", "bicubic uint8 kernel (served)")] == 0.0
    assert by[("r2plus1d-18", "swscale AREA (before)")] > 1.0  # the distance is measured, not assumed
    assert len(re.findall(r"ratio served/swscale AREA at 320x240", out)) == 2


def test_bench_prepare_rejects_unknown_models(cli_env: dict[str, str]) -> None:
    proc = run_cli("bench", "prepare", "--models", "resnet50", env=cli_env)
    assert proc.returncode == 2 and "--models takes torchvision model names or clip" in proc.stderr
