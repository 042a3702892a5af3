"""Offline analysis jobs: a bounded queue, a fixed number of runners, and each job's life from queued to done.

Why a fixed number of runners (``job_concurrency``, default 1): jobs share the models with live streams, and
an offline run can always use the whole machine. Their inference already yields to live streams in the
batcher (the background lane); limiting how many run at once bounds their decode and encode work too.
The queue's policy is ``reject``: past ``max_queued_jobs`` waiting jobs, ``submit`` fails with 429 at once
rather than letting a backlog grow without bound.

A job's states are persisted (``JobStore``); its progress is in memory and watchers get the latest snapshot
(policy: conflate — a slow watcher skips intermediate progress, never the final state). A job running when the
server stops is failed with the reason (``interrupted: …``), its files removed, whether the stop is clean (the
runner records it on the way out) or a crash (it is left ``running``, which the store marks failed when it
opens): one outcome either way, and a job that made the server stop is never run again by itself. Queued jobs
stay queued and run after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from har_stream.analyse import Progress, analyse
from har_stream.annotate import write_annotated_video, write_playable_video
from har_stream.errors import HarStreamError, InputError, OverloadedError
from har_stream.export import write_csv, write_json
from har_stream.logs import log_context
from har_stream.fallback import ClipFallback
from har_stream.fileutil import sync_files
from har_stream.pipeline import StreamSettings
from har_stream.sources import ResolvedMedia, is_direct_media_url, resolve_url
from har_stream.types import AnalysisResult, ModelRef

from .config import ServerConfig
from .errors import NotFoundError, NotReadyError
from .job_store import STOPPED, JobOptions, JobRecord, JobSource, JobStore
from .models_service import ModelService
from .fetch_proxy import GuardProxy, guarded
from .uploads import InputLimits, probe, probe_url
from .url_guard import AddressPolicy, PrivateAddressError, check_url, parse_allowed_hosts, redact

log = logging.getLogger(__name__)

T = TypeVar("T")
PLAYABLE = "playable.mp4"
ANNOTATED = "annotated.mp4"
RESULT_JSON = "result.json"
RESULT_CSV = "result.csv"
# Share of the overall progress bar each phase takes, when it runs.
PHASE_WEIGHTS = {"resolving": 0.02, "analysing": 0.7, "transcoding": 0.14, "rendering": 0.14}


class _Aborted(Exception):
    """Raised inside a blocking encode's progress callback to stop it when its job is cancelled."""


@dataclass
class JobProgress:
    """A running job's live figures. Mutated on the event loop only."""

    phase: str | None = None
    fraction: float = 0.0  # overall, 0..1
    realtime: float | None = None
    duration: float | None = None


class JobElsewhereError(HarStreamError):
    """The job is queued or running on another front end: only that one can stop it."""

    http_status = 409


class JobManager:
    """Owns the runners. ``await start()`` once the models are starting; ``await aclose()`` before they stop."""

    def __init__(self, config: ServerConfig, models: ModelService, store: JobStore) -> None:
        self.config = config
        self.models = models
        self.store = store
        self._active: dict[str, JobRecord] = {}  # queued and running jobs
        self._progress: dict[str, JobProgress] = {}
        self._pending: deque[str] = deque()
        self._reserved = 0  # places taken by submits still checking their model or writing their record
        self._wake = asyncio.Condition()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}
        self._runners: list[asyncio.Task[None]] = []
        self.finished: Counter[str] = Counter()  # jobs ended since start, by final state (the /metrics counters)
        self._timed_out: set[str] = set()  # running jobs stopped for passing max_job_s
        self.url_policy = AddressPolicy.for_jobs(config.allow_private_urls, parse_allowed_hosts(config.allow_hosts))
        self.limits = InputLimits(config.max_input_duration_s, config.max_input_side)
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        resumed = await self.store.open()
        for record in resumed:
            self._active[record.id] = record
            self._pending.append(record.id)
        if resumed:
            log.info("resuming %d queued analysis job(s)", len(resumed))
        self._runners = [asyncio.get_running_loop().create_task(self._runner(), name=f"jobs-runner-{n}")
                         for n in range(self.config.job_concurrency)]

    async def stop(self) -> None:
        """Stop the runners: running jobs are cut off and recorded as failed (``STOPPED``); queued ones stay.
        Called first when the server stops (before peers and cameras), so no job starts or ends meanwhile;
        idempotent."""
        self._closing = True
        for task in self._runners:
            task.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners = []
        for event in self._changed.values():
            event.set()

    async def aclose(self) -> None:
        await self.stop()
        await self.store.aclose()

    # -- queries ------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    def progress(self, job_id: str) -> JobProgress | None:
        return self._progress.get(job_id)

    async def get(self, job_id: str) -> JobRecord:
        record = self._active.get(job_id) or await self.store.get(job_id)
        if record is None:
            raise NotFoundError(f"no job {job_id!r}; GET /api/jobs lists the jobs this server has")
        return record

    async def list(self) -> list[JobRecord]:
        stored = await self.store.list()
        return [self._active.get(r.id, r) for r in stored]

    def change_event(self, job_id: str) -> asyncio.Event:
        """The event the next change of ``job_id`` sets (take it before reading, then wait on it)."""
        return self._changed.setdefault(job_id, asyncio.Event())

    def release_event(self, job_id: str) -> None:
        """A finished job changes no more: drop its change event (holders keep their reference)."""
        if job_id not in self._active:
            self._changed.pop(job_id, None)

    async def wait_final(self, job_id: str) -> JobRecord:
        """The job's record once it is done, failed or cancelled."""
        while True:
            event = self.change_event(job_id)  # before reading: a change while we read is not missed
            if (record := await self.get(job_id)).final:
                self.release_event(job_id)
                return record
            if self._closing and job_id not in self._cancel_requested:
                raise NotReadyError("the server is stopping; the job is cut off (failed), submit it again when "
                                    "the server is back")
            try:
                await asyncio.wait_for(event.wait(), 1.0)
            except TimeoutError:
                pass

    # -- commands -----------------------------------------------------------------------------------------

    def check_room(self) -> None:
        """429 now, before a client spends minutes uploading into a full queue."""
        if self._closing:
            raise NotReadyError("the server is stopping; submit the job again when it is back")
        waiting = len(self._pending) + self._reserved
        if waiting >= self.config.max_queued_jobs:
            raise OverloadedError(f"{waiting} jobs are already waiting (the limit is "
                                  f"{self.config.max_queued_jobs}); try again when some have finished")

    async def submit(self, job_id: str, source: JobSource, options: JobOptions) -> JobRecord:
        """Queue a job whose files (if any) are already in its folder. Checks the model and labels first, so a
        typo fails the request, not the job minutes later.

        Its place in the queue is taken before the first await (``_reserved``) and handed over to ``_pending``
        with no await in between, so submits racing each other can never queue more than the limit."""
        self.check_room()
        self._reserved += 1
        reserved = True
        try:
            lease = await self.models.acquire(options.model, options.labels, options.custom_labels)
            lease.release()
            if self._closing:  # the lease may have waited on CLIP's text encoder while the server began to stop
                raise NotReadyError("the server is stopping; submit the job again when it is back")
            if options.model is None and options.labels is None and options.custom_labels is None:
                options = replace(options, model=lease.model)  # the default now, even if it changes later
            record = JobRecord(id=job_id, state="queued", created=time.time(), source=source, options=options)
            if source.kind == "upload":  # on disk before the 202 promises it will run, even after a power cut
                await asyncio.to_thread(sync_files, [self.store.job_dir(job_id) / source.ref])
            await self.store.put(record)
            self._active[job_id] = record
            self._pending.append(job_id)  # the reserved place becomes a queued job, with no await between
            self._reserved -= 1
            reserved = False
        finally:
            if reserved:
                self._reserved -= 1
        async with self._wake:
            self._wake.notify()
        log.info("job %s queued: %s %s", job_id, source.kind, source.name)
        return record

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job; waits until it has stopped and its partial files are gone."""
        record = await self.get(job_id)
        if record.final:
            return record
        if job_id not in self._active:  # in a shared database (--database), a job another front end runs
            raise JobElsewhereError(f"job {job_id} is {record.state} on another front end sharing the database; "
                                    "cancel it through that front end")
        self._cancel_requested.add(job_id)
        if job_id in self._pending:
            self._pending.remove(job_id)
            await self.store.remove_files(job_id)
            await self._finish(record, "cancelled", "cancelled before it started; its files were removed")
        elif (task := self._running.get(job_id)) is not None:
            task.cancel()
            return await self.wait_final(job_id)  # the runner records the outcome once the task has ended
        return await self.get(job_id)

    async def delete(self, job_id: str) -> None:
        """Remove a finished job and its files."""
        record = await self.get(job_id)
        if not record.final:
            raise RuntimeError("delete() needs a finished job; cancel it first")
        await self.store.delete(job_id)
        self._notify(job_id)
        self._changed.pop(job_id, None)
        log.info("job %s deleted", job_id)

    # -- running ------------------------------------------------------------------------------------------

    async def _runner(self) -> None:
        while True:
            async with self._wake:
                await self._wake.wait_for(lambda: bool(self._pending))
                job_id = self._pending.popleft()
            record = self._active.get(job_id)
            if record is None or record.state != "queued":
                continue
            task = asyncio.get_running_loop().create_task(self._work(record), name=f"job-{job_id}")
            self._running[job_id] = task
            stopping = False
            try:
                await asyncio.wait({task}, timeout=self.config.max_job_s)
                if not task.done():  # over the run-time limit: stop it; _settle records why
                    self._timed_out.add(job_id)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            except asyncio.CancelledError:  # the server stops: cut the job off (recorded as failed)
                stopping = True
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            finally:
                self._running.pop(job_id, None)
            try:
                await self._settle(record, task, stopping)
            except Exception:  # e.g. the disk is full: the record cannot be written
                log.exception("job %s could not be recorded", job_id)
                self._forget(job_id)
            if stopping:
                raise asyncio.CancelledError

    async def _work(self, record: JobRecord) -> tuple[AnalysisResult, dict[str, str]]:
        """The job itself; how it ended is decided by ``_settle``, whatever point a cancel reached."""
        log_context(job=record.id)  # every log line of this job's task names it
        record = replace(record, state="running", started=time.time())
        self._active[record.id] = record
        self._progress[record.id] = progress = JobProgress()
        self._notify(record.id)
        await self.store.put(record)
        log.info("job %s running", record.id)
        if record.source.kind != "url":
            return await self._run(record, progress, None)
        async with guarded(self.url_policy, f"job {record.id}") as proxy:  # every hop of the fetch is checked
            try:
                return await self._run(record, progress, proxy)
            except HarStreamError as err:
                refusal = proxy.last_refusal() if proxy is not None else None
                if refusal is None:
                    raise
                raise PrivateAddressError(refusal.message()) from err  # the real reason, not FFmpeg's "403"

    async def _settle(self, queued: JobRecord, task: asyncio.Task[tuple[AnalysisResult, dict[str, str]]],
                      stopping: bool) -> None:
        """Record how a job's task ended: done, failed (files removed), cancelled by its user (files removed),
        or cut off by a stop of the server (failed with ``STOPPED``, files removed, as after a crash)."""
        job_id = queued.id
        record = self._active.get(job_id, queued)
        if task.cancelled():
            await self.store.remove_files(job_id)
            if job_id in self._timed_out and job_id not in self._cancel_requested:
                await self._finish(replace(record, artifacts={}), "failed",
                                   f"stopped after {self.config.max_job_s:g} s: a job may run at most that long "
                                   "(max_job_s, --max-job-seconds); cut the video or ask the operator to raise it")
            elif job_id in self._cancel_requested or not stopping:
                await self._finish(record, "cancelled", "cancelled while running; its files were removed")
            else:
                await self._finish(replace(record, artifacts={}), "failed", STOPPED)
                log.warning("job %s was running when the server stopped: marked failed", job_id)
            return
        err = task.exception()
        if err is None:
            result, artifacts = task.result()
            await self._finish(replace(record, duration=result.duration, artifacts=artifacts), "done", None)
            log.info("job %s done: %.1f s of video in %.1f s", job_id, result.duration, result.elapsed_s)
            return
        await self.store.remove_files(job_id)
        if isinstance(err, HarStreamError):
            await self._finish(record, "failed", self._public_message(record, err))
        else:
            log.error("job %s failed", job_id, exc_info=err)
            await self._finish(record, "failed", f"internal error ({type(err).__name__}: {err}); the server log "
                                                 "has the details")

    def _forget(self, job_id: str) -> None:
        self._active.pop(job_id, None)
        self._timed_out.discard(job_id)
        self._progress.pop(job_id, None)
        self._cancel_requested.discard(job_id)
        self._notify(job_id)

    def _public_message(self, record: JobRecord, err: HarStreamError) -> str:
        """The error as users may see it: the upload's name instead of its path in the data directory, the
        URL without credentials."""
        text = str(err)
        if record.source.kind == "upload":
            text = text.replace(str(self.store.job_dir(record.id) / record.source.ref), record.source.name)
        return text.replace(record.source.ref, record.source.name)

    async def _finish(self, record: JobRecord, state: str, error: str | None) -> None:
        final = replace(record, state=state, error=error, finished=time.time())  # type: ignore[arg-type]
        await self.store.put(final)
        self.finished[state] += 1
        self._forget(record.id)

    def _notify(self, job_id: str) -> None:
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    async def _run(self, record: JobRecord, progress: JobProgress, proxy: GuardProxy | None
                   ) -> tuple[AnalysisResult, dict[str, str]]:
        """Analyse, then write the result files, a browser-playable copy when needed, and the annotated video."""
        folder = self.store.job_dir(record.id)
        folder.mkdir(parents=True, exist_ok=True)
        options = record.options
        upload = folder / record.source.ref if record.source.kind == "upload" else None
        playable = await asyncio.to_thread(probe, upload) if upload is not None else None
        if playable is not None:
            self.limits.check(playable, record.source.name)  # the limits may have changed since it was queued
        phases = ["analysing"] + ([] if playable is not None and playable.browser_playable else ["transcoding"])
        if record.source.kind == "url":
            phases.insert(0, "resolving")
        if options.annotate:
            phases.append("rendering")
        total = sum(PHASE_WEIGHTS[p] for p in phases)
        spans, start = {}, 0.0
        for phase in phases:
            spans[phase] = (start / total, (start + PHASE_WEIGHTS[phase]) / total)
            start += PHASE_WEIGHTS[phase]

        def enter(phase: str) -> Callable[[float], None]:
            progress.phase = phase
            low, high = spans[phase]

            def report(fraction: float) -> None:
                progress.fraction = low + (high - low) * min(1.0, max(0.0, fraction))
                self._notify(record.id)
            report(0.0)
            return report

        media: ResolvedMedia | None = None
        if record.source.kind == "url":
            enter("resolving")
            media = await asyncio.to_thread(self._vet_and_resolve, record.source.ref, proxy)
            found = await asyncio.to_thread(probe_url, media.url, media.ffmpeg_options())
            if found is not None:
                self.limits.check(found, record.source.name)
        def waiting() -> None:  # the model is still loading, after a restart say
            progress.phase = "waiting"
            self._notify(record.id)

        lease = await self.models.acquire_when_ready(options.model, options.labels, options.custom_labels,
                                                     on_wait=waiting)
        try:
            report = enter("analysing")

            def on_analysis(p: Progress) -> None:
                progress.realtime = p.realtime
                progress.duration = p.duration
                report(p.fraction or 0.0)

            info = lease.worker.info
            fallback = None
            if lease.fallback is not None and options.clip_threshold > 0:
                fallback = ClipFallback(lease.fallback.worker, options.clip_threshold, cache_frames=4 * info.frames)
            result = await analyse(
                str(upload) if upload is not None else record.source.ref, lease.worker,
                settings=StreamSettings(window=info.frames, stride=options.stride), fallback=fallback,
                model_ref=ModelRef(name=lease.model, weights_sha256=info.weights_sha256, labels=info.label_set,
                                   fallback="clip" if fallback is not None else None),
                progress=on_analysis, video_url=f"/api/jobs/{record.id}/media",
                resolver=(lambda _url: media) if media is not None else None)
        finally:
            lease.release()
        artifacts = {"result": RESULT_JSON, "csv": RESULT_CSV}
        await asyncio.to_thread(write_json, result, folder / RESULT_JSON)
        await asyncio.to_thread(write_csv, result, folder / RESULT_CSV)
        read_options = media.ffmpeg_options() if media is not None else {}
        local: Path
        if "transcoding" in phases:
            report = enter("transcoding")
            source = str(upload) if upload is not None else media.url if media is not None else record.source.ref
            await _blocking(lambda on: write_playable_video(source, folder / PLAYABLE, progress=on,
                                                            options=read_options), report)
            artifacts["media"], local = PLAYABLE, folder / PLAYABLE
        else:
            assert upload is not None
            artifacts["media"], local = upload.name, upload
        if options.annotate:
            report = enter("rendering")
            await _blocking(lambda on: write_annotated_video(local, folder / ANNOTATED, result.segments,
                                                             result.timeline, progress=on), report)
            artifacts["annotated"] = ANNOTATED
        await asyncio.to_thread(sync_files, [folder / name for name in artifacts.values()])  # before "done"
        progress.fraction = 1.0
        return result, artifacts

    def _vet_and_resolve(self, url: str, proxy: GuardProxy | None) -> ResolvedMedia:
        """Check the URL, resolve a page with yt-dlp, check where the media really is (blocking). With a
        ``proxy``, every request of yt-dlp and FFmpeg goes through it, redirects and HLS segments included."""
        check_url(url, self.url_policy)
        options = proxy.ffmpeg_options() if proxy is not None else {}
        if is_direct_media_url(url):
            return ResolvedMedia(url=url, title=None, options=options)
        media = resolve_url(url, proxy=proxy.url if proxy is not None else None, options=options)
        check_url(media.url, self.url_policy)
        if media.is_live:
            raise InputError(f"{redact(url)} is a live stream, which never ends; an analysis job needs a video "
                             "with an end (cut a recording, or watch the stream live)")
        return media


async def _blocking(work: Callable[[Callable[[int, int | None], None]], T], report: Callable[[float], None]) -> T:
    """Run a blocking encode in a thread with progress; cancelling stops the encode before returning, so the
    caller can remove its files safely."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def on_progress(done: int, total: int | None) -> None:  # the encode's thread
        if stop.is_set():
            raise _Aborted()
        if total:
            loop.call_soon_threadsafe(report, done / total)

    future = loop.run_in_executor(None, work, on_progress)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.gather(future, return_exceptions=True)
        raise
