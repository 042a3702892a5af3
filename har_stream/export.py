"""Offline results out of the engine: JSON and CSV files, a terminal table, and JSON back in.

The JSON shape is the one of ``AnalysisResult.to_json()`` (ARCHITECTURE.md); ``result_from_json`` is its
inverse so the server can reload stored results. Files are written atomically (temp file in the same folder,
then ``os.replace``) so a reader never sees half a result, even if the writer is killed.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InputError
from .fileutil import publish
from .types import AnalysisResult, ModelRef, Prediction, Segment, TimelineEntry

TOPK_COLUMNS = 5
CSV_COLUMNS: tuple[str, ...] = ("start", "end", "label", "confidence", "source") + tuple(
    f"top{i}_{part}" for i in range(1, TOPK_COLUMNS + 1) for part in ("label", "prob")
)


# ---------------------------------------------------------------------------------------------- files


def _atomic_write_text(path: Path, text: str, *, newline: str | None = None) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, so the rename is atomic."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(result: AnalysisResult, path: Path) -> None:
    """Write ``result.to_json()`` as UTF-8 JSON (indent 2), atomically."""
    text = json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    _atomic_write_text(Path(path), text)


def write_csv(result: AnalysisResult, path: Path) -> None:
    """Write one row per analysed window (``CSV_COLUMNS``), atomically; missing top-k cells are empty."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for seg in result.segments:
        row = seg.to_json()
        cells: list[Any] = [row["start"], row["end"], row["label"], row["confidence"], row["source"]]
        top = row["top5"][:TOPK_COLUMNS]
        for name, prob in top:
            cells += [name, prob]
        cells += [""] * (2 * (TOPK_COLUMNS - len(top)))
        writer.writerow(cells)
    _atomic_write_text(Path(path), buf.getvalue(), newline="")


def read_json(path: Path) -> AnalysisResult:
    """Load a result written by ``write_json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read result file {path}: {err}; re-run the analysis to recreate it") from err
    return result_from_json(data)


# ------------------------------------------------------------------------------------------ JSON → types


def _prediction(d: Mapping[str, Any]) -> Prediction:
    source = d.get("source", "model")
    if source not in ("model", "clip"):
        raise ValueError(f"source must be 'model' or 'clip', not {source!r}")
    return Prediction(
        label=str(d["label"]),
        confidence=float(d["confidence"]),
        top5=tuple((str(name), float(p)) for name, p in d.get("top5", ())),
        source=source,
    )


def result_from_json(data: Mapping[str, Any]) -> AnalysisResult:
    """Inverse of ``AnalysisResult.to_json()``; a malformed document raises ``InputError``."""
    try:
        segments = tuple(
            Segment(start=float(s["start"]), end=float(s["end"]), prediction=_prediction(s))
            for s in data["segment_predictions"]
        )
        timeline = tuple(
            TimelineEntry(label=str(t["label"]), start=float(t["start"]), end=float(t["end"]),
                          confidence=float(t["confidence"]))
            for t in data["timeline"]
        )
        m = data["model"]
        model = ModelRef(name=str(m["name"]), weights_sha256=m.get("weights_sha256"),
                         labels=str(m.get("labels", "")), fallback=m.get("fallback"))
        settings = data.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ValueError("settings must be an object")
        return AnalysisResult(
            video_url=str(data["video_url"]),
            duration=float(data["duration"]),
            frames_decoded=int(data["frames_decoded"]),
            frames_sampled=int(data["frames_sampled"]),
            fps=float(data["fps"]),
            segments=segments,
            timeline=timeline,
            model=model,
            settings=dict(settings),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as err:
        what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise InputError(f"stored analysis result is malformed ({what}); re-run the analysis") from err


# ------------------------------------------------------------------------------------------ terminal


def label_color(label: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for a label (same in every process: hashlib, not ``hash()``)."""
    digest = hashlib.sha1(label.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    sat = 0.55 + 0.3 * digest[2] / 255.0
    val = 0.85 + 0.15 * digest[3] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


def format_time(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` from one hour), rounded to tenths."""
    tenths = max(0, round(seconds * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s, t = divmod(rest, 10)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m:02d}:{s:02d}.{t}"


def _clip(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with ASCII dots."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..." if limit > 3 else text[:limit]


def _ansi(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on else text


def format_timeline(result: AnalysisResult, *, width: int | None = None, color: bool = False,
                    ascii_only: bool = False) -> str:
    """A table of the result's timeline for stdout: header, one aligned row per entry, one summary line.

    ``color`` adds ANSI colours (pass ``sys.stdout.isatty()``); ``width`` truncates labels and header lines
    to fit a terminal; ``ascii_only`` swaps the en dash (the only non-ASCII character) for ``-``.
    """
    dash = "-" if ascii_only else "\u2013"

    def fit(line: str) -> str:
        return _clip(line, width)

    lines: list[str] = []
    lines.append(fit(f"video:    {result.video_url}"))
    lines.append(fit(f"duration: {format_time(result.duration)} ({result.duration:.1f} s, "
                     f"{result.frames_decoded} frames at {result.fps:g} fps, {result.frames_sampled} sampled)"))
    model = result.model.name + (f" ({result.model.labels})" if result.model.labels else "")
    if result.model.fallback:
        model += f", fallback {result.model.fallback}"
    lines.append(fit(f"model:    {model}"))
    windows = f"windows:  {len(result.segments)}"
    for key in ("window", "stride"):
        if key in result.settings:
            windows += f", {key} {result.settings[key]}"
    lines.append(fit(windows))
    if color:
        lines = [_ansi(line, "1", True) if i == 0 else line for i, line in enumerate(lines)]
    lines.append("")

    if result.timeline:
        times = [f"{format_time(e.start)}{dash}{format_time(e.end)}" for e in result.timeline]
        time_w = max(len(t) for t in times)
        conf_w = 4  # "0.91"
        label_room = None if width is None else max(4, width - time_w - conf_w - 4)
        labels = [_clip(e.label, label_room) for e in result.timeline]
        label_w = max(len(lab) for lab in labels)
        for entry, span, lab in zip(result.timeline, times, labels, strict=True):
            padded = lab.ljust(label_w)
            if color:
                r, g, b = label_color(entry.label)
                padded = _ansi(padded, f"38;2;{r};{g};{b}", True)
            lines.append(f"{span.ljust(time_w)}  {padded}  {entry.confidence:.2f}")
    else:
        lines.append("(no timeline entries: nothing was classified)")

    summary = f"{len(result.segments)} segments, {len(result.timeline)} timeline entries"
    if result.elapsed_s > 0:
        summary += f", analysed in {result.elapsed_s:.1f} s"
        if result.duration > 0:
            summary += f" ({result.duration / result.elapsed_s:.1f}x realtime)"
    lines.append("")
    lines.append(_ansi(fit(summary), "2", color))
    return "\n".join(lines)


def terminal_width(default: int = 100) -> int:
    """The current terminal's width, for ``format_timeline(width=...)``."""
    return shutil.get_terminal_size((default, 24)).columns
