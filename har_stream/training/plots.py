"""PNG figures: training curves and the confusion matrix (matplotlib's Agg canvas; no pyplot, no global state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    from ..fileutil import publish

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, format="png")
    publish(tmp, path)
    return path


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is not None and value != "" and not (isinstance(value, float) and math.isnan(value)):
            xs.append(int(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "training") -> Path:
    """Loss and accuracy per epoch (train and validation); a dotted line marks where fine-tuning starts."""
    figure = _figure(10, 4)
    loss_ax, acc_ax = figure.subplots(1, 2)
    for key, style in (("train_loss", "-o"), ("val_loss", "--s")):
        xs, ys = _series(rows, key)
        if xs:
            loss_ax.plot(xs, ys, style, label=key.replace("_", " "), markersize=3)
    for key, style in (("train_top1", "-o"), ("val_clip_top1", "--s"), ("val_video_top1", ":^")):
        xs, ys = _series(rows, key)
        if xs:
            acc_ax.plot(xs, [100 * y for y in ys], style, label=key.replace("_", " "), markersize=3)
    stage2 = [int(r["epoch"]) for r in rows if int(r.get("stage", 1)) == 2]
    for ax in (loss_ax, acc_ax):
        if stage2:
            ax.axvline(min(stage2) - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_ylabel("top-1 accuracy (%)")
    acc_ax.set_ylim(0, 100)
    figure.suptitle(title)
    return _save(figure, path)


def plot_confusion(matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], path: Path,
                   title: str = "confusion matrix (videos)") -> Path:
    """Rows: true class; columns: predicted. Each row is normalised to its class's videos."""
    n_rows, n_cols = matrix.shape
    side = min(40.0, max(5.0, 0.16 * max(n_rows, n_cols) + 3))
    figure = _figure(side + 1, side)
    ax = figure.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    font = max(3.0, min(9.0, 300.0 / max(n_rows, n_cols)))
    ax.set_xticks(range(n_cols), labels=list(columns), rotation=90, fontsize=font)
    ax.set_yticks(range(n_rows), labels=list(rows), fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if max(n_rows, n_cols) <= 20:
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                ax.text(c, r, str(int(count)), ha="center", va="center", fontsize=font,
                        color="white" if share[r, c] > 0.5 else "black")
    figure.colorbar(image, ax=ax, fraction=0.04, label="share of the class's videos")
    ax.set_title(title)
    return _save(figure, path)
