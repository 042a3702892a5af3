"""One folder per class (``<root>/<class>/<video>``), split by an optional split file or else by a stable hash.

Split file (``split.csv`` or ``split.txt`` in the root or the lists folder): one line per video,
``<class>/<file>,train`` or ``<class>/<file> test`` (``#`` starts a comment). Videos it does not name are not
used. Without one, each class holds out ``test_fraction`` of its videos, chosen by a hash of the file name, so
the split is the same on every machine and does not move when other classes gain videos.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

from ..errors import ConfigError, InputError
from .base import VIDEO_EXTENSIONS, ClassIndex, Clip, Dataset, FileIndex, missing_error, require_root

SPLIT_FILES = ("split.csv", "split.txt")
SUBSETS = ("train", "test")
_SEP = re.compile(r"\s*[,\t ]\s*")


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_split_file(root: Path, lists: Path | None) -> Path | None:
    for folder in ([Path(lists).expanduser()] if lists is not None else []) + [root]:
        for name in SPLIT_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def read_folders(root: Path, lists: Path | None = None, test_fraction: float = 0.2) -> Dataset:
    root = require_root(root)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be between 0 and 1 (got {test_fraction})")
    folders = class_folders(root)
    if len(folders) < 2:
        raise InputError(f"{root} holds {len(folders)} class folder(s); a classifier needs at least two "
                         "(one folder of videos per class)")
    videos: dict[int, list[Path]] = {}
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not found:
            raise InputError(f"class folder {folder} holds no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}); "
                             "add videos or remove the folder")
        videos[label] = found
    classes = tuple(f.name for f in folders)
    split_file = find_split_file(root, lists)
    if split_file is not None:
        train, test = _from_split_file(root, split_file, ClassIndex(classes, f"the class folders of {root}"))
        split = split_file.name
    else:
        train, test = _by_hash(root, videos, classes, test_fraction)
        split = f"hash-{test_fraction:g}"
    return Dataset(name=root.name, layout="folders", root=root, split=split, classes=classes,
                   train=tuple(train), test=tuple(test))


def _clip(root: Path, path: Path, label: int) -> Clip:
    name = path.relative_to(root).as_posix()
    return Clip(path, name, label, name.lower())


def _from_split_file(root: Path, split_file: Path, index: ClassIndex) -> tuple[list[Clip], list[Clip]]:
    files = FileIndex(root)
    out: dict[str, list[Clip]] = {s: [] for s in SUBSETS}
    missing: list[str] = []
    try:
        lines = split_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {split_file} ({err})") from None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = _SEP.split(line)
        where = f"{split_file.name} line {lineno}"
        if len(parts) != 2 or parts[1].lower() not in SUBSETS:
            raise InputError(f"{where}: expected '<class>/<video>,train' or '<class>/<video>,test', got {line!r}")
        rel = parts[0].replace("\\", "/")
        if "/" not in rel:
            raise InputError(f"{where}: {rel!r} names no class folder; write '<class>/<video>'")
        label = index.get(rel.split("/", 1)[0], where)
        found = files.resolve(rel)
        if found is None:
            missing.append(rel)
            continue
        out[parts[1].lower()].append(_clip(root, found, label))
    if missing:
        raise missing_error(root, missing, split_file.name)
    if not out["train"] or not out["test"]:
        empty = "train" if not out["train"] else "test"
        raise InputError(f"{split_file} marks no video as {empty}; mark each video train or test")
    return out["train"], out["test"]


def _by_hash(root: Path, videos: dict[int, list[Path]], classes: tuple[str, ...],
             test_fraction: float) -> tuple[list[Clip], list[Clip]]:
    train: list[Clip] = []
    test: list[Clip] = []
    for label, paths in videos.items():
        if len(paths) < 2:
            raise InputError(f"class {classes[label]!r} has {len(paths)} video; at least two are needed to hold "
                             "one out for testing (or give a split file)")
        ranked = sorted(paths, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())
        n_test = min(len(paths) - 1, max(1, math.floor(len(paths) * test_fraction + 0.5)))
        test += [_clip(root, p, label) for p in sorted(ranked[:n_test])]
        train += [_clip(root, p, label) for p in sorted(ranked[n_test:])]
    return train, test
