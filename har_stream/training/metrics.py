"""Evaluation arithmetic: top-1/top-5 per clip (window) and per video, per-class accuracy, confusion matrix.

A *clip* is one window the engine classifies; a *video* is a test file, scored by the mean of its windows'
probabilities (the usual multi-window average). Scores are over the model's own labels: a Kinetics model
evaluated on a subset of Kinetics classes can still predict a class outside the subset, and that counts as
wrong (the confusion matrix gets an "(other)" column for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError

OTHER = "(other)"


@dataclass(frozen=True)
class VideoPrediction:
    """One test video: its dataset class and the model's probabilities for each of its windows."""

    name: str
    label: int  # index into the dataset's classes
    window_probs: np.ndarray  # (windows, model labels)

    @property
    def probs(self) -> np.ndarray:
        return self.window_probs.mean(axis=0)


@dataclass(frozen=True)
class Accuracy:
    count: int
    top1: float
    top5: float
    k: int  # the "top-5" k: 5, or fewer when the model has fewer labels

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "top1": round(self.top1, 6), "top5": round(self.top5, 6), "top5_k": self.k}


@dataclass(frozen=True)
class ClassScore:
    name: str
    videos: int
    video_top1: float
    clips: int
    clip_top1: float


@dataclass(frozen=True)
class VideoScore:
    name: str
    true: str
    predicted: str
    confidence: float
    top5: tuple[tuple[str, float], ...]
    window_labels: tuple[str, ...]


@dataclass(frozen=True)
class EvalReport:
    classes: tuple[str, ...]
    model_labels: tuple[str, ...]
    clip: Accuracy
    video: Accuracy
    mean_class_top1: float
    per_class: tuple[ClassScore, ...]
    confusion: np.ndarray  # (classes, columns) video counts; rows true, columns predicted
    columns: tuple[str, ...]
    videos: tuple[VideoScore, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "clip": self.clip.to_json(),
            "video": self.video.to_json(),
            "mean_class_video_top1": round(self.mean_class_top1, 6),
            "per_class": [{"class": c.name, "videos": c.videos, "video_top1": round(c.video_top1, 6),
                           "clips": c.clips, "clip_top1": round(c.clip_top1, 6)} for c in self.per_class],
            "confusion": {"rows": list(self.classes), "columns": list(self.columns),
                          "matrix": self.confusion.astype(int).tolist()},
            "videos": [{"name": v.name, "true": v.true, "predicted": v.predicted,
                        "confidence": round(v.confidence, 6), "top5": [[n, round(p, 6)] for n, p in v.top5],
                        "window_labels": list(v.window_labels)} for v in self.videos],
        }


def class_mapping(classes: Sequence[str], model_labels: Sequence[str], model: str = "the model") -> tuple[int, ...]:
    """Index of each dataset class among the model's labels (case-insensitive); missing ones are an error."""
    index = {label.strip().lower(): i for i, label in enumerate(model_labels)}
    mapping = [index.get(c.strip().lower(), -1) for c in classes]
    absent = [c for c, i in zip(classes, mapping) if i < 0]
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        raise ModelError(f"{model} cannot predict {len(absent)} of the dataset's {len(classes)} classes "
                         f"({', '.join(repr(a) for a in absent[:3])}{more}); evaluate a model trained on these "
                         "classes, or CLIP zero-shot over them (--model clip)")
    return tuple(mapping)


def topk_hits(probs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's target is among its ``k`` highest probabilities (ties broken by label order)."""
    if len(probs) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (order == targets[:, None]).any(axis=1)


def _accuracy(probs: np.ndarray, targets: np.ndarray, k: int) -> Accuracy:
    n = len(targets)
    if n == 0:
        return Accuracy(0, 0.0, 0.0, k)
    return Accuracy(n, float(topk_hits(probs, targets, 1).mean()), float(topk_hits(probs, targets, k).mean()), k)


def score(predictions: Sequence[VideoPrediction], classes: Sequence[str], model_labels: Sequence[str],
          mapping: Sequence[int] | None = None) -> EvalReport:
    """Every figure of an evaluation from the windows' probabilities."""
    classes, model_labels = tuple(classes), tuple(model_labels)
    mapping = tuple(mapping) if mapping is not None else class_mapping(classes, model_labels)
    to_model = np.asarray(mapping, dtype=np.int64)
    k = min(5, len(model_labels))
    to_class = {m: c for c, m in enumerate(mapping)}
    extra = len(set(mapping)) < len(model_labels)
    columns = classes + ((OTHER,) if extra else ())
    confusion = np.zeros((len(classes), len(columns)), dtype=np.int64)

    clip_probs = [p.window_probs for p in predictions]
    clip_targets = [np.full(len(p.window_probs), to_model[p.label]) for p in predictions]
    all_clip_probs = np.concatenate(clip_probs) if predictions else np.zeros((0, len(model_labels)))
    all_clip_targets = np.concatenate(clip_targets) if predictions else np.zeros(0, dtype=np.int64)
    video_probs = np.stack([p.probs for p in predictions]) if predictions else np.zeros((0, len(model_labels)))
    video_targets = to_model[[p.label for p in predictions]] if predictions else np.zeros(0, dtype=np.int64)

    video_hits = topk_hits(video_probs, video_targets, 1)
    videos = []
    for p, probs in zip(predictions, video_probs):
        top = np.argsort(-probs, kind="stable")[:k]
        confusion[p.label, to_class.get(int(top[0]), len(classes))] += 1
        window_top = np.argmax(p.window_probs, axis=1)
        videos.append(VideoScore(p.name, classes[p.label], model_labels[top[0]], float(probs[top[0]]),
                                 tuple((model_labels[i], float(probs[i])) for i in top),
                                 tuple(model_labels[i] for i in window_top)))
    per_class = []
    for c, name in enumerate(classes):
        rows = [i for i, p in enumerate(predictions) if p.label == c]
        hits = [topk_hits(predictions[i].window_probs, np.full(len(predictions[i].window_probs), to_model[c]), 1)
                for i in rows]
        n_clips = int(sum(len(h) for h in hits))
        per_class.append(ClassScore(name, len(rows), float(video_hits[rows].mean()) if rows else 0.0, n_clips,
                                    float(np.concatenate(hits).mean()) if n_clips else 0.0))
    scored = [c.video_top1 for c in per_class if c.videos]
    return EvalReport(classes, model_labels, _accuracy(all_clip_probs, all_clip_targets, k),
                      _accuracy(video_probs, video_targets, k), float(np.mean(scored)) if scored else 0.0,
                      tuple(per_class), confusion, columns, tuple(videos))
