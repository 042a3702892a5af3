"""Action events: smoothed labels of one live stream turned into start / update / end of actions.

A camera labelled every half second is too chatty to alert on; an *event* says "this action began here,
lasted this long, this sure". ``ActionEventDetector`` is fed every ``LabelEvent`` a ``StreamPipeline``
publishes (it has the pipeline's ``EventSink`` signature) and decides:

- **Runs.** Consecutive windows with the same *smoothed* label form a run. A run has *held* for the stream
  time between the ends (``t``) of its first and newest windows, so with ``min_duration_s > 0`` a single
  window never opens an event.
- **start.** With no event open, a run that has held ``min_duration_s`` opens one. Its ``start`` is back-dated
  to the start of the run's first window (``window[0]``): the earliest frame that counted towards it.
- **update.** While open, an update goes out whenever ``update_every_s`` of stream time has passed since the
  event's last message, with the running peak and mean.
- **end.** An open event ends when a run of *another* label has held ``min_duration_s`` (``reason
  "changed"``; ``end`` is that run's start, so consecutive events tile the stream), when ``close()`` is
  called (``"stopped"``: the stream ended or was stopped), or when stream time jumps back or forward by more
  than ``max_gap_s`` (``"gap"``: a reconnect restarted the clock, or frames stopped for a while). A short
  flicker of another label does not end it; windows of the event's label after the flicker count again.
  (``"interrupted"`` is set by the server's event store for events a crash left open.)
- **Confidence.** Each window counts with its own probability of the smoothed label (``probs`` from the
  pipeline). ``peak_confidence`` and ``mean_confidence`` are over the windows of the event's label.
- **Snapshot.** The frame at the event's peak: whenever a window sets a new peak, the stream's
  ``Snapshotter`` is asked for the JPEG of the frame at that window's ``t`` (its newest frame). Peaks rise
  only a few times per event, so encoding stays rare. Events carry the bytes; their JSON carries a URL.
- **Label filter.** Detection always runs over every label (a filtered-out action still ends the event
  before it), but only events whose label is in ``DetectorSettings.labels`` are emitted.
- **CLIP refinements** (``LabelEvent.refines`` not None) are ignored. They arrive late and out of order, carry
  CLIP's unsmoothed label, and are only made for low-confidence windows, so letting them open or close
  events would make events flicker exactly where the model is unsure. Events follow the smoothed labels the
  live overlay shows as stable.
- **One clock.** Event times are stream times; ``started_at``/``ended_at`` (UTC) are those same times mapped
  to the wall clock through one *anchor* (a wall time for a stream time), so ``ended_at - started_at`` is
  exactly ``end - start`` (``duration``). The anchor is set from the injectable ``clock`` when an event starts
  (``clock() - (t_now - start)``: the few hundred ms of label latency are not subtracted) and kept while the
  event is open; it is re-set at a later start only when stream time has drifted more than ``RESYNC_S`` from
  the wall clock (a reconnect, a stream that runs slow), and never so far back that an event would start
  before the previous one ended: one stream's events never overlap, in stream time or in wall time. (Two
  clocks - stream time for the duration, ``clock()`` at each message for the ends - disagreed wherever stream
  time ran at another speed than the wall clock, e.g. a recording decoded faster than real time.)
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

import numpy as np

from .errors import ConfigError
from .types import LabelEvent

log = logging.getLogger(__name__)

Phase = Literal["start", "update", "end"]
EndReason = Literal["changed", "stopped", "gap", "interrupted"]
Snapshotter = Callable[[float], bytes | None]
"""JPEG bytes of the frame at a stream time (seconds), or None when that frame is no longer held."""
Clock = Callable[[], datetime]

DEFAULT_SNAPSHOT_BASE = "/api/events"
RESYNC_S = 1.0  # how far stream time may drift from the wall clock before the next event re-anchors


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_event_id() -> str:
    """32 lowercase hex digits: safe as a file name and in a URL."""
    return uuid.uuid4().hex


def iso_utc(moment: datetime | None) -> str | None:
    """``2025-01-02T03:04:05.678Z`` (milliseconds, UTC), or None."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ActionEvent:
    """One message about one action: its ``start``, an ``update`` while it lasts, or its ``end``.

    Times ``start``/``last``/``end``/``peak_t`` are stream seconds (the media's clock); ``*_at`` are UTC
    wall-clock datetimes. ``last`` is the end of the event's newest window of its label (== ``end`` once
    ended). ``seq``
    counts the messages of one event from 0, so a receiver can order them and drop repeats.
    ``snapshot`` (JPEG bytes) travels in memory only; JSON names it by URL.
    """

    id: str
    phase: Phase
    seq: int
    stream: str
    label: str
    start: float
    last: float
    end: float | None
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime
    peak_confidence: float
    mean_confidence: float
    peak_t: float
    windows: int
    reason: EndReason | None = None
    has_snapshot: bool = False
    snapshot: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def closed(self) -> bool:
        return self.phase == "end"

    @property
    def state(self) -> Literal["open", "closed"]:
        return "closed" if self.closed else "open"

    @property
    def duration(self) -> float:
        """Stream seconds covered so far (to ``end`` once ended)."""
        return max(0.0, (self.end if self.end is not None else self.last) - self.start)

    def snapshot_url(self, base: str = DEFAULT_SNAPSHOT_BASE) -> str | None:
        return f"{base.rstrip('/')}/{self.id}/snapshot.jpg" if self.has_snapshot else None

    def to_json(self, snapshot_base: str = DEFAULT_SNAPSHOT_BASE) -> dict[str, Any]:
        """The wire shape (webhooks, MQTT, the events API). ``snapshot_base`` is where snapshots are served:
        the default is the server's relative path; give an absolute URL for receivers on other machines."""
        return {
            "type": "action",
            "phase": self.phase,
            "id": self.id,
            "seq": self.seq,
            "stream": self.stream,
            "label": self.label,
            "state": self.state,
            "start": round(self.start, 3),
            "last": round(self.last, 3),
            "end": round(self.end, 3) if self.end is not None else None,
            "duration": round(self.duration, 3),
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
            "updated_at": iso_utc(self.updated_at),
            "peak_confidence": round(self.peak_confidence, 4),
            "mean_confidence": round(self.mean_confidence, 4),
            "peak_t": round(self.peak_t, 3),
            "windows": self.windows,
            "reason": self.reason,
            "snapshot": self.snapshot_url(snapshot_base),
        }


class ActionSink(Protocol):
    """Where action events go (store, webhooks, MQTT): ``publish`` must return at once, never block."""

    def publish(self, event: ActionEvent) -> None: ...


@dataclass(frozen=True)
class DetectorSettings:
    """``labels``: only emit events for these labels (None: all). ``update_every_s``: None for no updates."""

    min_duration_s: float = 1.0
    update_every_s: float | None = 5.0
    max_gap_s: float = 5.0
    labels: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_duration_s) or self.min_duration_s < 0:
            raise ConfigError(f"event min duration must be 0 or more seconds (got {self.min_duration_s})")
        if self.update_every_s is not None and not (math.isfinite(self.update_every_s)
                                                    and self.update_every_s > 0):
            raise ConfigError(f"event update interval must be positive seconds (got {self.update_every_s})")
        if not self.max_gap_s > 0:
            raise ConfigError(f"event max gap must be positive seconds (got {self.max_gap_s})")
        if self.labels is not None:
            object.__setattr__(self, "labels", frozenset(self.labels))

    @classmethod
    def only(cls, labels: Collection[str] | None, **kw: Any) -> DetectorSettings:
        """Settings with a label filter; an empty collection means no filter."""
        return cls(labels=frozenset(labels) if labels else None, **kw)


class _Stats:
    """Running peak / mean of one label's windows, with the frame at the peak."""

    __slots__ = ("n", "total", "peak", "peak_t", "last_t", "snapshot", "has_snapshot")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.peak = -1.0
        self.peak_t = 0.0
        self.last_t = 0.0
        self.snapshot: bytes | None = None
        self.has_snapshot = False

    def add(self, confidence: float, t: float) -> bool:
        """Count one window; True when it set a new peak."""
        self.n += 1
        self.total += confidence
        self.last_t = t
        if confidence > self.peak:
            self.peak, self.peak_t = confidence, t
            return True
        return False

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


@dataclass
class _Run:
    label: str
    start: float  # window[0] of the first window
    first_t: float  # t (window end) of the first window
    last_t: float
    stats: _Stats = field(default_factory=_Stats)

    @property
    def held(self) -> float:
        return self.last_t - self.first_t


@dataclass
class _Open:
    id: str
    label: str
    start: float
    started_at: datetime
    stats: _Stats
    emit: bool
    seq: int = 0
    last_sent_t: float = 0.0


class ActionEventDetector:
    """Turns one stream's label events into action events (see the module doc for the rules).

    ``labels``: the model's label order, to read ``probs``. ``snapshot``: the stream's frames by time (e.g. a
    ``har_stream.snapshot.RecentFrames``), or None for events without pictures. ``emit``: called with each
    action event when the detector is used as a pipeline sink (``__call__``); ``feed`` returns them instead.
    Not thread-safe: feed it from the stream's event loop.
    """

    def __init__(self, stream: str, labels: Sequence[str], settings: DetectorSettings = DetectorSettings(), *,
                 snapshot: Snapshotter | None = None, emit: Callable[[ActionEvent], None] | None = None,
                 clock: Clock = utc_now, new_id: Callable[[], str] = new_event_id) -> None:
        self.stream = stream
        self.settings = settings
        self._index = {label: i for i, label in enumerate(labels)}
        unknown = sorted(settings.labels - self._index.keys()) if settings.labels is not None else []
        if unknown:
            raise ConfigError(f"stream {stream}: event labels {', '.join(map(repr, unknown))} are not labels of "
                              "its model; pick from the model's label set")
        self._snapshot = snapshot
        self._emit = emit
        self._clock = clock
        self._new_id = new_id
        self._run: _Run | None = None
        self._open: _Open | None = None
        self._last_t: float | None = None
        self._last_wall: datetime | None = None
        self._anchor: tuple[datetime, float] | None = None  # (wall time, stream time): the one clock of events
        self._last_ended_at: datetime | None = None
        self.refinements_ignored = 0

    @property
    def open_label(self) -> str | None:
        """The label of the event open now (emitted or filtered out), if any."""
        return self._open.label if self._open is not None else None

    def __call__(self, event: LabelEvent, probs: np.ndarray) -> None:
        """The pipeline's ``EventSink``: feed, and hand every action event to ``emit``. An ``emit`` that raises
        is logged, never passed on: delivering events must not stop recognition."""
        for action in self.feed(event, probs):
            if self._emit is not None:
                try:
                    self._emit(action)
                except Exception:
                    log.exception("stream %s: handing on action event %s failed", self.stream, action.id)

    def feed(self, event: LabelEvent, probs: np.ndarray) -> list[ActionEvent]:
        """One published window; returns the action events it caused (oldest first, usually none)."""
        if event.refines is not None:
            self.refinements_ignored += 1
            return []
        label, t = event.smoothed_label, float(event.t)
        try:
            confidence = float(probs[self._index[label]])
        except KeyError:
            raise ValueError(f"stream {self.stream}: label {label!r} is not one of the detector's labels") from None
        now = self._clock()
        out: list[ActionEvent] = []
        if self._last_t is not None and (t < self._last_t or t - self._last_t > self.settings.max_gap_s):
            out += self._finish("gap")
        self._last_t, self._last_wall = t, now

        run = self._run
        if run is None or run.label != label:
            run = self._run = _Run(label, float(event.window[0]), t, t)
        else:
            run.last_t = t
        opened = self._open
        stats = opened.stats if opened is not None and opened.label == label else run.stats
        wants_pictures = opened.emit if opened is not None and opened.label == label else self._passes(label)
        if stats.add(confidence, t) and wants_pictures:
            self._take_snapshot(stats, t)

        held = run.held >= self.settings.min_duration_s - 1e-9
        if opened is not None and opened.label != label and held:
            out += self._end(opened, run.start, "changed", now)
            opened = None
        if opened is None and held:
            opened = self._start(run, now, t)
            if opened.emit:
                out.append(self._message(opened, "start", opened.stats.last_t, now))
        elif (opened is not None and opened.emit and self.settings.update_every_s is not None
              and t - opened.last_sent_t >= self.settings.update_every_s - 1e-9):
            out.append(self._message(opened, "update", opened.stats.last_t, now, sent_t=t))
        return out

    def close(self, reason: EndReason = "stopped") -> list[ActionEvent]:
        """The stream stopped (or is about to restart): end the open event at the last window seen."""
        return self._finish(reason)

    # -- internals ------------------------------------------------------------------------------------------

    def _passes(self, label: str) -> bool:
        return self.settings.labels is None or label in self.settings.labels

    def _take_snapshot(self, stats: _Stats, t: float) -> None:
        if self._snapshot is None:
            return
        try:
            picture = self._snapshot(t)
        except Exception:  # a picture is a nicety: never let it break recognition
            log.exception("stream %s: snapshot at t=%.3f failed", self.stream, t)
            return
        if picture is not None:
            stats.snapshot, stats.has_snapshot = picture, True

    def _wall(self, t: float) -> datetime:
        """The wall-clock time of stream time ``t`` (an anchor is set before any event starts)."""
        assert self._anchor is not None
        wall, at = self._anchor
        return wall + timedelta(seconds=t - at)

    def _anchor_at(self, now: datetime, t: float, start: float) -> datetime:
        """Re-anchor if stream time has drifted from the wall clock; the new event's ``started_at``."""
        if self._anchor is None or abs((self._wall(t) - now).total_seconds()) > RESYNC_S:
            self._anchor = (now, t)
        started_at = self._wall(start)
        if self._last_ended_at is not None and started_at < self._last_ended_at:  # never overlap the last one
            wall, at = self._anchor
            self._anchor = (wall + (self._last_ended_at - started_at), at)
            started_at = self._last_ended_at
        return started_at

    def _start(self, run: _Run, now: datetime, t: float) -> _Open:
        opened = _Open(id=self._new_id(), label=run.label, start=run.start,
                       started_at=self._anchor_at(now, t, run.start), stats=run.stats,
                       emit=self._passes(run.label), last_sent_t=t)
        run.stats = _Stats()  # the event owns these now; later windows of its label count there
        self._open = opened
        return opened

    def _finish(self, reason: EndReason) -> list[ActionEvent]:
        out: list[ActionEvent] = []
        if self._open is not None and self._last_t is not None and self._last_wall is not None:
            out = self._end(self._open, self._last_t, reason, self._last_wall)
        self._open = None
        self._run = None
        self._last_t = None
        self._last_wall = None
        return out

    def _end(self, opened: _Open, end: float, reason: EndReason, now: datetime) -> list[ActionEvent]:
        self._open = None
        end = max(end, opened.start)
        ended_at = self._wall(end)  # the anchor its start used: ended_at - started_at == end - start
        self._last_ended_at = ended_at
        if not opened.emit:
            return []
        return [self._message(opened, "end", end, now, end=end, ended_at=ended_at, reason=reason)]

    def _message(self, opened: _Open, phase: Phase, last: float, now: datetime, *, end: float | None = None,
                 ended_at: datetime | None = None, reason: EndReason | None = None,
                 sent_t: float | None = None) -> ActionEvent:
        stats = opened.stats
        message = ActionEvent(
            id=opened.id, phase=phase, seq=opened.seq, stream=self.stream, label=opened.label, start=opened.start,
            last=max(last, opened.start), end=end, started_at=opened.started_at, ended_at=ended_at, updated_at=now,
            peak_confidence=max(stats.peak, 0.0), mean_confidence=stats.mean, peak_t=stats.peak_t,
            windows=stats.n, reason=reason, has_snapshot=stats.has_snapshot, snapshot=stats.snapshot)
        opened.seq += 1
        opened.last_sent_t = last if sent_t is None else sent_t
        return message
