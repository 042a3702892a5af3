"""Offline jobs beside live streams: how fast does an analysis job run while N peers are live, and do the
peers stay in real time?

Three runs on one server, in one process, back to back: the job alone (which also warms the model up), the
peers alone, then both at once.
The job is a real ``POST /api/jobs`` upload of a clip like the offline bench's (60 s, 640x480, 30 fps) without
the annotated video; its speed is the analysis's media seconds per wall second. The peers' figures are those of
``bench live`` (server latency, drops, windows per peer), measured while the job runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .live import LiveRun, percentile, run_peers


@dataclass(frozen=True)
class JobRun:
    media_s: float
    analysis_s: float  # the analysis phase, as the job's result reports it
    wall_s: float  # submit → done, including queueing and writing the result

    @property
    def realtime(self) -> float:
        return self.media_s / self.analysis_s if self.analysis_s > 0 else 0.0


async def run_job(url: str, clip: Path, stride: int | None = None) -> JobRun:
    """Upload ``clip`` as a job (no annotated video), wait for it, return its speed."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData()
        form.add_field("annotate", "false")
        if stride is not None:
            form.add_field("stride", str(stride))
        form.add_field("video", clip.read_bytes(), filename=clip.name, content_type="video/mp4")
        async with session.post(f"{url}/api/jobs", data=form) as response:
            body = await response.json()
            if response.status != 202:
                raise RuntimeError(f"the server refused the bench job: {body.get('error', body)}")
        job_id = body["id"]
        while True:
            async with session.get(f"{url}/api/jobs/{job_id}") as response:
                job: dict[str, Any] = await response.json()
            if job["state"] in ("done", "failed", "cancelled"):
                break
            await asyncio.sleep(0.2)
        if job["state"] != "done":
            raise RuntimeError(f"the bench job {job['state']}: {job['error']}")
        result = job["result"]
        async with session.delete(f"{url}/api/jobs/{job_id}"):
            pass
    return JobRun(float(result["duration"]), float(result["elapsed_s"]), time.monotonic() - started)


async def run_mixed(url: str, clip: Path, peers: int, *, seconds: float, stride: int | None,
                    fps: float = 15.0, size: tuple[int, int] = (320, 240)) -> tuple[LiveRun, JobRun, LiveRun, JobRun]:
    """(peers alone, job alone, peers during the job, the job during the peers). The job runs alone first: it
    also warms the model up, so the peers-alone run is not charged for the first batches' one-off costs."""
    job_alone = await run_job(url, clip, stride)
    alone = await run_peers(url, peers, seconds=seconds, fps=fps, stride=stride, size=size)
    outcome: list[JobRun] = []

    async def job_during() -> None:
        outcome.append(await run_job(url, clip, stride))

    together = await run_peers(url, peers, fps=fps, stride=stride, size=size, during=job_during)
    return alone, job_alone, together, outcome[0]


def p95(run: LiveRun) -> float | None:
    return percentile(run.server_latency_ms, 95)


def format_mixed(alone: LiveRun, job_alone: JobRun, together: LiveRun, job_during: JobRun,
                 bound_ms: float) -> list[str]:
    def live_line(name: str, run: LiveRun) -> str:
        p50, p_95 = percentile(run.server_latency_ms, 50), p95(run)
        lat = "-" if p50 is None or p_95 is None else f"{p50:.0f} / {p_95:.0f} ms"
        per_peer = min(run.windows_per_peer) if run.windows_per_peer else 0
        return (f"  {name:28s} latency p50/p95 {lat:>15s}   dropped {run.frames_dropped:4d}   windows min/needed "
                f"{per_peer} / {run.expected_windows:.1f}   real time {'yes' if run.sustained else 'no'}")

    def job_line(name: str, run: JobRun) -> str:
        return (f"  {name:28s} {run.realtime:6.2f}x realtime ({run.media_s:.1f} s of video analysed in "
                f"{run.analysis_s:.2f} s; {run.wall_s:.2f} s submit to done)")

    lines = [live_line(f"{alone.peers} peers alone", alone), job_line("job alone", job_alone),
             live_line(f"{together.peers} peers during the job", together),
             job_line(f"job during {together.peers} peers", job_during)]
    slow, fast = p95(together), p95(alone)
    within = together.sustained and slow is not None and slow <= bound_ms
    lines.append(f"  ratios: job speed with peers / alone {job_during.realtime / job_alone.realtime:.2f}x; "
                 f"live p95 during the job / alone "
                 f"{(slow / fast) if slow is not None and fast else float('nan'):.2f}x")
    lines.append(f"  live within its bound (real time, no drops, p95 ≤ {bound_ms:g} ms) while the job ran: "
                 f"{'yes' if within else 'no'}")
    return lines
