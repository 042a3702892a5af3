"""The soak test's machinery: a real ``har-stream serve`` process, what it costs (read from ``/proc``), and the
load driven against it (live peers, RTSP cameras that keep dropping, offline jobs, a flaky webhook receiver).

Why a subprocess: RSS, file descriptors (``/proc/PID/fd``) and threads (``/proc/PID/task``) then belong to the
server alone, not to the test's own peers, RTSP clients and receiver. The one figure ``/proc`` cannot give,
the number of live asyncio tasks, the server reports itself in ``GET /api/status`` (``"tasks"``).

    plan = SoakPlan.for_minutes(None)       # CI: 15 s warm-up, 45 s soak; by hand: for_minutes(60)
    server = await ServerProcess.start(settings, folder, env)   # --config FILE.toml, free port; log in folder
    sample = await server.sample()          # rss, fds, threads, tasks, at one moment
    report = await run_load(server, plan, seconds, cameras, clip)   # all the load at once, then all closed again
    idle = await server.settled()           # idle samples after a full garbage collection
    await server.stop()                     # SIGTERM; (exit code, seconds)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.helpers.clips import REPO
from tests.helpers.rtsp_server import RtspServer
from tests.helpers.soak_launcher import THREADS_MARK
from tests.helpers.webhook_receiver import WebhookReceiver, free_port
from tests.helpers.webrtc_client import ClientPeer, motion_frames

SOAK_ENV = "HAR_STREAM_SOAK_MINUTES"
PEER_MOTIONS = ("moving left", "moving right", "moving up", "holding still")
DELIVERY_HEADER = "X-Har-Stream-Delivery"
LAUNCHER = "tests.helpers.soak_launcher"  # har-stream serve, plus SIGUSR1 (threads), SIGUSR2 (gc); run from REPO
# The asyncio loop's default executor (``asyncio.to_thread``) starts its workers on demand, up to this many, and
# keeps them: more of its idle workers after the soak than after warm-up is that pool filling up, not a leak.
# Its workers are asyncio's own (``asyncio_N``) or, where the server sets its own default executor, ``har-io_N``.
DEFAULT_EXECUTOR_PREFIX = ("asyncio_", "har-io_")
DEFAULT_EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)


# -- how long, how often ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoakPlan:
    """``warmup_s`` of full load (then everything is closed: the idle baseline), then ``soak_s`` of the same
    load. Each camera's RTSP server is killed and restarted every ``camera_restart_s`` (the two cameras half a
    period apart), one of the peers is replaced every ``peer_cycle_s``, and a job is offered every ``job_every_s``
    (skipped while two of ours are still unfinished, so the job queue never grows without bound)."""

    warmup_s: float
    soak_s: float
    camera_restart_s: float
    peer_cycle_s: float
    job_every_s: float
    peers: int = 4

    @classmethod
    def for_minutes(cls, minutes: float | None) -> SoakPlan:
        """None: the CI setting (about 90 s in all); otherwise ``minutes`` of soak, restarts every 20 s."""
        if minutes is None:
            return cls(warmup_s=15.0, soak_s=45.0, camera_restart_s=10.0, peer_cycle_s=10.0, job_every_s=3.0)
        if not minutes > 0:
            raise ValueError(f"--soak-minutes must be positive (got {minutes})")
        return cls(warmup_s=60.0, soak_s=60.0 * minutes, camera_restart_s=20.0, peer_cycle_s=30.0, job_every_s=5.0)

    @property
    def budget_s(self) -> float:
        """A generous bound on the whole test's wall time (start, both phases, closing, draining): the pytest
        timeout it needs."""
        return self.warmup_s + self.soak_s + 150.0


def soak_minutes(option: float | None, env: Mapping[str, str] = os.environ) -> float | None:
    """``--soak-minutes``, else ``$HAR_STREAM_SOAK_MINUTES``, else None (the short CI run)."""
    if option is not None:
        return float(option)
    raw = env.get(SOAK_ENV, "").strip()
    return float(raw) if raw else None


# -- the server process ----------------------------------------------------------------------------------------

def toml_config(settings: Mapping[str, Any]) -> str:
    """A flat TOML document for ``har-stream serve --config`` (strings, numbers, booleans, lists of strings)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string
    return "".join(f"{key} = {value(v)}\n" for key, v in settings.items())


@dataclass(frozen=True)
class Sample:
    """The server's cost at one moment. ``t``: monotonic seconds; ``rss_kib``: VmRSS."""

    t: float
    rss_kib: int
    fds: int
    threads: int
    tasks: int

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 2), "rss_kib": self.rss_kib, "fds": self.fds, "threads": self.threads,
                "tasks": self.tasks}


class ServerProcess:
    """``python -m har_stream.cli serve --config FILE`` with its output in a log file (a pipe could fill up
    during an hour's soak and stall the server)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        self.pid = proc.pid
        # one connection per request: no keep-alive handler task or socket of ours lingers in the counts
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                              timeout=aiohttp.ClientTimeout(total=30))

    @classmethod
    async def start(cls, settings: Mapping[str, Any], folder: Path, env: Mapping[str, str],
                    ready_timeout: float = 120.0) -> ServerProcess:
        port = free_port()
        config = folder / "soak.toml"
        config.write_text(toml_config({**settings, "host": "127.0.0.1", "port": port}))
        log = folder / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", LAUNCHER, "serve", "--config", str(config)],
                                    env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        server = cls(proc, f"http://127.0.0.1:{port}", log)
        try:
            await server._wait_ready(ready_timeout)
        except BaseException:
            await server.stop()
            raise
        return server

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                body = await self.get("/api/models")
                model = next(m for m in body["models"] if m["name"] == body["default"])
                if model["status"] == "ready":
                    return
                if model["status"] == "error":
                    raise RuntimeError(f"the server's model failed to load: {self.log_tail()}")
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the server was not ready within {timeout:g} s: {self.log_tail()}")

    async def get(self, path: str) -> Any:
        async with self._session.get(self.url + path) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise AssertionError(f"GET {path}: HTTP {response.status} {body}")
            return body

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # -- what it costs --------------------------------------------------------------------------------------

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def fd_targets(self) -> list[str]:
        """What each open descriptor points at (``socket:[…]``, a path, ``anon_inode:[eventfd]``...)."""
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed while we looked
                out.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
        return sorted(out)

    def thread_names(self) -> list[str]:
        """The kernel's name of each thread (``comm``: torch, FFmpeg and libvpx threads included)."""
        out = []
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                out.append(Path(f"/proc/{self.pid}/task/{tid}/comm").read_text().strip())
        return sorted(out)

    async def sample(self) -> Sample:
        if self.proc.poll() is not None:
            raise AssertionError(f"the server died (exit {self.proc.returncode}): {self.log_tail()}")
        tasks = (await self.get("/api/status"))["tasks"]
        return Sample(time.monotonic(), self.rss_kib(), len(os.listdir(f"/proc/{self.pid}/fd")),
                      len(os.listdir(f"/proc/{self.pid}/task")), int(tasks))

    def collect_garbage(self) -> None:
        """A full garbage collection in the server (SIGUSR2, see LAUNCHER)."""
        self.proc.send_signal(signal.SIGUSR2)

    async def settled(self, *, at_most: Sample | None = None, timeout: float = 30.0, quiet: int = 4,
                      interval: float = 0.5) -> list[Sample]:
        """Idle samples, each after a full garbage collection, once fds, threads and tasks have held still for
        ``quiet`` samples in a row (and, with ``at_most``, are no higher than it: a closing peer or camera may
        take a moment to let go). Returns the last ``quiet`` samples; on timeout, what it saw last (the caller's
        assertion then says what is left).

        Why collect: objects in reference cycles (a closed camera's scaler with its two FFmpeg threads, say) are
        freed only when Python's cyclic collector next runs, which an idle server may not do for minutes; that
        is garbage not yet collected, not a leak, and a forced collection tells the two apart."""
        deadline = time.monotonic() + timeout
        seen: list[Sample] = []
        while True:
            self.collect_garbage()
            await asyncio.sleep(interval)
            seen.append(await self.sample())
            tail = seen[-quiet:]
            still = len(tail) == quiet and len({(s.fds, s.threads, s.tasks) for s in tail}) == 1
            low = at_most is None or (tail[-1].fds <= at_most.fds and tail[-1].threads <= at_most.threads
                                      and tail[-1].tasks <= at_most.tasks)
            if (still and low) or time.monotonic() >= deadline:
                return tail

    async def python_threads(self, timeout: float = 10.0) -> tuple[list[str], str]:
        """The names of the server's Python threads, and every thread's Python stack (SIGUSR1, see LAUNCHER)."""
        before = self.log.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.sleep(0.5)
            with open(self.log, "rb") as log:
                log.seek(before)
                text = log.read().decode(errors="replace")
            if THREADS_MARK in text or time.monotonic() >= deadline:
                break
        await asyncio.sleep(0.5)  # the stacks follow the names at once, from the same handler
        with open(self.log, "rb") as log:
            log.seek(before)
            text = log.read().decode(errors="replace")
        line = next((x for x in text.splitlines() if x.startswith(THREADS_MARK)), None)
        if line is None:
            raise AssertionError(f"the server wrote no thread list within {timeout:g} s: {text[-2000:]}")
        return json.loads(line[len(THREADS_MARK):]), text

    def native_stacks(self, frames: int = 14) -> str:
        """Every thread's native stack, grouped and counted (gdb, when installed): threads that FFmpeg, torch
        or libvpx started have no Python stack, and ``comm`` names most of them just "python"."""
        gdb = shutil.which("gdb")
        if gdb is None:
            return "(gdb is not installed: no native stacks)"
        try:
            out = subprocess.run([gdb, "-p", str(self.pid), "-batch", "-ex", f"thread apply all bt {frames}"],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"(gdb failed: {err})"
        groups: Counter[str] = Counter()
        for block in re.split(r"\n(?=Thread \d+ )", out[out.find("\nThread "):]):
            names = re.findall(r"#\d+\s+(?:0x[0-9a-f]+ in )?(\S+)", block)
            libs = sorted({lib.rsplit("/", 1)[-1] for lib in re.findall(r" from (\S+)", block)})
            groups[" < ".join(n for n in names if n != "??") + f"  [{', '.join(libs)}]"] += 1
        return "\n".join(f"{count} x {stack}" for stack, count in groups.most_common())

    async def stop(self, timeout: float = 15.0) -> tuple[int | None, float]:
        """SIGTERM, then wait; SIGKILL past ``timeout``. Returns (exit code, seconds it took)."""
        await self._session.close()
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            while self.proc.poll() is None and time.monotonic() - started < timeout:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode, time.monotonic() - started


def median_rss(samples: Sequence[Sample]) -> float:
    return statistics.median(s.rss_kib for s in samples)


# -- the webhook receiver that fails half the time -------------------------------------------------------------

class HalfFailingReceiver(WebhookReceiver):
    """Answers 500 to every other request (the 1st, 3rd, 5th ...), 200 to the rest, for as long as it runs."""

    async def _handle(self, request: web.Request) -> web.Response:
        self.statuses = [500 if len(self.requests) % 2 == 0 else 200]
        return await super()._handle(request)

    def delivered_ids(self) -> list[str]:
        """``<event id>-<seq>`` of every request answered 2xx, in order (repeats kept, so they can be seen)."""
        return [r.headers.get(DELIVERY_HEADER, "") for r in self.requests if 200 <= r.status < 300]


# -- the load --------------------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What one phase of load did. ``samples``: the server's cost every second while loaded."""

    seconds: float
    samples: list[Sample] = field(default_factory=list)
    peers: list[tuple[str, float, int]] = field(default_factory=list)  # (peer id, seconds connected, labels)
    refused_peers: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # accepted job ids
    refused_jobs: list[tuple[int, str]] = field(default_factory=list)  # (status, error): full queue, say
    restarts: int = 0
    cameras: list[dict[str, Any]] = field(default_factory=list)  # each camera's document before it was removed

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "peers": self.peers, "refused_peers": self.refused_peers,
                "jobs": len(self.jobs), "refused_jobs": self.refused_jobs, "restarts": self.restarts,
                "cameras": [{k: c.get(k) for k in ("name", "state", "reconnects")} for c in self.cameras],
                "samples": [s.to_json() for s in self.samples]}


async def run_load(server: ServerProcess, plan: SoakPlan, seconds: float, cameras: Sequence[RtspServer],
                   clip: Path) -> LoadReport:
    """Everything at once for ``seconds``: ``plan.peers`` live peers (one replaced every ``peer_cycle_s``), the
    cameras added through the API with their RTSP servers killed and restarted, jobs offered, the server sampled
    every second. Then all of it is closed again: peers hung up, cameras deleted, every accepted job waited for
    (final). The report keeps what the test checks afterwards."""
    report = LoadReport(seconds)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for i, camera in enumerate(cameras):
            await add_camera(session, server.url, f"cam{i}", camera.url)
        peers: list[tuple[ClientPeer, float]] = []
        counter = 0

        async def connect() -> None:
            nonlocal counter
            motion = PEER_MOTIONS[counter % len(PEER_MOTIONS)]
            counter += 1
            try:
                peer = await ClientPeer.connect(session, server.url, motion_frames(motion), fps=15.0, timeout=30)
            except (RuntimeError, aiohttp.ClientError, TimeoutError) as err:
                report.refused_peers.append(str(err))
                return
            peers.append((peer, time.monotonic()))

        async def hang_up(peer: ClientPeer, since: float) -> None:
            report.peers.append((peer.peer_id, round(time.monotonic() - since, 1), len(peer.labels())))
            await peer.close()

        stop = asyncio.Event()

        async def stopped_after(seconds: float) -> bool:
            """Wait ``seconds``; True as soon as the phase is over (loops end between actions, never inside one:
            a peer half-connected or a camera half-restarted would be left behind)."""
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            return stop.is_set()

        async def cycle_peers() -> None:
            while not await stopped_after(plan.peer_cycle_s):
                if peers:
                    await hang_up(*peers.pop(0))
                await connect()

        async def restart_camera(camera: RtspServer, offset: float) -> None:
            if await stopped_after(offset):
                return
            while True:
                await asyncio.to_thread(camera.restart)  # kill -9, then up again on the same port
                report.restarts += 1
                if await stopped_after(plan.camera_restart_s):
                    return

        async def offer_jobs() -> None:
            while True:
                unfinished = 0
                for job_id in report.jobs[-2:]:
                    async with session.get(f"{server.url}/api/jobs/{job_id}") as response:
                        unfinished += (await response.json())["state"] in ("queued", "running")
                if unfinished < 2:
                    form = aiohttp.FormData()
                    form.add_field("video", clip.read_bytes(), filename=clip.name,
                                   content_type="application/octet-stream")
                    async with session.post(server.url + "/api/jobs", data=form) as response:
                        body = await response.json(content_type=None)
                        if response.status == 202:
                            report.jobs.append(body["id"])
                        else:
                            report.refused_jobs.append((response.status, str(body.get("error"))))
                if await stopped_after(plan.job_every_s):
                    return

        async def sample() -> None:
            while not await stopped_after(1.0):
                report.samples.append(await server.sample())

        await asyncio.gather(*(connect() for _ in range(plan.peers)))
        period = plan.camera_restart_s
        load = [asyncio.create_task(cycle_peers()), asyncio.create_task(offer_jobs()), asyncio.create_task(sample()),
                *(asyncio.create_task(restart_camera(c, period * (i + 1) / len(cameras)))
                  for i, c in enumerate(cameras))]
        try:
            done, _ = await asyncio.wait(load, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()
            for task in done:
                task.result()  # a loop that failed fails the test, with its own error
            await asyncio.wait_for(asyncio.gather(*load), 120)
        finally:
            stop.set()
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            await asyncio.gather(*(hang_up(p, since) for p, since in peers))
            for i in range(len(cameras)):
                async with session.get(f"{server.url}/api/streams/cam{i}") as response:
                    report.cameras.append(await response.json())
                async with session.delete(f"{server.url}/api/streams/cam{i}") as response:
                    assert response.status in (200, 202), await response.text()  # 202: teardown goes on
            await wait_streams_gone(session, server.url)
        await wait_jobs_final(session, server.url, report.jobs)
    return report


async def add_camera(session: aiohttp.ClientSession, url: str, name: str, camera_url: str,
                     timeout: float = 30.0) -> None:
    """``POST /api/streams``; a 409 while the last phase's camera of that name is still closing is retried."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.post(url + "/api/streams", json={"name": name, "url": camera_url}) as response:
            if response.status == 201:
                return
            text = await response.text()
        assert response.status == 409 and time.monotonic() < deadline, f"adding {name}: {response.status} {text}"
        await asyncio.sleep(0.2)


async def wait_streams_gone(session: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
    """Until ``GET /api/streams`` lists none (a deleted camera may finish its teardown in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{url}/api/streams") as response:
            left = [s["name"] for s in (await response.json())["streams"]]
        if not left:
            return
        assert time.monotonic() < deadline, f"cameras {left} still listed {timeout:g} s after their DELETE"
        await asyncio.sleep(0.2)


async def wait_jobs_final(session: aiohttp.ClientSession, url: str, job_ids: Iterable[str],
                          timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        while True:
            async with session.get(f"{url}/api/jobs/{job_id}") as response:
                state = (await response.json())["state"]
            if state not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, f"job {job_id} still {state} after {timeout:g} s"
            await asyncio.sleep(0.5)


async def webhooks_settled(server: ServerProcess, timeout: float = 90.0) -> dict[str, Any]:
    """``/api/events/status`` once the store has written everything and the webhook has dealt with every message
    (delivered, failed or dropped: nothing queued or in flight), or as it stands at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await server.get("/api/events/status")
        store, (hook,) = stats["store"], stats["webhooks"]
        if (store["queued"] == 0 and hook["queued"] == 0
                and hook["delivered"] + hook["failed"] + hook["dropped"] == store["written"]):
            return stats
        if time.monotonic() >= deadline:
            return stats
        await asyncio.sleep(0.5)


async def stored_events(server: ServerProcess) -> list[dict[str, Any]]:
    """Every event the store holds (each at its latest message)."""
    out: list[dict[str, Any]] = []
    while True:
        page = await server.get(f"/api/events?limit=1000&offset={len(out)}")
        out += page["events"]
        if not page["events"] or len(out) >= page["total"]:
            return out
