"""What the label tests know about their clips: the script, where the action changes, the truth per window."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"

CHANGE_SCRIPT = (("moving left", 1.6), ("holding still", 1.6))
CHANGE_AT = 1.6


def acceptable_labels(start: float, end: float, script=CHANGE_SCRIPT) -> set[str]:
    """The label(s) of the action filling most of [start, end); both when it is an even split."""
    covered: dict[str, float] = {}
    t = 0.0
    for label, seconds in script:
        overlap = max(0.0, min(end, t + seconds) - max(start, t))
        covered[label] = covered.get(label, 0.0) + overlap
        t += seconds
    best = max(covered.values())
    return {label for label, v in covered.items() if v >= best - 1e-6 - 0.035 * (end - start)}


def check_labels_and_boundary(result: dict, stride: int, fps: float = 15.0) -> None:
    """An analysis of the CHANGE_SCRIPT clip is right: ≥90% of windows right, the timeline goes left → still,
    and its boundary lies within one stride of the true change."""
    segments = result["segment_predictions"]
    right = [s["label"] in acceptable_labels(s["start"], s["end"]) for s in segments]
    assert sum(right) / len(segments) >= 0.9, [(s["start"], s["end"], s["label"]) for s in segments]
    timeline = result["timeline"]
    assert timeline[0]["label"] == "moving left" and timeline[-1]["label"] == "holding still", timeline
    boundaries = [e["start"] for e in timeline[1:]]
    nearest = min(boundaries, key=lambda b: abs(b - CHANGE_AT))
    assert abs(nearest - CHANGE_AT) <= stride / fps, (boundaries, timeline)


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real ``har-stream`` entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
