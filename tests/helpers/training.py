"""Shared bits of the train/eval tests: the device they run on, and the tiny recipe that learns the motion set.

``HAR_STREAM_TEST_DEVICE`` (default ``cpu``) moves every train/eval test to another device, e.g. ``cuda`` in
``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from har_stream.manifest import default_manifest_path
from har_stream.weights import sha256_file

TINY_RECIPE = (  # learns tests.helpers.motion_dataset in about 20 s on one CPU thread
    "--encoder", "tiny", "--size", "32", "--hidden", "48", "--dropout", "0", "--no-flip",
    "--batch-size", "8", "--lr", "3e-3", "--fine-tune-lr", "5e-3", "--clips-per-video", "4",
)


def device_for_tests() -> str:
    return os.environ.get("HAR_STREAM_TEST_DEVICE", "cpu")


def manifest_with(path: Path, name: str, weights_file: Path) -> Path:
    """The repository's weights manifest with ``name``'s one file replaced by ``weights_file`` (a file made in
    the test): written to ``path``, for ``HAR_STREAM_MANIFEST``. The real loading code then hash-checks and
    imports it as if it were the published file."""
    data = json.loads(default_manifest_path().read_text())
    entry = data["models"][name]
    entry["files"] = [{**entry["files"][0], "sha256": sha256_file(Path(weights_file)),
                       "size": Path(weights_file).stat().st_size, "sha256_prefix": None}]
    Path(path).write_text(json.dumps(data))
    return Path(path)
