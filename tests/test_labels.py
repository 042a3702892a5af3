"""Label sets: built-in order (the logit contract), display names, and label files a user writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from har_stream.errors import LabelsError
from har_stream.labels import LabelSet, humanize, load_label_set

CLASS_IND = Path("/work/shared/data/labels/ucf101_classInd.txt")


def test_kinetics400_is_in_torchvision_order() -> None:
    from torchvision.models.video import R2Plus1D_18_Weights, S3D_Weights

    k400 = load_label_set("kinetics400")
    assert k400.name == "kinetics400" and len(k400) == 400
    assert k400.labels == tuple(S3D_Weights.KINETICS400_V1.meta["categories"])
    assert k400.labels == tuple(R2Plus1D_18_Weights.KINETICS400_V1.meta["categories"])
    assert k400.labels[6] == "arm wrestling" and k400.labels[62] == "cleaning pool"
    assert k400.display == k400.labels  # Kinetics names are already readable


def test_ucf101_has_101_names_in_class_index_order() -> None:
    ucf = load_label_set("UCF101")
    assert ucf.name == "ucf101" and len(ucf) == 101
    assert ucf.labels[0] == "ApplyEyeMakeup" and ucf.labels[7] == "Basketball" and ucf.labels[-1] == "YoYo"
    assert ucf.display[0] == "apply eye makeup" and ucf.display[-1] == "yo yo"
    if not CLASS_IND.exists():
        pytest.skip(f"{CLASS_IND} is absent: cannot cross-check the order against the official classInd.txt")
    official = [line.split()[1] for line in CLASS_IND.read_text().splitlines() if line.strip()]
    assert list(ucf.labels) == official


@pytest.mark.parametrize(("label", "shown"), [
    ("ApplyEyeMakeup", "apply eye makeup"),
    ("YoYo", "yo yo"),
    ("HandstandPushups", "handstand pushups"),
    ("CleanAndJerk", "clean and jerk"),
    ("Basketball", "basketball"),
    ("HTMLParser", "html parser"),
    ("jumping_jack", "jumping jack"),
    ("arm wrestling", "arm wrestling"),
    ("passing American football (in game)", "passing American football (in game)"),
    ("abseiling", "abseiling"),
    ("  Archery ", "archery"),
])
def test_humanize(label: str, shown: str) -> None:
    assert humanize(label) == shown


def test_label_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "gym.txt"
    path.write_text("# my gym labels\n\nsquat\n  push up  \n# not a label\nJumpingJack\n")
    labels = load_label_set(str(path))
    assert labels == LabelSet("gym", ("squat", "push up", "JumpingJack"))
    assert labels.display == ("squat", "push up", "jumping jack")
    assert labels.index("push up") == 1
    with pytest.raises(LabelsError, match="not in label set"):
        labels.index("deadlift")


def test_duplicate_labels_are_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.txt"
    path.write_text("run\nwalk\nrun\n")
    with pytest.raises(LabelsError, match=r"repeats 'run' \(lines 1 and 3\)"):
        load_label_set(str(path))


@pytest.mark.parametrize("body", ["", "\n\n", "# only a comment\n   \n"])
def test_empty_label_file_is_an_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(body)
    with pytest.raises(LabelsError, match="holds no labels; write one label per line") as info:
        load_label_set(str(path))
    assert "\n" not in str(info.value)


def test_missing_file_unknown_name_and_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="does not exist; pass ucf101, kinetics400 or a path"):
        load_label_set(str(tmp_path / "nope.txt"))
    with pytest.raises(LabelsError, match="unknown label set 'kinetics700'; use one of ucf101, kinetics400"):
        load_label_set("kinetics700")
    with pytest.raises(LabelsError, match="is a directory"):
        load_label_set(str(tmp_path))
    with pytest.raises(LabelsError, match="no label set given"):
        load_label_set("  ")


def test_labelset_refuses_empty_and_duplicates() -> None:
    with pytest.raises(LabelsError):
        LabelSet("x", ())
    with pytest.raises(LabelsError, match="repeats"):
        LabelSet("x", ("a", "a"))
