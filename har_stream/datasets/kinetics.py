"""Kinetics-style CSV annotations: ``train.csv`` and ``validate.csv`` (or ``val.csv``) with a ``label`` column.

A row names its video either by ``youtube_id``, ``time_start``, ``time_end`` (the official files; the video is
found by its usual file name ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, or by ``<youtube_id>.<ext>``,
anywhere under the root) or by a ``path`` column relative to the root. Classes are the train labels in sorted
order, which for Kinetics-400 is torchvision's order. Kinetics videos vanish from YouTube, so every copy
lacks some: rows whose video is absent are skipped and counted (``Dataset.skipped``), never guessed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import InputError, LabelsError
from .base import ClassIndex, Clip, Dataset, FileIndex, require_root

TRAIN_FILES = ("train.csv",)
TEST_FILES = ("validate.csv", "val.csv", "validation.csv", "test.csv")
ANNOTATION_FOLDERS = ("", "annotations")


def annotation_folders(root: Path, lists: Path | None) -> list[Path]:
    if lists is not None:
        return [Path(lists).expanduser()]
    return [root / sub if sub else root for sub in ANNOTATION_FOLDERS]


def find_csv(folders: list[Path], names: tuple[str, ...]) -> Path | None:
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def looks_like_kinetics(root: Path, lists: Path | None) -> bool:
    return find_csv(annotation_folders(root, lists), TRAIN_FILES) is not None


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = {f.strip() for f in reader.fieldnames or ()}
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read {path} ({err}); pass a CSV file") from None
    if "label" not in fields or not ({"path"} <= fields or {"youtube_id", "time_start", "time_end"} <= fields):
        raise InputError(f"{path} needs a 'label' column and either 'path' or 'youtube_id,time_start,time_end' "
                         f"(it has {', '.join(sorted(fields)) or 'no header'})")
    return rows


def _stems(row: dict[str, str]) -> list[str]:
    yid = row["youtube_id"]
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except ValueError:
        return [yid]
    return [f"{yid}_{start:06d}_{end:06d}", yid]


def _clips(path: Path, rows: list[dict[str, str]], index: ClassIndex, files: FileIndex,
           by_stem: dict[str, Path]) -> tuple[list[Clip], list[str]]:
    clips, skipped = [], []
    for lineno, row in enumerate(rows, start=2):
        label = index.get(row["label"], f"{path.name} line {lineno}")
        if row.get("path"):
            found = files.resolve(row["path"])
            wanted = row["path"]
        else:
            found = next((by_stem[s.lower()] for s in _stems(row) if s.lower() in by_stem), None)
            wanted = _stems(row)[0]
        if found is None:
            skipped.append(wanted)
            continue
        name = found.relative_to(files.root).as_posix()
        clips.append(Clip(found, name, label, name.lower()))
    return clips, skipped


def read_kinetics(root: Path, lists: Path | None = None) -> Dataset:
    root = require_root(root)
    folders = annotation_folders(root, lists)
    train_csv = find_csv(folders, TRAIN_FILES)
    test_csv = find_csv(folders, TEST_FILES)
    where = ", ".join(str(f) for f in folders)
    if train_csv is None or test_csv is None:
        absent = "train.csv" if train_csv is None else " or ".join(TEST_FILES)
        raise InputError(f"no {absent} in {where}; a Kinetics-style dataset needs train.csv and validate.csv")
    train_rows, test_rows = read_rows(train_csv), read_rows(test_csv)
    classes = tuple(sorted({r["label"] for r in train_rows if r.get("label")}))
    if len(classes) < 2:
        raise LabelsError(f"{train_csv} labels {len(classes)} class(es); a classifier needs at least two")
    index = ClassIndex(classes, train_csv.name)
    files = FileIndex(root)
    by_stem = {p.stem.lower(): p for p in files.videos()}
    train, skipped_train = _clips(train_csv, train_rows, index, files, by_stem)
    test, skipped_test = _clips(test_csv, test_rows, index, files, by_stem)
    if not train or not test:
        empty = train_csv if not train else test_csv
        raise InputError(f"none of the videos {empty.name} lists is under {root}; check --data")
    return Dataset(name=root.name, layout="kinetics", root=root, split=test_csv.stem, classes=classes,
                   train=tuple(train), test=tuple(test), skipped=tuple(skipped_train + skipped_test))
