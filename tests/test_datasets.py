"""Dataset readers: UCF101's official split lists, class folders with or without a split file, Kinetics CSVs.

The split rules are checked on the file lists themselves: no test video is ever a training video.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from har_stream.datasets import open_dataset
from har_stream.datasets.decode import FrameSpec, decode_clip
from har_stream.errors import ConfigError, InputError, LabelsError
from har_stream.synthetic import write_motion_clip
from tests.helpers.clips import SHARED_DATA, run_cli
from tests.helpers.motion_dataset import make_motion_dataset

REAL_LISTS = SHARED_DATA / "labels"
real_lists = pytest.mark.skipif(not (REAL_LISTS / "ucf101_trainlist01.txt").exists(),
                                reason=f"UCF101 split lists not present ({REAL_LISTS} is absent in this checkout)")


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory):
    return make_motion_dataset(tmp_path_factory.mktemp("motion"), train_groups=2, test_groups=1,
                               clips_per_group=2, seconds=0.6)


# -- UCF101 -----------------------------------------------------------------------------------------

@real_lists
def test_real_ucf101_split1_lists_are_read_whole_and_disjoint(tmp_path: Path) -> None:
    """The official lists, against a tree of empty stand-in files (only names matter to a reader)."""
    names = []
    for listed in ("ucf101_trainlist01.txt", "ucf101_testlist01.txt"):
        names += [line.split()[0] for line in (REAL_LISTS / listed).read_text().splitlines() if line.strip()]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    ds = open_dataset(tmp_path, split=1, lists=REAL_LISTS)
    assert ds.layout == "ucf101" and ds.name == "ucf101"
    assert len(ds.classes) == 101 and ds.classes[36] == "HandstandPushups"
    assert (len(ds.train), len(ds.test)) == (9537, 3783)
    assert not {c.name.lower() for c in ds.train} & {c.name.lower() for c in ds.test}
    handstand = [c for c in ds.train + ds.test if "HandStandPushups" in c.name]
    assert len(handstand) == 128 and {c.label for c in handstand} == {36}
    assert {c.group.rsplit("_g", 1)[1] for c in ds.test} == {f"{g:02d}" for g in range(1, 8)}
    assert {c.group.rsplit("_g", 1)[1] for c in ds.train} == {f"{g:02d}" for g in range(8, 26)}
    from har_stream.labels import load_label_set

    assert ds.classes == load_label_set("ucf101").labels  # a UCF101 checkpoint's labels are the built-in set


def test_synthetic_ucf101_split_holds_out_the_test_list(motion) -> None:
    ds = open_dataset(motion.root, split="1")
    assert ds.layout == "ucf101" and ds.classes == motion.classes
    assert [c.name for c in ds.train] == list(motion.train)
    assert [c.name for c in ds.test] == list(motion.test)
    assert not {c.name for c in ds.train} & {c.name for c in ds.test}
    assert all(c.path.is_file() and ds.classes[c.label] in c.name for c in ds.train + ds.test)
    assert len(ds.train_sha256()) == 64


def _lists(tmp_path: Path, motion, *, class_ind: str | None = None, train: list[str] | None = None,
           test: list[str] | None = None) -> Path:
    lists = tmp_path / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "classInd.txt").write_text(class_ind or (motion.lists / "classInd.txt").read_text())
    (lists / "trainlist01.txt").write_text("".join(f"{n}\n" for n in (train or motion.train)))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in (test or motion.test)))
    return lists


def test_a_class_missing_from_classind_is_a_clear_error(motion, tmp_path: Path) -> None:
    class_ind = "".join(f"{i} {c}\n" for i, c in enumerate(motion.classes[:-1], start=1))
    lists = _lists(tmp_path, motion, class_ind=class_ind)
    with pytest.raises(LabelsError, match=rf"trainlist01.txt line \d+: class '{motion.classes[-1]}' is not in "
                                          r"classInd.txt"):
        open_dataset(motion.root, lists=lists)


def test_a_video_in_both_lists_is_refused(motion, tmp_path: Path) -> None:
    lists = _lists(tmp_path, motion, test=list(motion.test) + [motion.train[0]])
    with pytest.raises(InputError, match=r"1 video\(s\) are in both the train and the test split"):
        open_dataset(motion.root, lists=lists)


def test_split_list_errors_name_the_problem(motion, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown UCF101 split '4'; UCF101 has splits 1, 2, 3"):
        open_dataset(motion.root, split=4)
    with pytest.raises(InputError, match="no trainlist02.txt"):
        open_dataset(motion.root, split=2)
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    lists = _lists(tmp_path, motion, test=list(motion.test) + ["MovingLeft/v_MovingLeft_g09_c01.avi"])
    with pytest.raises(InputError, match=r"1 video\(s\) listed in testlist01.txt are not under .*g09_c01"):
        open_dataset(motion.root, lists=lists)


def test_train_cli_reports_bad_data_in_one_line(motion, tmp_path: Path, cli_env) -> None:
    proc = run_cli("train", "--data", str(tmp_path / "missing"), env=cli_env)
    assert proc.returncode == 3 and proc.stderr.startswith("har-stream: error: dataset folder")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("eval", "--model", "clip", "--data", str(motion.root), "--split", "7", env=cli_env)
    assert proc.returncode == 2 and "UCF101 has splits 1, 2, 3" in proc.stderr


def test_a_class_without_training_videos_is_a_clear_error(motion, tmp_path: Path, cli_env) -> None:
    train = [n for n in motion.train if not n.startswith("HoldingStill/")]
    lists = _lists(tmp_path, motion, train=train)
    proc = run_cli("train", "--data", str(motion.root), "--lists", str(lists), "--encoder", "tiny",
                   "--no-pretrained", "--out", str(tmp_path / "run"), env=cli_env)
    assert proc.returncode == 3
    assert "1 class(es) have no train clips in split 1 ('HoldingStill')" in proc.stderr
    assert not (tmp_path / "run").exists()


# -- one folder per class ----------------------------------------------------------------------------

def _folders(root: Path, counts: dict[str, int]) -> Path:
    for cls, n in counts.items():
        for i in range(n):
            write_motion_clip(root / cls / f"{cls}_{i}.mp4", [("holding still", 0.2)], width=32, height=32,
                              seed=i)
    return root


def test_class_folders_hold_out_a_stable_share_of_each_class(tmp_path: Path) -> None:
    root = _folders(tmp_path / "data", {"walk": 5, "wave": 4})
    ds = open_dataset(root)
    again = open_dataset(root)
    assert ds.layout == "folders" and ds.classes == ("walk", "wave")
    assert [c.name for c in ds.test] == [c.name for c in again.test]  # the same on every run
    assert [sum(c.label == i for c in ds.test) for i in (0, 1)] == [1, 1]
    assert len(ds.train) == 7 and not {c.name for c in ds.train} & {c.name for c in ds.test}
    bigger = open_dataset(root, test_fraction=0.5)
    assert [sum(c.label == i for c in bigger.test) for i in (0, 1)] == [3, 2]  # half of 5, rounded up


def test_class_folders_with_a_split_file(tmp_path: Path) -> None:
    root = _folders(tmp_path / "data", {"walk": 2, "wave": 2})
    (root / "split.csv").write_text("# video,subset\nwalk/walk_0.mp4,train\nwave/wave_0.mp4 train\n"
                                    "walk/walk_1.mp4,test\nwave/wave_1.mp4,test\n")
    ds = open_dataset(root)
    assert ds.split == "split.csv"
    assert [c.name for c in ds.train] == ["walk/walk_0.mp4", "wave/wave_0.mp4"]
    assert [c.name for c in ds.test] == ["walk/walk_1.mp4", "wave/wave_1.mp4"]
    (root / "split.csv").write_text("walk/walk_0.mp4,train\nrun/run_0.mp4,test\n")
    with pytest.raises(LabelsError, match="split.csv line 2: class 'run' is not in"):
        open_dataset(root)


def test_an_empty_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = _folders(tmp_path / "data", {"walk": 2, "wave": 2})
    (root / "jump").mkdir()
    with pytest.raises(InputError, match=r"class folder .*jump holds no videos"):
        open_dataset(root)


# -- Kinetics-style CSV --------------------------------------------------------------------------------

def test_kinetics_csv_finds_videos_by_youtube_id_and_skips_missing_ones(tmp_path: Path) -> None:
    root = tmp_path / "k"
    for label, yid in (("abseiling", "aaa"), ("abseiling", "bbb"), ("air drumming", "ccc"), ("air drumming", "ddd")):
        write_motion_clip(root / "train" / label / f"{yid}_000010_000020.mp4", [("holding still", 0.2)],
                          width=32, height=32)
    write_motion_clip(root / "val" / "eee.mp4", [("moving left", 0.2)], width=32, height=32)
    (root / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                    "abseiling,aaa,10,20,train\nabseiling,bbb,10,20,train\n"
                                    "air drumming,ccc,10,20,train\nair drumming,ddd,10,20,train\n"
                                    "air drumming,gone,0,10,train\n")
    (root / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,eee,0,10,val\n")
    ds = open_dataset(root)
    assert ds.layout == "kinetics" and ds.classes == ("abseiling", "air drumming")
    assert len(ds.train) == 4 and [c.name for c in ds.test] == ["val/eee.mp4"]
    assert ds.skipped == ("gone_000000_000010",)
    (root / "validate.csv").write_text("label,path\nzumba,val/eee.mp4\n")
    with pytest.raises(LabelsError, match="validate.csv line 2: class 'zumba' is not in train.csv"):
        open_dataset(root)


# -- decoding ---------------------------------------------------------------------------------------

def test_clips_decode_with_the_engine_sampling(tmp_path: Path) -> None:
    clip = write_motion_clip(tmp_path / "c.mp4", [("moving left", 2.0)], fps=30.0, width=64, height=48)
    decoded = asyncio.run(decode_clip(clip, FrameSpec(15.0, (32, 32), (32, 32))))
    assert decoded.source_fps == pytest.approx(30.0)
    assert decoded.frames.shape == (30, 32, 32, 3) and decoded.frames.dtype == np.uint8
    assert np.allclose(np.diff(decoded.pts), 1 / 15, atol=1e-3)
