"""``GET /metrics``: Prometheus text, read from the server's own figures at scrape time.

Why a custom collector rather than counters updated all over the code: peers, cameras, batchers, jobs and event
destinations already count what matters (``/api/status``, ``/api/streams``, ``/api/events/status``), so one
collector reads those objects when Prometheus scrapes, and no other module knows about Prometheus. The registry
is the app's own (``METRICS``), never the library's global one, so two apps in one process (tests, the bench)
never mix their figures.

Counters only grow: per stream they live as long as the stream (a new peer id or a re-added camera starts a new
series, which Prometheus reads as a reset). Per model, a worker that goes away (a free-text CLIP view whose
last peer left) has its last figures folded into the model's totals, so those never go back.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, GCCollector, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from har_stream.latency import LATENCY_BUCKETS
from har_stream.worker import ModelWorker

from .event_hub import EventHub
from .health import serving_workers
from .jobs import JobManager
from .keys import EVENTS, JOBS, METRICS, MODELS, PEERS, STREAMS
from .models_service import ModelService
from .peers import PeerRegistry
from .streams import StreamManager

PEER_STATES = ("connecting", "warming_up", "running", "closing")
CAMERA_STATES = ("waiting", "connecting", "live", "reconnecting", "stopped", "failed")
MODEL_STATES = ("loading", "downloading", "ready", "missing", "error")
FPS_MIN_INTERVAL_S = 1.0  # fps is measured over at least this long between scrapes


@dataclass
class _WorkerFigures:
    """What one worker has counted, per batcher (``encode``/``classify``) and for its live labels."""

    batches: dict[str, float]
    items: dict[str, float]
    busy_s: dict[str, float]
    failed: dict[str, float]
    stalls: dict[str, float]
    latency_counts: list[int]
    latency_sum: float

    @classmethod
    def of(cls, worker: ModelWorker) -> _WorkerFigures:
        batchers = {"encode": worker.encoder.stats, "classify": worker.classifier.stats}
        snap = worker.latency.snapshot()
        return cls({k: s.batches for k, s in batchers.items()}, {k: s.items for k, s in batchers.items()},
                   {k: s.busy_s for k, s in batchers.items()}, {k: s.failed for k, s in batchers.items()},
                   {k: s.stalls for k, s in batchers.items()}, list(snap.counts), snap.total)

    @classmethod
    def zero(cls) -> _WorkerFigures:
        empty = {"encode": 0.0, "classify": 0.0}
        return cls(dict(empty), dict(empty), dict(empty), dict(empty), dict(empty),
                   [0] * (len(LATENCY_BUCKETS) + 1), 0.0)

    def add(self, other: _WorkerFigures) -> None:
        for mine, theirs in ((self.batches, other.batches), (self.items, other.items), (self.busy_s, other.busy_s),
                             (self.failed, other.failed), (self.stalls, other.stalls)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0.0) + value
        self.latency_counts = [a + b for a, b in zip(self.latency_counts, other.latency_counts)]
        self.latency_sum += other.latency_sum


class ServerCollector(Collector):
    """Reads the app's peers, cameras, models, jobs and event destinations on every ``collect()``."""

    def __init__(self, models: ModelService, peers: PeerRegistry, streams: StreamManager, jobs: JobManager,
                 events: EventHub) -> None:
        self.models, self.peers, self.streams, self.jobs, self.events = models, peers, streams, jobs, events
        self._fps: dict[tuple[str, str], tuple[float, int, float | None]] = {}  # (kind, id) -> (t, frames, fps)
        # Workers seen at the last scrape: id -> (weak ref, (model, role), figures), and the totals of gone ones.
        self._workers: dict[int, tuple[weakref.ref[ModelWorker], tuple[str, str], _WorkerFigures]] = {}
        self._retired: dict[tuple[str, str], _WorkerFigures] = {}

    def describe(self) -> Iterable[Metric]:
        return ()  # figures appear as things start; nothing to declare up front

    def collect(self) -> Iterator[Metric]:
        yield from self._streams()
        yield from self._models()
        yield from self._jobs()
        yield from self._events()

    # -- peers and cameras --------------------------------------------------------------------------------

    def _rate(self, kind: str, stream: str, frames: int, now: float, seen: set[tuple[str, str]]) -> float | None:
        key = (kind, stream)
        seen.add(key)
        previous = self._fps.get(key)
        if previous is None:
            self._fps[key] = (now, frames, None)
            return None
        t, count, fps = previous
        if now - t >= FPS_MIN_INTERVAL_S:
            fps = max(0.0, (frames - count) / (now - t))
            self._fps[key] = (now, frames, fps)
        return fps

    def _streams(self) -> Iterator[Metric]:
        labels = ["kind", "stream"]
        frames = CounterMetricFamily("har_stream_frames", "Frames received from the stream (peers) or handed to "
                                     "the engine after sampling (cameras)", labels=labels)
        dropped = CounterMetricFamily("har_stream_dropped_frames", "Frames dropped to stay current (drop_oldest "
                                      "queues)", labels=labels)
        fps = GaugeMetricFamily("har_stream_fps", "Frames per second counted in har_stream_frames, over the time "
                                "since the previous scrape (at least 1 s)", labels=labels)
        state = GaugeMetricFamily("har_stream_state", "1 for the stream's current state", labels=[*labels, "state"])
        model = GaugeMetricFamily("har_stream_info", "The model each stream uses (always 1)",
                                  labels=[*labels, "model"])
        windows = CounterMetricFamily("har_peer_windows", "Windows labelled for a WebRTC peer", labels=["stream"])
        reconnects = CounterMetricFamily("har_camera_reconnects", "Times a camera came back after it was lost",
                                         labels=["stream"])
        now = time.monotonic()
        seen: set[tuple[str, str]] = set()
        for peer in self.peers.status():
            key = ["peer", str(peer["peer_id"])]
            frames.add_metric(key, peer["frames_received"])
            dropped.add_metric(key, peer["frames_dropped"])
            windows.add_metric(key[1:], peer["windows"])
            if (rate := self._rate("peer", key[1], peer["frames_received"], now, seen)) is not None:
                fps.add_metric(key, rate)
            for name in PEER_STATES:
                state.add_metric([*key, name], 1.0 if peer["state"] == name else 0.0)
            model.add_metric([*key, str(peer["model"])], 1.0)
        cameras = self.streams.list()
        for camera in cameras:
            key = ["camera", str(camera["name"])]
            frames.add_metric(key, camera["frames"])
            dropped.add_metric(key, camera["dropped"])
            reconnects.add_metric(key[1:], camera["reconnects"])
            if (rate := self._rate("camera", key[1], camera["frames"], now, seen)) is not None:
                fps.add_metric(key, rate)
            for name in CAMERA_STATES:
                state.add_metric([*key, name], 1.0 if camera["state"] == name else 0.0)
            model.add_metric([*key, str(camera["model"])], 1.0)
        for gone in set(self._fps) - seen:
            del self._fps[gone]
        yield from (frames, dropped, fps, state, model, windows, reconnects)
        yield GaugeMetricFamily("har_peers", "WebRTC peers connected", value=len(self.peers))
        yield GaugeMetricFamily("har_peers_max", "Most peers at once (max_peers)", value=self.peers.max_peers)
        yield GaugeMetricFamily("har_cameras", "Cameras watched", value=len(cameras))

    # -- models, batchers, the watchdog ---------------------------------------------------------------------

    def _model_figures(self) -> tuple[dict[tuple[str, str], _WorkerFigures], list[tuple[str, str, ModelWorker]]]:
        """Per (model, role): the figures of the workers serving now plus those of workers gone since."""
        workers = serving_workers(self.models)
        current = {id(w): (weakref.ref(w), (model, role), _WorkerFigures.of(w)) for model, role, w in workers}
        for wid, (ref, key, last) in self._workers.items():
            if wid not in current or current[wid][0]() is not ref():
                self._retired.setdefault(key, _WorkerFigures.zero()).add(last)
        self._workers = current
        totals: dict[tuple[str, str], _WorkerFigures] = {}
        for key, figures in self._retired.items():
            totals.setdefault(key, _WorkerFigures.zero()).add(figures)
        for _, key, figures in current.values():
            totals.setdefault(key, _WorkerFigures.zero()).add(figures)
        return totals, workers

    def _models(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("har_model_state", "1 for each model's current load state",
                                  labels=["model", "state"])
        progress = GaugeMetricFamily("har_model_download_progress", "Fraction of a model's weights downloaded, "
                                     "while downloading", labels=["model"])
        for slot in self.models.slots.values():
            for name in MODEL_STATES:
                state.add_metric([slot.name, name], 1.0 if slot.status == name else 0.0)
            if slot.status == "downloading" and slot.progress is not None:
                progress.add_metric([slot.name], slot.progress)
        yield from (state, progress)
        yield _gauge("har_model_default", "The default model (always 1)", ["model"], [([self.models.default], 1.0)])

        totals, workers = self._model_figures()
        bl = ["model", "role", "batcher"]
        batches = CounterMetricFamily("har_batcher_batches", "Batches run on a model's inference thread", labels=bl)
        items = CounterMetricFamily("har_batcher_items", "Items (frames to encode, windows to classify) in those "
                                    "batches; items / batches is the mean batch size", labels=bl)
        busy = CounterMetricFamily("har_batcher_busy_seconds", "Seconds the inference thread spent on these "
                                   "batches", labels=bl)
        failed = CounterMetricFamily("har_batcher_failed_batches", "Batches whose model call raised (their "
                                     "callers got the error; the batcher went on)", labels=bl)
        stalls = CounterMetricFamily("har_inference_stalls", "Batches the inference watchdog gave up on "
                                     "(ran past inference_stall_s)", labels=bl)
        latency = HistogramMetricFamily("har_label_latency_seconds", "Live label latency: newest frame of the "
                                        "window received -> label sent", labels=["model", "role"])
        for (model, role), fig in sorted(totals.items()):
            for kind in ("encode", "classify"):
                key = [model, role, kind]
                batches.add_metric(key, fig.batches.get(kind, 0.0))
                items.add_metric(key, fig.items.get(kind, 0.0))
                busy.add_metric(key, fig.busy_s.get(kind, 0.0))
                failed.add_metric(key, fig.failed.get(kind, 0.0))
                stalls.add_metric(key, fig.stalls.get(kind, 0.0))
            if role != "fallback":  # refinements are not the label a stream is waiting for
                cumulative, running = [], 0
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), fig.latency_counts):
                    running += count
                    cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
                latency.add_metric([model, role], cumulative, fig.latency_sum)
        yield from (batches, items, busy, failed, stalls, latency)

        depth = GaugeMetricFamily("har_batcher_queue_depth", "Items waiting for a batch (both lanes)", labels=bl)
        max_batch = GaugeMetricFamily("har_batcher_max_batch", "Largest batch allowed", labels=bl)
        stalled = GaugeMetricFamily("har_inference_stalled_seconds", "How long the model call the watchdog gave up "
                                    "on has run; 0 when none is stuck", labels=bl)
        for model, role, worker in workers:
            for kind, batcher in (("encode", worker.encoder), ("classify", worker.classifier)):
                key = [model, role, kind]
                depth.add_metric(key, batcher.depth)
                max_batch.add_metric(key, batcher.max_batch)
                stalled.add_metric(key, batcher.stalled_for() or 0.0)
        yield from (depth, max_batch, stalled)

    # -- jobs and event delivery ------------------------------------------------------------------------

    def _jobs(self) -> Iterator[Metric]:
        now = GaugeMetricFamily("har_jobs", "Analysis jobs queued or running now", labels=["state"])
        now.add_metric(["queued"], self.jobs.queued)
        now.add_metric(["running"], self.jobs.running)
        yield now
        ended = CounterMetricFamily("har_jobs_finished", "Analysis jobs ended since the server started, by final "
                                    "state", labels=["state"])
        for state in sorted({"done", "failed", "cancelled", *self.jobs.finished}):
            ended.add_metric([state], self.jobs.finished.get(state, 0))
        yield ended

    def _events(self) -> Iterator[Metric]:
        stats = self.events.stats()
        store = stats["store"]
        stored = CounterMetricFamily("har_events_stored", "Action events by what the event store did with them",
                                     labels=["outcome"])
        for outcome in ("written", "dropped", "failed", "pruned"):
            if outcome in store:
                stored.add_metric([outcome], store[outcome])
        yield stored
        hooks = CounterMetricFamily("har_webhook_deliveries", "Webhook messages by outcome (failed: given up after "
                                    "every retry; dropped: the queue was full)", labels=["url", "outcome"])
        retries = CounterMetricFamily("har_webhook_retries", "Extra tries after a failed webhook POST",
                                      labels=["url"])
        queued = GaugeMetricFamily("har_webhook_queued", "Webhook messages waiting", labels=["url"])
        for hook in stats["webhooks"]:
            for outcome in ("delivered", "failed", "dropped"):
                hooks.add_metric([hook["url"], outcome], hook[outcome])
            retries.add_metric([hook["url"]], hook["retried"])
            queued.add_metric([hook["url"]], hook["queued"])
        yield from (hooks, retries, queued)
        mqtt = stats["mqtt"]
        if mqtt is not None:
            broker = [mqtt["broker"]]
            messages = CounterMetricFamily("har_mqtt_messages", "MQTT messages by outcome",
                                           labels=["broker", "outcome"])
            for outcome in ("published", "failed", "dropped"):
                messages.add_metric([*broker, outcome], mqtt[outcome])
            yield messages
            connects = CounterMetricFamily("har_mqtt_connects", "MQTT connections made, and attempts that failed",
                                           labels=["broker", "outcome"])
            connects.add_metric([*broker, "ok"], mqtt["connects"])
            connects.add_metric([*broker, "failed"], mqtt["connect_failures"])
            yield connects
            yield _gauge("har_mqtt_connected", "1 while connected to the broker", ["broker"],
                         [(broker, 1.0 if mqtt["connected"] else 0.0)])
            yield _gauge("har_mqtt_queued", "MQTT messages waiting", ["broker"], [(broker, mqtt["queued"])])


def _gauge(name: str, documentation: str, labels: list[str], values: list[tuple[list[str], float]]) -> Metric:
    gauge = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        gauge.add_metric(label_values, value)
    return gauge


def build_registry(app: web.Application) -> CollectorRegistry:
    """The app's registry: the server's figures, plus the process's (CPU, memory, file descriptors, GC)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(app[MODELS], app[PEERS], app[STREAMS], app[JOBS], app[EVENTS]))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    """Call after the app's peers, models, streams, jobs and events are set."""
    app[METRICS] = build_registry(app)
    app.router.add_get("/metrics", metrics)
