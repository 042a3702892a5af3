"""UCF101's layout: ``<root>/<Class>/v_<Class>_gXX_cYY.avi`` plus ``classInd.txt``, ``trainlist0N.txt`` and
``testlist0N.txt`` (N = 1, 2, 3), as in the official ``UCF101TrainTestSplits-RecognitionTask.zip``.

The lists may sit in the root, in ``<root>/ucfTrainTestlist`` (where the official zip unpacks), or in a folder
given as ``lists``; a file name may carry a prefix (``ucf101_classInd.txt``). Class names match
case-insensitively: the official lists spell ``HandStandPushups`` where ``classInd.txt`` says
``HandstandPushups``. The test split is exactly ``testlist0N.txt``: train and test never share a file.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError, InputError, LabelsError
from .base import ClassIndex, Clip, Dataset, FileIndex, missing_error, require_root

SPLITS = ("1", "2", "3")
LIST_FOLDERS = ("", "ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist")
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def list_folders(root: Path, lists: Path | None) -> list[Path]:
    if lists is not None:
        return [Path(lists).expanduser()]
    return [root / sub if sub else root for sub in LIST_FOLDERS]


def find_list(folders: list[Path], name: str) -> Path | None:
    """``name`` itself, else a single file ending in ``_name`` (e.g. ``ucf101_classInd.txt``)."""
    for folder in folders:
        if not folder.is_dir():
            continue
        exact = folder / name
        if exact.is_file():
            return exact
        prefixed = sorted(folder.glob(f"*_{name}"))
        if len(prefixed) == 1:
            return prefixed[0]
    return None


def looks_like_ucf101(root: Path, lists: Path | None) -> bool:
    return find_list(list_folders(root, lists), "classInd.txt") is not None


def read_class_index(path: Path) -> tuple[str, ...]:
    """``classInd.txt``: ``<1-based index> <ClassName>`` per line, indices 1..N in order."""
    classes: list[str] = []
    for lineno, raw in enumerate(_lines(path), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise LabelsError(f"{path} line {lineno}: expected '<index> <ClassName>', got {raw.strip()!r}")
        if int(parts[0]) != len(classes) + 1:
            raise LabelsError(f"{path} line {lineno}: class index {parts[0]} out of order; expected "
                              f"{len(classes) + 1}")
        classes.append(parts[1])
    if len(classes) < 2:
        raise LabelsError(f"{path} lists {len(classes)} class(es); a classifier needs at least two")
    ClassIndex(classes, path.name)  # refuses a class named twice
    return tuple(classes)


def read_split_list(path: Path, index: ClassIndex, files: FileIndex, *, labelled: bool) -> tuple[list[Clip], list[str]]:
    """A train or test list: ``<Class>/<file>.avi`` (train lists add the 1-based class index)."""
    clips, missing = [], []
    for lineno, raw in enumerate(_lines(path), start=1):
        parts = raw.split()
        if not parts:
            continue
        rel = parts[0].replace("\\", "/")
        where = f"{path.name} line {lineno}"
        if "/" not in rel:
            raise InputError(f"{where}: expected '<Class>/<file>', got {rel!r}")
        label = index.get(rel.split("/", 1)[0], where)
        if labelled and len(parts) > 1:
            if not parts[1].isdigit() or int(parts[1]) != label + 1:
                raise LabelsError(f"{where}: class index {parts[1]} does not match folder "
                                  f"{rel.split('/', 1)[0]!r} (index {label + 1} in {index.source})")
        found = files.resolve(rel)
        if found is None:
            missing.append(rel)
            continue
        match = _GROUP.search(rel)
        group = f"{index.classes[label].lower()}_g{match.group(1)}" if match else rel.lower()
        clips.append(Clip(found, found.relative_to(files.root).as_posix(), label, group))
    return clips, missing


def read_ucf101(root: Path, split: str | int = 1, lists: Path | None = None) -> Dataset:
    root = require_root(root)
    split = str(split)
    if split not in SPLITS:
        raise ConfigError(f"unknown UCF101 split {split!r}; UCF101 has splits {', '.join(SPLITS)}")
    folders = list_folders(root, lists)
    where = ", ".join(str(f) for f in folders)
    class_file = find_list(folders, "classInd.txt")
    if class_file is None:
        raise InputError(f"no classInd.txt in {where}; pass --lists with the folder of UCF101's split files")
    train_file = find_list(folders, f"trainlist0{split}.txt")
    test_file = find_list(folders, f"testlist0{split}.txt")
    if train_file is None or test_file is None:
        absent = f"trainlist0{split}.txt" if train_file is None else f"testlist0{split}.txt"
        raise InputError(f"no {absent} in {where}; split {split} needs both trainlist0{split}.txt and "
                         f"testlist0{split}.txt")
    classes = read_class_index(class_file)
    index = ClassIndex(classes, class_file.name)
    files = FileIndex(root)
    train, missing_train = read_split_list(train_file, index, files, labelled=True)
    test, missing_test = read_split_list(test_file, index, files, labelled=False)
    if missing_train or missing_test:
        listed = f"{train_file.name}" if missing_train else f"{test_file.name}"
        raise missing_error(root, missing_train + missing_test, listed)
    return Dataset(name="ucf101" if len(classes) == 101 else root.name, layout="ucf101", root=root, split=split,
                   classes=classes, train=tuple(train), test=tuple(test))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # the official zip has CRLF; splitlines copes
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path} ({err}); pass a readable text file") from None
