"""Real clips (H.264 mp4 with and without audio, Xvid avi) through `har-stream analyse` with a test-made model.

The model does not know these actions; what is checked is that real footage decodes fully, the frame counts
and durations match the independently recorded facts in labels.csv, and segments cover the whole clip.
"""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers.clips import SHARED_DATA, run_cli

LABELS_CSV = SHARED_DATA / "labels.csv"
pytestmark = pytest.mark.skipif(not LABELS_CSV.exists(),
                                reason=f"real clips not present ({LABELS_CSV} is absent in this checkout)")


def clips() -> list[dict[str, str]]:
    if not LABELS_CSV.exists():
        return []
    return list(csv.DictReader(LABELS_CSV.open()))


@pytest.mark.parametrize("row", clips(), ids=lambda r: r["file"].split("/")[-1])
def test_real_clip_is_analysed_whole(row, tiny_checkpoint, cli_env, tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli("analyse", str(SHARED_DATA / row["file"]), "--model", str(tiny_checkpoint),
                   "--clip-threshold", "0", "--json", str(out), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    fps, duration = float(row["fps"]), float(row["duration_s"])
    assert result["frames_decoded"] == int(row["frames_decoded"])
    assert result["duration"] == pytest.approx(duration, abs=1.5 / fps)
    assert result["fps"] == pytest.approx(fps, rel=1e-3)
    segments = result["segment_predictions"]
    assert segments[0]["start"] == pytest.approx(0.0, abs=1e-6)
    assert segments[-1]["end"] >= duration - 2.0 / 15.0
    for a, b in zip(segments, segments[1:]):
        assert a["start"] < b["start"] and b["start"] <= a["end"]  # overlapping windows, no gaps
    for seg in segments:
        assert 0.0 <= seg["confidence"] <= 1.0 and seg["label"] == seg["top5"][0][0]
    timeline = result["timeline"]
    assert timeline[0]["start"] == 0.0 and timeline[-1]["end"] == pytest.approx(result["duration"], abs=1e-3)
    for a, b in zip(timeline, timeline[1:]):
        assert a["end"] == pytest.approx(b["start"]) and a["label"] != b["label"]
