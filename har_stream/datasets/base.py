"""What every dataset reader returns: the classes and the train and test clips of one split.

A reader only lists files; nothing is decoded here. ``Clip.name`` (the path relative to the dataset root,
with ``/``) is a clip's identity across machines: checkpoints record the names they were trained on, so
``eval`` can refuse a test set that overlaps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError, LabelsError
from ..labels import LabelSet

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".flv", ".wmv",
                              ".ts", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Clip:
    """One video file. ``group``: clips that share a source (UCF101: actor and scene) stay on one side of a split."""

    path: Path
    name: str
    label: int
    group: str


@dataclass(frozen=True)
class Dataset:
    """The classes (index i = label i) and the clips of one train/test split."""

    name: str
    layout: str
    root: Path
    split: str
    classes: tuple[str, ...]
    train: tuple[Clip, ...]
    test: tuple[Clip, ...]
    skipped: tuple[str, ...] = ()  # listed by the annotations but absent on disk (Kinetics only)

    def __post_init__(self) -> None:
        LabelSet(self.name, self.classes)  # refuses empty or repeated class names
        check_disjoint(self.train, self.test)

    @property
    def label_set(self) -> LabelSet:
        return LabelSet(self.name, self.classes)

    def clips(self, subset: str) -> tuple[Clip, ...]:
        if subset == "train":
            return self.train
        if subset == "test":
            return self.test
        raise ConfigError(f"unknown subset {subset!r}; use train or test")

    def train_sha256(self) -> str:
        """Identity of the training data: names, sizes and labels of the train clips."""
        return clips_sha256(self.train)

    def require_every_class(self, subset: str) -> None:
        """Training needs at least one clip of each class; a class with none is a clear error."""
        counts = class_counts(self.clips(subset), len(self.classes))
        empty = [self.classes[i] for i, n in enumerate(counts) if n == 0]
        if empty:
            more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
            raise InputError(f"{self.root}: {len(empty)} class(es) have no {subset} clips in split {self.split} "
                             f"({', '.join(repr(c) for c in empty[:3])}{more}); add clips or remove the class")

    def describe(self) -> str:
        return (f"{self.name} ({self.layout}, split {self.split}): {len(self.classes)} classes, "
                f"{len(self.train)} train and {len(self.test)} test videos")


def check_disjoint(train: Sequence[Clip], test: Sequence[Clip]) -> None:
    """No file may be both trained on and tested on; names compare case-insensitively (UCF101's lists mix case)."""
    seen = {c.name.lower() for c in train}
    overlap = sorted(c.name for c in test if c.name.lower() in seen)
    if overlap:
        raise InputError(f"{len(overlap)} video(s) are in both the train and the test split "
                         f"(e.g. {overlap[0]}); fix the split files so that test videos are held out")


def class_counts(clips: Iterable[Clip], n_classes: int) -> list[int]:
    counts = [0] * n_classes
    for clip in clips:
        counts[clip.label] += 1
    return counts


def clips_sha256(clips: Iterable[Clip]) -> str:
    digest = hashlib.sha256()
    for clip in sorted(clips, key=lambda c: c.name):
        size = clip.path.stat().st_size if clip.path.exists() else -1
        digest.update(f"{clip.name}\t{size}\t{clip.label}\n".encode())
    return digest.hexdigest()


class ClassIndex:
    """Class name → index, case-insensitive (UCF101 spells ``HandstandPushups`` two ways)."""

    def __init__(self, classes: Sequence[str], source: str) -> None:
        self.classes = tuple(classes)
        self.source = source
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.classes):
            key = name.lower()
            if key in self._index:
                raise LabelsError(f"{source} names class {name!r} twice (ignoring case); each class must be "
                                  "listed once")
            self._index[key] = i

    def find(self, name: str) -> int | None:
        return self._index.get(name.lower())

    def get(self, name: str, where: str) -> int:
        index = self.find(name)
        if index is None:
            raise LabelsError(f"{where}: class {name!r} is not in {self.source}; add it there or fix the line")
        return index


class FileIndex:
    """Files under a folder by lower-cased relative path, so list entries resolve despite case differences."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, Path] | None = None

    def resolve(self, relative: str) -> Path | None:
        exact = self.root / relative
        if exact.is_file():
            return exact
        return self._index().get(relative.replace("\\", "/").lower())

    def videos(self) -> list[Path]:
        return sorted(self._index().values())

    def _index(self) -> dict[str, Path]:
        if self._files is None:  # listed once, and only when some name does not match exactly
            self._files = {p.relative_to(self.root).as_posix().lower(): p for p in self.root.rglob("*")
                           if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()}
        return self._files


def require_root(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"dataset folder {root} does not exist; pass --data with the folder that holds the videos")
    if not root.is_dir():
        raise InputError(f"{root} is a file; pass --data with the dataset's folder")
    return root


def missing_error(root: Path, missing: Sequence[str], listed_in: str) -> InputError:
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return InputError(f"{len(missing)} video(s) listed in {listed_in} are not under {root} "
                      f"({', '.join(missing[:3])}{more}); check --data (the folder with one folder per class)")
