"""Evaluation arithmetic on fixed predictions: top-1/top-5 per clip and per video, per class, confusion."""

from __future__ import annotations

import numpy as np
import pytest

from har_stream.errors import ModelError
from har_stream.training.metrics import OTHER, VideoPrediction, class_mapping, score, topk_hits


def probs(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=float)


def test_topk_counts_the_target_among_the_k_highest() -> None:
    p = probs([0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5])
    targets = np.array([1, 2, 0])
    assert topk_hits(p, targets, 1).tolist() == [True, False, False]
    assert topk_hits(p, targets, 2).tolist() == [True, True, False]
    assert topk_hits(p, targets, 3).tolist() == [True, True, True]


def test_a_video_is_the_mean_of_its_windows_not_their_majority_vote() -> None:
    # Two windows say class 1 weakly, one says class 0 strongly: the mean picks 0, a vote would pick 1.
    video = VideoPrediction("v.avi", 0, probs([0.40, 0.60], [0.45, 0.55], [0.95, 0.05]))
    report = score([video], ("a", "b"), ("a", "b"))
    assert report.clip.count == 3 and report.clip.top1 == pytest.approx(1 / 3)
    assert report.video.count == 1 and report.video.top1 == 1.0
    assert report.videos[0].predicted == "a"
    assert report.videos[0].confidence == pytest.approx((0.40 + 0.45 + 0.95) / 3)
    assert report.videos[0].window_labels == ("b", "b", "a")


def test_report_figures_on_fixed_predictions() -> None:
    classes = ("run", "jump", "sit")
    preds = [
        VideoPrediction("run/1", 0, probs([0.7, 0.2, 0.1], [0.6, 0.3, 0.1])),  # right, both windows
        VideoPrediction("run/2", 0, probs([0.2, 0.5, 0.3])),  # wrong: jump; run is 3rd → not top-2
        VideoPrediction("jump/1", 1, probs([0.1, 0.8, 0.1], [0.5, 0.4, 0.1])),  # windows split; mean jump
        VideoPrediction("sit/1", 2, probs([0.4, 0.1, 0.5])),  # right
    ]
    report = score(preds, classes, classes)
    assert report.clip.count == 6
    assert report.clip.top1 == pytest.approx(4 / 6)  # run/1 ×2, jump/1 first window, sit/1
    assert report.video.top1 == pytest.approx(3 / 4)
    assert report.clip.k == 3 and report.video.top5 == 1.0  # three labels: "top-5" is top-3
    assert [c.videos for c in report.per_class] == [2, 1, 1]
    assert [c.video_top1 for c in report.per_class] == [0.5, 1.0, 1.0]
    assert [c.clip_top1 for c in report.per_class] == pytest.approx([2 / 3, 0.5, 1.0])
    assert report.mean_class_top1 == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert report.columns == classes
    assert report.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_top5_with_many_labels() -> None:
    labels = tuple(f"c{i}" for i in range(8))
    row = np.array([0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.03, 0.02])
    preds = [VideoPrediction("a", 4, row[None, :]), VideoPrediction("b", 5, row[None, :])]
    report = score(preds, labels, labels)
    assert report.video.k == 5
    assert report.video.top1 == 0.0 and report.video.top5 == 0.5  # c4 is 5th, c5 is 6th


def test_model_labels_beyond_the_dataset_get_an_other_column() -> None:
    # A Kinetics-like model (4 labels) on a dataset of two of its classes, named in another case.
    model_labels = ("abseiling", "air drumming", "archery", "zumba")
    classes = ("Archery", "Abseiling")
    mapping = class_mapping(classes, model_labels)
    assert mapping == (2, 0)
    preds = [VideoPrediction("x", 0, probs([0.1, 0.1, 0.7, 0.1])),  # archery → right
             VideoPrediction("y", 1, probs([0.2, 0.1, 0.1, 0.6]))]  # zumba: not a dataset class
    report = score(preds, classes, model_labels, mapping)
    assert report.columns == ("Archery", "Abseiling", OTHER)
    assert report.confusion.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert report.video.top1 == 0.5
    assert report.videos[1].predicted == "zumba"
    assert report.to_json()["confusion"]["columns"][-1] == OTHER


def test_a_model_that_cannot_predict_the_classes_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match=r"cannot predict 2 of the dataset's 3 classes .*'Juggling'.*--model clip"):
        class_mapping(("Archery", "Juggling", "Surfing"), ("archery", "zumba"), "s3d")
