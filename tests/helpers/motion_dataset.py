"""A synthetic dataset in UCF101's layout, made in the test: class folders of real ``.avi`` files plus
``classInd.txt``, ``trainlist01.txt`` and ``testlist01.txt``.

Each class is a motion of ``har_stream.synthetic`` (a square moving left, right, up, or holding still), so a
model can only tell them apart by learning the motion. As in UCF101, a group (``gXX``) shares its scene
(background and colour) and groups never straddle the split: g01.. are test groups, the rest train. Every
class is filmed in every scene, so a scene says nothing about the class and test scenes are new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.synthetic import make_background, render, write_video
from tests.helpers.tiny_model import start_inside

# UCF101-style folder name → har_stream.synthetic motion. "moving up" is left out: in a training run short
# enough for a test (tiny encoder, 32×32 frames) it was told from "holding still" less reliably (one or three
# test videos wrong with some seeds), while these three were always all right.
CLASSES: dict[str, str] = {
    "MovingLeft": "moving left",
    "MovingRight": "moving right",
    "HoldingStill": "holding still",
}


@dataclass(frozen=True)
class MotionDataset:
    root: Path
    lists: Path
    classes: tuple[str, ...]
    train: tuple[str, ...]  # names relative to root, as in trainlist01.txt
    test: tuple[str, ...]


def make_motion_dataset(root: Path, *, train_groups: int = 3, test_groups: int = 2, clips_per_group: int = 2,
                        seconds: float = 1.6, speed: tuple[float, float] = (0.3, 0.45), fps: float = 15.0, width: int = 128, height: int = 96,
                        seed: int = 0, lists: Path | None = None, classes: dict[str, str] | None = None,
                        ) -> MotionDataset:
    """Write the videos under ``root`` and the split files into ``lists`` (default: ``root``).

    ``speed`` is in frame sizes per second; the square stays wholly in frame for ``seconds`` (speed × seconds
    must stay under about 0.73).
    """
    root = Path(root)
    lists = Path(lists) if lists is not None else root
    lists.mkdir(parents=True, exist_ok=True)
    classes = classes or CLASSES
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    train, test = [], []
    scenes = [(make_background(width, height, rng), tuple(int(c) for c in rng.integers(150, 256, 3)))
              for _ in range(test_groups + train_groups)]
    for cls, motion in classes.items():
        for group, (background, colour) in enumerate(scenes, start=1):
            for clip in range(1, clips_per_group + 1):
                pace = float(rng.uniform(*speed))
                frames = render(motion, n, width=width, height=height, fps=fps, speed=pace, rng=rng,
                                start=start_inside(motion, pace, seconds, rng), colour=colour,
                                background=background)
                name = f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"
                write_video(root / name, frames, fps, codec="mpeg4", options={"qscale": "2"})
                (test if group <= test_groups else train).append(name)
    names = tuple(classes)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(names, start=1)))
    (lists / "trainlist01.txt").write_text(
        "".join(f"{name} {names.index(name.split('/')[0]) + 1}\n" for name in train))
    (lists / "testlist01.txt").write_text("".join(f"{name}\n" for name in test))
    return MotionDataset(root, lists, names, tuple(train), tuple(test))
