"""Frozen dataclasses that pass between the engine's stages, and their JSON form.

Inside the engine everything is typed; ``to_json()`` gives the wire shapes of ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np

Source = Literal["model", "clip"]
TopK = tuple[tuple[str, float], ...]


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows about its media before decoding it all."""

    url: str
    width: int
    height: int
    fps: float
    duration: float | None
    frame_count: int | None
    live: bool
    codec: str = ""


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One decoded frame. ``pts`` is seconds from the start of the media; ``arrival`` is monotonic time.

    ``index`` counts decoded frames (sampled-out frames included), so gaps in it show what sampling skipped.
    ``image`` is the model-ready uint8 array made by the source's ``prepare`` callable in the decode thread,
    so resizing happens off the event loop and only for kept frames; None when no ``prepare`` was given.
    """

    index: int
    pts: float
    arrival: float
    frame: av.VideoFrame
    image: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """The classifier's view of one window, before smoothing."""

    label: str
    confidence: float
    top5: TopK
    source: Source

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": _r(self.confidence),
            "top5": [[name, _r(p)] for name, p in self.top5],
            "source": self.source,
        }


@dataclass(frozen=True)
class LabelEvent:
    """One window's label as pushed to live sinks (data channel, websocket)."""

    stream: str
    t: float
    window: tuple[float, float]
    prediction: Prediction
    smoothed_label: str
    latency_ms: float
    window_index: int
    refines: int | None = None  # window_index this CLIP result refines
    stride: int | None = None  # live: the stride windows close at now (wider than asked while the model lags)

    def to_json(self) -> dict[str, Any]:
        out = {
            "type": "label",
            "stream": self.stream,
            "t": _r(self.t, 3),
            "window": [_r(self.window[0], 3), _r(self.window[1], 3)],
            "window_index": self.window_index,
            **self.prediction.to_json(),
            "smoothed_label": self.smoothed_label,
            "latency_ms": round(self.latency_ms, 1),
        }
        if self.refines is not None:
            out["refines"] = self.refines
        if self.stride is not None:
            out["stride"] = self.stride
        return out


@dataclass(frozen=True)
class Segment:
    """One analysed window of an offline job."""

    start: float
    end: float
    prediction: Prediction

    def to_json(self) -> dict[str, Any]:
        return {"start": _r(self.start, 3), "end": _r(self.end, 3), **self.prediction.to_json()}


@dataclass(frozen=True)
class TimelineEntry:
    """A run of consecutive windows that share one (smoothed) action."""

    label: str
    start: float
    end: float
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "start": _r(self.start, 3), "end": _r(self.end, 3),
                "confidence": _r(self.confidence)}


@dataclass(frozen=True)
class ModelRef:
    name: str
    weights_sha256: str | None
    labels: str
    fallback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "labels": self.labels,
                "fallback": self.fallback}


@dataclass(frozen=True)
class AnalysisResult:
    video_url: str
    duration: float
    frames_decoded: int
    frames_sampled: int
    fps: float
    segments: tuple[Segment, ...]
    timeline: tuple[TimelineEntry, ...]
    model: ModelRef
    settings: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # decode/prepare seconds of this run's source thread

    def to_json(self) -> dict[str, Any]:
        return {
            "video_url": self.video_url,
            "duration": _r(self.duration, 3),
            "frames_decoded": self.frames_decoded,
            "frames_sampled": self.frames_sampled,
            "fps": _r(self.fps, 3),
            "segment_predictions": [s.to_json() for s in self.segments],
            "timeline": [t.to_json() for t in self.timeline],
            "model": self.model.to_json(),
            "settings": dict(self.settings),
            "elapsed_s": _r(self.elapsed_s, 3),
            "stage_s": {k: _r(v, 3) for k, v in self.stage_s.items()},
        }
