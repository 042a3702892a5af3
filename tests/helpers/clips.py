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


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real ``har-stream`` entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
