"""Cameras and live URL streams watched by the server: each one a reconnecting source through a live pipeline,
with action events and a video track for browsers.

Why one owned task per camera: adding or removing a camera must never disturb the others, so each camera's
whole life (model lease, source, pipeline, events, viewers) is one task that ends in one ``finally``. The
``StreamManager`` owns those tasks, admits at most ``max_streams``, and stops them all on shutdown.

Cameras come from two places (``origin``): the config file (``config``), watched at every start, and
``POST /api/streams`` (``api``), kept in the ``CameraStore`` and watched again after a restart until deleted.
A stored camera whose name a config camera now has is dropped from the store at start (the config file wins;
logged). Removing a camera answers at once: its name leaves the list, and its teardown (which waits for a
decode thread stuck in a network read, up to the source's join timeout) runs in an owned task; until that
task ends the name is refused with 409, so two cameras of one name never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from har_stream.errors import ConfigError, HarStreamError, OverloadedError
from har_stream.events import ActionEvent, ActionEventDetector, DetectorSettings
from har_stream.logs import log_context
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.snapshot import RecentFrames
from har_stream.sources.reconnecting import ReconnectingSource, ReconnectPolicy, SourceStatus
from har_stream.sources.tap import TapSource
from har_stream.types import DecodedFrame, LabelEvent

from .camera_guard import CameraGuard, camera_policy, check_camera_url
from .camera_leases import CameraLeases, LeaseKeeper, RemoteCamera
from .camera_spec import CameraSpec
from .camera_store import CameraStore
from .config import ServerConfig
from .errors import NotFoundError, NotReadyError
from .event_hub import EventHub
from .models_service import Lease, ModelService
from .relay import CameraTrack, Viewers
from .timestamps import iso_seconds

log = logging.getLogger(__name__)

Origin = Literal["config", "api"]


class ConflictError(HarStreamError):
    """A camera with that name is already watched."""

    http_status = 409


class Camera:
    """One watched stream. ``run()`` is its whole life; cancel the task to stop it."""

    def __init__(self, spec: CameraSpec, config: ServerConfig, models: ModelService, hub: EventHub,
                 policy: ReconnectPolicy, on_change: Callable[[], None], origin: Origin = "api") -> None:
        self.spec = spec
        self.origin = origin
        self.config = config
        self.models = models
        self.hub = hub
        self.policy = policy
        self.on_change = on_change
        self.track = CameraTrack()
        self.recent = RecentFrames()
        self.source: ReconnectingSource | None = None
        self.detector: ActionEventDetector | None = None
        self.lease: Lease | None = None
        self.pipeline: StreamPipeline | None = None  # while it runs: its effective (adaptive) stride is shown
        self.current: tuple[LabelEvent, float] | None = None  # the newest label and when it came
        self.open_event: ActionEvent | None = None
        self.error: str | None = None  # why the camera stopped, when not the source's own error
        self.waiting = True  # for its model
        self.created = time.time()
        self.guard = CameraGuard(spec.url, camera_policy(config), spec.name)  # every hop checked (url_guard)

    # -- the camera's life -------------------------------------------------------------------------------

    async def run(self) -> None:
        log_context(stream=self.spec.name)  # every log line of this camera's task names it
        try:
            self.lease = await self.models.acquire_when_ready(self.spec.model, self.spec.labels,
                                                              self.spec.custom_labels)
            self.waiting = False
            info = self.lease.worker.info
            options, resolver = await self.guard.start()
            self.source = ReconnectingSource(
                self.spec.url, name=self.spec.name, sample_fps=self.spec.fps or info.fps,
                prepare=self.lease.worker.preparer(), policy=self.policy, on_status=self._on_status,
                options=options, resolver=resolver)
            self.detector = ActionEventDetector(
                self.spec.name, info.labels,
                DetectorSettings.only(self.spec.label_filter or None,
                                      min_duration_s=self.spec.min_event_s if self.spec.min_event_s is not None
                                      else self.config.event_min_s,
                                      update_every_s=self.config.event_update_s),
                snapshot=self.recent, emit=self._emit)
            pipeline = self.pipeline = StreamPipeline(
                self.spec.name, TapSource(self.source, self._on_frame), self.lease.worker,
                StreamSettings(window=info.frames, stride=self.spec.stride or self.config.stride, fps=self.spec.fps,
                               live=True, window_queue=1, fallback_queue=1, max_in_flight=2),
                self._on_label, self.lease.fallback)
            self.source.start()
            await pipeline.run()
        except HarStreamError as err:  # failed for good (not a video, a model that cannot load): say why
            self.error = str(err)
            log.warning("camera %s stopped: %s", self.spec.name, err)
        except Exception as err:  # a bug: this camera stops, the others go on
            log.exception("camera %s stopped", self.spec.name)
            self.error = f"internal error ({type(err).__name__}); the server log has the details"
        finally:
            await self._stop()

    async def _stop(self) -> None:
        if self.detector is not None:
            for event in self.detector.close("stopped"):
                self._emit(event)
        if self.source is not None:
            await self.source.aclose()
        await self.guard.aclose()
        self.track.stop()
        self.pipeline = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        self.current = None
        self.on_change()

    # -- callbacks (event loop) ---------------------------------------------------------------------------

    def _on_frame(self, frame: DecodedFrame) -> None:
        self.recent.keep(frame)
        self.track.push(frame.frame)

    def _on_label(self, event: LabelEvent, probs: np.ndarray) -> None:
        if self.source is None or self.source.state != "live":
            return  # a window still in flight when the stream was lost: it describes the past
        if event.refines is None:
            self.current = (event, time.time())
        assert self.detector is not None
        self.detector(event, probs)
        self.on_change()

    def _on_status(self, status: SourceStatus) -> None:
        if status.state == "reconnecting" and self.detector is not None:
            for event in self.detector.close("gap"):  # an action cannot go on across a lost stream
                self._emit(event)
            self.current = None
        self.on_change()

    def _emit(self, event: ActionEvent) -> None:
        self.open_event = None if event.closed else event
        self.hub.publish(event)

    # -- what the API shows --------------------------------------------------------------------------------

    def to_json(self, viewers: int) -> dict[str, Any]:
        status = self.source.status if self.source is not None else None
        state = "waiting" if self.waiting and status is None else status.state if status else "stopped"
        if self.error is not None and state not in ("failed",):
            state = "failed"
        info = self.lease.worker.info if self.lease is not None else None
        current = None
        if self.current is not None:
            event, at = self.current
            current = {"label": event.prediction.label, "smoothed_label": event.smoothed_label,
                       "confidence": round(event.prediction.confidence, 4),
                       "top5": [[label, round(p, 4)] for label, p in event.prediction.top5],
                       "t": round(event.t, 3), "latency_ms": round(event.latency_ms, 1), "at": iso_seconds(at)}
        video = status.info if status is not None else None
        return {
            **self.spec.to_json(),
            "origin": self.origin,
            "state": state,
            "error": self.error or (self.guard.refusal() if state != "live" else None)
            or (status.error if status else None),
            "reconnects": status.reconnects if status else 0,
            "attempt": status.attempt if status else 0,
            "retry_in": status.retry_in if status else None,
            "since": iso_seconds(status.since if status else self.created),
            "model": self.lease.model if self.lease else self.spec.model,
            "labels": info.label_set if info else self.spec.labels,
            "stride": self.spec.stride or self.config.stride,
            "effective_stride": self.pipeline.effective_stride if self.pipeline is not None else None,
            "fps": self.spec.fps or (info.fps if info else None),
            "frames": status.frames if status else 0,
            "dropped": status.dropped if status else 0,
            "viewers": viewers,
            "video": {"width": video.width, "height": video.height, "fps": video.fps} if video else None,
            "current": current,
            "event": self.open_event.to_json() if self.open_event is not None else None,
        }


class StreamManager:
    """The watched cameras. ``await start()`` (config cameras) after the models start; ``await aclose()``
    before they stop."""

    def __init__(self, config: ServerConfig, models: ModelService, hub: EventHub,
                 policy: ReconnectPolicy | None = None, store: CameraStore | None = None,
                 leases: CameraLeases | None = None) -> None:
        self.config = config
        self.store = store or CameraStore(config.data_path)
        self.models = models
        self.hub = hub
        self.policy = policy or ReconnectPolicy(
            initial_delay=config.reconnect_initial_s, max_delay=config.reconnect_max_s,
            first_frame_timeout=config.first_frame_timeout_s, stall_timeout=config.stall_timeout_s,
            read_timeout=min(10.0, config.stall_timeout_s))
        self.viewers = Viewers(config.max_viewers, config.ice_servers)
        self._cameras: dict[str, Camera] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._teardowns: dict[str, asyncio.Task[None]] = {}  # removed cameras still stopping, by name
        self._changed = asyncio.Event()
        self._closing = False
        # a shared database (--database postgresql://…): only the front end holding a camera's lease watches it
        self.keeper = LeaseKeeper(leases, self.store, config.cameras, self, config.lease_renew_s) \
            if leases is not None else None  # type: ignore[arg-type]

    async def start(self) -> None:
        """Open the store (a bad --data-dir fails the start), then watch the config file's cameras and the
        stored ones."""
        stored = await self.store.open()
        if self.keeper is not None:  # cameras are watched as their leases are taken (server/camera_leases.py)
            self.keeper.start()
            return
        for spec in self.config.cameras:
            self._launch(spec, "config")
        if self.config.cameras:
            log.info("watching %d camera(s) from the config file", len(self.config.cameras))
        resumed = 0
        for camera in stored:
            spec = camera.spec
            if spec.name in self._cameras:
                await self.store.delete(spec.name)
                log.warning("stored camera %s (%s) was dropped: the config file now has a camera of that name",
                            spec.name, spec.safe_url)
            elif len(self._cameras) >= self.config.max_streams:
                log.warning("stored camera %s is not watched: max_streams (%d) cameras already are; raise the "
                            "limit or DELETE /api/streams/%s", spec.name, self.config.max_streams, spec.name)
            else:
                self._launch(spec, "api")
                resumed += 1
        if resumed:
            log.info("watching %d camera(s) added through the API before the restart", resumed)

    async def aclose(self) -> None:
        self._closing = True
        if self.keeper is not None:
            await self.keeper.stop()
        await self.viewers.aclose()
        tasks = tuple(self._tasks.values())
        for task in tasks:
            task.cancel()
        await self._within(tasks + tuple(self._teardowns.values()), self.config.shutdown_timeout_s)
        if self.keeper is not None:  # their last events written, then the leases handed to the other front ends
            await self._flush_events(timeout=2.0)
            await self.keeper.release_all()
        self._tasks.clear()
        self._teardowns.clear()
        self._cameras.clear()
        await self.store.aclose()
        self._notify()

    # -- commands -----------------------------------------------------------------------------------------

    async def add(self, spec: CameraSpec) -> Camera:
        self._check_room(spec.name)
        await check_camera_url(spec.url, camera_policy(self.config))  # 400: link-local, unspecified, multicast
        lease = await self.models.acquire(spec.model, spec.labels, spec.custom_labels)  # 400/503 now, not later
        try:
            labels = lease.worker.info.labels
            unknown = [label for label in spec.label_filter if label not in labels]
            if unknown:
                raise ConfigError(f"label_filter names {', '.join(map(repr, unknown))}, which model "
                                  f"{lease.model} does not predict; choose from its labels (GET /api/models)")
        finally:
            lease.release()
        self._check_room(spec.name)  # again: others may have been added while the model was checked
        if spec.model is None and spec.labels is None and spec.custom_labels is None:
            spec = replace(spec, model=lease.model)  # the default now, even if the default changes later
        camera = self._launch(spec, "api")  # takes the name before the await below
        try:
            # shielded: a client hanging up now must not leave a stored camera that is not watched
            await asyncio.shield(self.store.put(spec))
        except asyncio.CancelledError:
            raise  # the write goes on and the camera stays added, as if the answer had been read
        except Exception:  # not stored (a full disk, say): not watched either
            if self._cameras.get(spec.name) is camera:
                self._detach(spec.name)
            raise
        if self.keeper is not None:
            self.keeper.adopt(spec.name)  # its lease was written with it
        log.info("camera %s added: %s", spec.name, spec.safe_url)
        return camera

    async def remove(self, name: str) -> None:
        """Stop watching ``name`` and forget it for good (an API camera; a config camera comes back at the next
        start). Returns once it is off the list and out of the store; its teardown goes on in the background."""
        if name not in self._cameras:
            if name not in self._teardowns and await self.store.delete(name):  # stored, not watched
                if self.keeper is not None:
                    self.keeper.forget(name)  # another front end's: it stops it at its next renewal
                log.info("stored camera %s removed", name)
                return
            self.get(name)  # 404
        self._detach(name)
        await self.store.delete(name)
        if self.keeper is not None:
            self.keeper.forget(name)
        log.info("camera %s removed (stopping in the background)", name)

    def _detach(self, name: str) -> None:
        """Off the list now (a second DELETE is a 404, not a race); its task ends in an owned teardown."""
        self._cameras.pop(name)
        task = self._tasks.pop(name)
        self._teardowns[name] = asyncio.get_running_loop().create_task(self._teardown(name, task),
                                                                       name=f"camera-{name}-teardown")
        self._notify()

    async def _teardown(self, name: str, task: asyncio.Task[None]) -> None:
        try:
            await self.viewers.close_camera(name)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("camera %s stopped", name)
        finally:
            self._teardowns.pop(name, None)

    async def _flush_events(self, timeout: float) -> None:
        """The event store's last writes, for at most ``timeout``: past it the flush is cancelled and awaited,
        so it does not run on into the store's close (a database that stopped answering)."""
        flush = asyncio.ensure_future(self.hub.store.flush())
        done, _ = await asyncio.wait([flush], timeout=timeout)
        if not done:
            log.warning("the event store's flush took over %g s at shutdown: cancelled", timeout)
            flush.cancel()
        try:
            await flush
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our own stop was cancelled, not just the flush
        except Exception as err:  # noqa: BLE001 - a failed flush is logged, the stop goes on
            log.warning("the event store's flush at shutdown failed: %s", err)

    @staticmethod
    async def _within(tasks: tuple[asyncio.Task[None], ...], timeout: float) -> None:
        """Wait for cancelled camera tasks, at most ``timeout``: one whose decode thread is stuck in a network
        read would hold the stop up to its read timeout. Past it they are cancelled again, which ends their
        wait for the thread (a daemon thread; it ends at its read timeout, or with the process)."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            log.warning("%d camera(s) still closing after %g s (a stream stuck in a network read): not waiting "
                        "for their decode threads", len(pending), timeout)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)

    def _check_room(self, name: str) -> None:
        if self._closing:
            raise NotReadyError("the server is stopping; add the camera again when it is back")
        if name in self._teardowns:
            raise ConflictError(f"camera {name!r} was removed and is still stopping (its stream is closing); "
                                "add it again in a few seconds")
        if name in self._cameras:
            raise ConflictError(f"a camera named {name!r} is already watched; remove it first or pick another "
                                "name")
        if self.keeper is not None and name in self.keeper.remote:
            raise ConflictError(f"a camera named {name!r} is already watched by another front end; remove it "
                                "first or pick another name")
        if len(self._cameras) >= self.config.max_streams:
            raise OverloadedError(f"{len(self._cameras)} cameras are watched, the most this server allows "
                                  f"(max_streams); remove one first")

    def get(self, name: str) -> Camera:
        camera = self._cameras.get(name)
        if camera is None:
            remote = self.keeper.remote.get(name) if self.keeper is not None else None
            if remote is not None:
                where = remote.owner or "none has room for it now"
                raise NotFoundError(f"camera {name!r} is watched by another front end ({where}); open it there")
            raise NotFoundError(f"no camera {name!r}; GET /api/streams lists them")
        return camera

    def describe(self, name: str) -> dict[str, Any]:
        remote = self.keeper.remote.get(name) if self.keeper is not None and name not in self._cameras else None
        if remote is not None:
            return self._remote_json(remote)
        return self._owned(self.get(name).to_json(self.viewers.count(name)))

    def list(self) -> list[dict[str, Any]]:
        """The cameras this front end watches (what its metrics count)."""
        return [self._owned(camera.to_json(self.viewers.count(name))) for name, camera in self._cameras.items()]

    def list_all(self) -> list[dict[str, Any]]:
        """What ``GET /api/streams`` shows: this front end's cameras, then (a shared database) the others'."""
        others = sorted(self.keeper.remote.values(), key=lambda r: r.spec.name) if self.keeper is not None else []
        return self.list() + [self._remote_json(r) for r in others if r.spec.name not in self._cameras]

    def _owned(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "owner": self.keeper.owner} if self.keeper is not None else doc

    def _remote_json(self, remote: RemoteCamera) -> dict[str, Any]:
        """A camera another front end watches: its settings and owner; its live figures are on that front end."""
        spec = remote.spec
        return {**spec.to_json(), "origin": remote.origin, "state": "remote", "owner": remote.owner,
                "error": None, "reconnects": 0, "attempt": 0, "retry_in": None, "since": None, "model": spec.model,
                "labels": spec.labels, "stride": spec.stride or self.config.stride, "effective_stride": None,
                "fps": spec.fps, "frames": 0, "dropped": 0, "viewers": 0, "video": None, "current": None,
                "event": None}

    # -- the lease keeper's side (server/camera_leases.py) -------------------------------------------------

    def watched(self) -> dict[str, str]:
        return {name: camera.origin for name, camera in self._cameras.items()}

    def can_watch(self, name: str) -> bool:
        return not self._closing and name not in self._cameras and name not in self._teardowns \
            and len(self._cameras) < self.config.max_streams

    def watch(self, spec: CameraSpec, origin: str) -> None:
        self._launch(spec, origin)  # type: ignore[arg-type]

    def unwatch(self, name: str, why: str) -> None:
        if name in self._cameras:
            log.info("camera %s is no longer watched here: %s", name, why)
            self._detach(name)

    def remote_changed(self) -> None:
        self._notify()

    def change_event(self) -> asyncio.Event:
        """The event the next change of any camera sets (take it before reading, then wait on it)."""
        return self._changed

    async def answer_viewer(self, name: str, offer_sdp: str) -> str:
        camera = self.get(name)
        answer = await self.viewers.answer(name, camera.track, offer_sdp)
        self._notify()
        return answer

    # -- internals ----------------------------------------------------------------------------------------

    def _launch(self, spec: CameraSpec, origin: Origin) -> Camera:
        camera = Camera(spec, self.config, self.models, self.hub, self.policy, self._notify, origin)
        self._cameras[spec.name] = camera
        self._tasks[spec.name] = asyncio.get_running_loop().create_task(camera.run(), name=f"camera-{spec.name}")
        self._notify()
        return camera

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
