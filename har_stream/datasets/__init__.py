"""Datasets for ``train`` and ``eval``: UCF101's layout, one folder per class, or Kinetics-style CSVs.

``open_dataset`` picks the reader (``layout="auto"`` looks for ``classInd.txt``, then ``train.csv``, else
class folders) and returns a ``Dataset``: the classes plus the train and test clips of one split, checked to
be disjoint. Decoding lives in ``decode.py`` and samples exactly as the live engine does.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Clip, Dataset, check_disjoint
from .folders import read_folders
from .kinetics import looks_like_kinetics, read_kinetics
from .ucf101 import looks_like_ucf101, read_ucf101

LAYOUTS = ("auto", "ucf101", "folders", "kinetics")

__all__ = ["LAYOUTS", "Clip", "Dataset", "check_disjoint", "detect_layout", "open_dataset"]


def detect_layout(root: Path, lists: Path | None = None) -> str:
    if looks_like_ucf101(root, lists):
        return "ucf101"
    if looks_like_kinetics(root, lists):
        return "kinetics"
    return "folders"


def open_dataset(root: Path, *, layout: str = "auto", split: str | int = 1, lists: Path | None = None,
                 test_fraction: float = 0.2) -> Dataset:
    """List a dataset's classes and one split's clips; every problem is a one-line ``HarStreamError``."""
    root = Path(root).expanduser()
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown dataset layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if lists is not None and not Path(lists).expanduser().is_dir():
        raise ConfigError(f"--lists {lists}: no such folder")
    if layout == "auto" and root.is_dir():
        layout = detect_layout(root, lists)
    if layout in ("ucf101", "auto"):
        return read_ucf101(root, split, lists)
    if layout == "kinetics":
        return read_kinetics(root, lists)
    return read_folders(root, lists, test_fraction)
