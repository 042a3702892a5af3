"""Cameras: how many 15 fps 640x480 RTSP cameras does this server keep in real time, and where does the CPU go?

Each camera is a real RTSP stream from its own processes (``rtsp_camera``: ffmpeg streams a pre-encoded H.264
clip in real time, stream copy, through a tiny relay), added with ``POST /api/streams``. Once every camera has
its first label and a few more seconds have passed (the burst of frames buffered while FFmpeg probed the
stream is over), the run measures for ``seconds``:

* frames: the camera document's ``frames`` and ``dropped`` counters, at the start and the end;
* windows labelled: from the labels' stream times (``current.t`` at the start and the end); the live pipeline
  never skips a window, so each ``stride`` frames of stream time that were not dropped is one window (counting
  the labels a websocket client sees would miss those it pushes in one document);
* latency: ``current.latency_ms`` (frame arrival → label) of every new label a ``/api/streams/ws`` client sees;
* lag behind the camera: when that client sees a label, its wall clock minus the time the camera sent the
  window's last frame. The camera process reports when it sends stream time 0 (``RtspCamera.clocks``, from
  every packet's send time and RTP timestamp) and streams in real time, so it sends stream time ``s`` at
  ``clock + s``; the window's last frame is at ``current.t - 1 / fps`` (the server's stream time starts at the
  first frame, which is the first packet the camera sent it). Error: the websocket pushes at most every 0.2 s,
  so a label may be seen up to ~0.2 s after it was made (the figure is what a client of the API sees); the
  camera's clock is within a few ms while its processes get the CPU they need;
* lag growth: per camera, the median lag of the second half of the run minus that of the first half;
* CPU: per role of the server's threads (``cpu``) and the camera processes, over the measured seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import HarStreamError
from .cpu import CpuUse, cpu_use, snapshot
from .live import percentile
from .rtsp_camera import CameraError, RtspCamera

CAMERA_FPS = 15.0
CAMERA_SIZE = (640, 480)
SUSTAINED_WINDOW_RATE = 0.9  # of fps / stride, as in ``bench live``
DROP_TOLERANCE = 0.01  # frames dropped, as a fraction of the frames a camera sends in the measured time
LAG_GROWTH_S = 0.25  # second-half median lag minus first-half median lag, per camera


class BenchError(HarStreamError):
    """The cameras bench could not run: ffmpeg is missing, or a camera process did not start (exit 2)."""


def make_camera_clip(folder: Path, seconds: float = 16.0) -> Path:
    """A 640x480 15 fps H.264 clip of the synthetic motions, a keyframe every second and no B-frames (as IP
    cameras send), so a player that joins starts within a second and frames leave in display order."""
    from ..synthetic import write_motion_clip

    labels = ("moving left", "holding still", "moving up", "moving right")
    script = [(labels[i % len(labels)], 4.0) for i in range(max(1, int(seconds // 4)))]
    raw = write_motion_clip(folder / "camera-raw.mp4", script, width=CAMERA_SIZE[0], height=CAMERA_SIZE[1],
                            fps=CAMERA_FPS, seed=3)
    clip = folder / "camera.mp4"
    try:
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw),
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(int(CAMERA_FPS)),
                        "-bf", "0", "-pix_fmt", "yuv420p", str(clip)], check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise BenchError("ffmpeg is not installed; the cameras bench streams its cameras with it "
                         "(apt-get install ffmpeg)") from None
    except subprocess.CalledProcessError as err:
        last = (err.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise BenchError(f"ffmpeg could not encode the bench clip: {last}") from None
    raw.unlink()
    return clip


@dataclass(frozen=True)
class CameraFigures:
    name: str
    frames: int  # received by the server in the measured time
    dropped: int
    windows: int  # labelled in the measured time
    latency_ms: tuple[float, ...]  # of each new label seen
    lag_s: tuple[tuple[float, float], ...]  # (seconds into the run, lag) of each new label seen
    live_throughout: bool  # live in every document seen, and no reconnect

    def lag_halves(self, seconds: float) -> tuple[float, float] | None:
        """Median lag in the first and in the second half of the run (None without 2 labels in each)."""
        first = [lag for at, lag in self.lag_s if at < seconds / 2]
        second = [lag for at, lag in self.lag_s if at >= seconds / 2]
        if len(first) < 2 or len(second) < 2:
            return None
        return statistics.median(first), statistics.median(second)


@dataclass(frozen=True)
class CamerasRun:
    cameras: int
    seconds: float
    sample_fps: float
    stride: int
    per_camera: tuple[CameraFigures, ...] = ()
    cpu: CpuUse | None = None
    refused: str | None = None  # why the run could not measure (a camera refused or never labelled)

    @property
    def expected_frames(self) -> float:
        return self.seconds * min(CAMERA_FPS, self.sample_fps)

    @property
    def expected_windows(self) -> float:
        return self.expected_frames / self.stride

    @property
    def lag_growth_s(self) -> float | None:
        """The largest growth over the cameras; None when a camera had too few labels to tell."""
        halves = [c.lag_halves(self.seconds) for c in self.per_camera]
        known = [h for h in halves if h is not None]
        if not known or len(known) < len(halves):
            return None
        return max(second - first for first, second in known)

    @property
    def sustained(self) -> bool:
        """Real time: every camera live throughout, drops within ``DROP_TOLERANCE``, every camera labelled at
        ``SUSTAINED_WINDOW_RATE`` of the stride's rate (one window of slack), and lag not growing."""
        growth = self.lag_growth_s
        return (self.refused is None and bool(self.per_camera)
                and all(c.live_throughout for c in self.per_camera)
                and max(c.dropped for c in self.per_camera) <= DROP_TOLERANCE * self.expected_frames
                and min(c.windows for c in self.per_camera) >= SUSTAINED_WINDOW_RATE * self.expected_windows - 1
                and growth is not None and growth <= LAG_GROWTH_S)


@dataclass
class _Seen:
    """What a websocket client saw of one camera."""

    t: float | None = None
    labels: list[tuple[float, float, float]] = field(default_factory=list)  # (wall time seen, t, latency_ms)
    states: set[str] = field(default_factory=set)


@contextlib.asynccontextmanager
async def _watch(session: aiohttp.ClientSession, url: str) -> AsyncIterator[dict[str, _Seen]]:
    """Follow ``/api/streams/ws`` in an owned task; yields the cameras' sightings, filled as documents come."""
    seen: dict[str, _Seen] = {}

    async def follow(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            for doc in msg.json()["streams"]:
                camera = seen.setdefault(doc["name"], _Seen())
                camera.states.add(doc["state"])
                current = doc.get("current")
                if current is not None and current["t"] != camera.t:
                    camera.t = current["t"]
                    camera.labels.append((now, current["t"], current["latency_ms"]))

    async with session.ws_connect(f"{url}/api/streams/ws") as ws:
        task = asyncio.get_running_loop().create_task(follow(ws), name="bench-cameras-ws")
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _streams(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{url}/api/streams") as response:
        return {doc["name"]: doc for doc in (await response.json())["streams"]}


async def run_cameras(url: str, cameras: int, clip: Path, folder: Path, *, seconds: float = 15.0,
                      stride: int = 8, settle: float = 3.0, warmup_timeout: float = 120.0) -> CamerasRun:
    """Start ``cameras`` camera processes, add them to the server at ``url`` (which must run in this process,
    for the CPU figures), wait for every first label plus ``settle`` seconds, measure for ``seconds``, then
    remove them and stop the processes."""
    names = [f"bench-{cameras}-{i}" for i in range(cameras)]
    async with contextlib.AsyncExitStack() as stack:
        try:
            procs = [await stack.enter_async_context(RtspCamera(clip, folder, name)) for name in names]
        except CameraError as err:
            raise BenchError(str(err)) from None
        session = await stack.enter_async_context(aiohttp.ClientSession())
        seen = await stack.enter_async_context(_watch(session, url))
        added: list[str] = []
        stack.push_async_callback(_remove, session, url, added)
        for name, proc in zip(names, procs):
            async with session.post(f"{url}/api/streams", json={"name": name, "url": proc.url,
                                                                 "stride": stride}) as response:
                body = await response.json()
            if response.status != 201:
                return CamerasRun(cameras, 0.0, CAMERA_FPS, stride, refused=f"camera {len(added) + 1}: "
                                  f"{body.get('error', body)}")
            added.append(name)
        problem = await _first_labels(session, url, names, seen, warmup_timeout)
        if problem is not None:
            return CamerasRun(cameras, 0.0, CAMERA_FPS, stride, refused=problem)
        await asyncio.sleep(settle)
        pids = tuple(pid for proc in procs for pid in proc.pids)
        before_docs, before_cpu = await _streams(session, url), snapshot(pids)
        started, started_wall = time.monotonic(), time.time()
        for camera in seen.values():
            camera.states.clear()
        await asyncio.sleep(seconds)
        after_docs, after_cpu = await _streams(session, url), snapshot(pids)
        elapsed = time.monotonic() - started
        sample_fps = float(after_docs[names[0]]["fps"])
        figures = [_figures(name, proc, before_docs[name], after_docs[name], seen[name], started_wall, elapsed,
                            sample_fps, stride) for name, proc in zip(names, procs)]
        return CamerasRun(cameras, elapsed, sample_fps, stride, tuple(figures), cpu_use(before_cpu, after_cpu, elapsed))
    raise AssertionError("unreachable")  # the exit stack does not swallow exceptions


async def _first_labels(session: aiohttp.ClientSession, url: str, names: list[str], seen: dict[str, _Seen],
                        timeout: float) -> str | None:
    """Wait until every camera has a label; else say which did not, and why."""
    deadline = time.monotonic() + timeout
    while not all(n in seen and seen[n].labels for n in names):
        failed = any(n in seen and seen[n].states & {"failed", "stopped"} for n in names)
        if failed or time.monotonic() > deadline:
            docs = await _streams(session, url)
            late = ", ".join(f"{n} ({docs[n]['state']}: {docs[n]['error'] or 'no label yet'})" for n in names
                             if n in docs and not (n in seen and seen[n].labels))
            return f"a camera stopped before its first label: {late}" if failed else \
                f"no label within {timeout:g} s from {late}"
        await asyncio.sleep(0.1)
    return None


async def _remove(session: aiohttp.ClientSession, url: str, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.delete(f"{url}/api/streams/{name}"):
                pass


def _figures(name: str, proc: RtspCamera, before: dict[str, Any], after: dict[str, Any], seen: _Seen,
             started: float, elapsed: float, fps: float, stride: int) -> CameraFigures:
    in_run = [(at, t, ms) for at, t, ms in seen.labels if started <= at <= started + elapsed]
    lags: tuple[tuple[float, float], ...] = ()
    if len(proc.clocks) == 1:  # one connection (else the lag of a later one would be mixed up with it)
        zero = proc.clocks[1]
        lags = tuple((at - started, at - (zero + t - 1.0 / fps)) for at, t, _ in in_run)
    t0 = (before.get("current") or {}).get("t")
    t1 = (after.get("current") or {}).get("t")
    dropped = after["dropped"] - before["dropped"]
    # stream time covers the dropped frames too; the pipeline windows the rest
    windows = max(0, round(((t1 - t0) * fps - dropped) / stride)) if t0 is not None and t1 is not None else 0
    live = (before["state"] == after["state"] == "live" and seen.states <= {"live"}
            and before["reconnects"] == after["reconnects"])
    return CameraFigures(name, after["frames"] - before["frames"], dropped, windows,
                         tuple(ms for _, _, ms in in_run), lags, live)


# -- the report ---------------------------------------------------------------------------------------------

HEADER = ("cameras  fps/camera min  dropped max  windows min/needed  latency p50/p95 ms  lag p50/p95 ms  "
          "lag growth ms  real time")


def criteria() -> str:
    return (f"real time = every camera live throughout, dropped ≤ {100 * DROP_TOLERANCE:g}% of its frames, windows "
            f"≥ {100 * SUSTAINED_WINDOW_RATE:g}% of fps/stride (less one), lag growth (2nd-half median − 1st-half "
            f"median) ≤ {1000 * LAG_GROWTH_S:g} ms")


def _pair(values: Sequence[float], scale: float = 1.0) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return "     -      " if p50 is None or p95 is None else f"{p50 * scale:5.0f} / {p95 * scale:5.0f}"


def format_run(run: CamerasRun) -> list[str]:
    if run.refused is not None:
        return [f"{run.cameras:7d}  not measured: {run.refused}"]
    cams = run.per_camera
    fps = min(c.frames for c in cams) / run.seconds if run.seconds else 0.0
    latency = [ms for c in cams for ms in c.latency_ms]
    lag = [s for c in cams for _, s in c.lag_s]
    growth = run.lag_growth_s
    lines = [f"{run.cameras:7d}  {fps:8.1f} / {min(CAMERA_FPS, run.sample_fps):g}  {max(c.dropped for c in cams):11d}  "
             f"{min(c.windows for c in cams):8d} / {run.expected_windows:5.1f}   {_pair(latency):>18s}  "
             f"{_pair(lag, 1000.0):>14s}  {'-' if growth is None else f'{1000 * growth:+.0f}':>13s}  "
             f"{'yes' if run.sustained else 'no'}"]
    if run.cpu is not None:
        cpu = run.cpu
        roles = ", ".join(f"{name} {cpu.share(cores)}" for name, cores in cpu.roles.items())
        lines.append(f"         cpu (% of one core / % of the machine's {cpu.cores}): {roles}; server in all "
                     f"{cpu.share(cpu.process)}; camera processes {cpu.share(cpu.processes)}; whole machine "
                     f"{cpu.share(cpu.machine)}")
    return lines
