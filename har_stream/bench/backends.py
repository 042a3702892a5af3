"""``har-stream bench live --backend ray``: the same live peers against an in-process server with the local
backend, then with the Ray Serve backend, in one run, on this machine.

Figures: added latency per label (the Ray server's p50/p95 minus the local one's, server-side: frame arrival →
label sent), the throughput ratio (labels per second, Ray over local, at the same peer count), and what
crossed the network per stream per second (uint8 frames out, features/logits back; ``WireStats``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..backends.base import BackendConfig
from ..plugins import bench_server
from .live import LiveRun, percentile, run_peers


@dataclass(frozen=True)
class BackendComparison:
    local: LiveRun
    ray: LiveRun
    sent_bytes: int  # by the Ray front end during the measured run
    received_bytes: int
    calls: int

    def _pct(self, run: LiveRun, p: float) -> float | None:
        return percentile(run.server_latency_ms, p)

    @property
    def added_latency_ms(self) -> tuple[float | None, float | None]:
        out = []
        for p in (50, 95):
            a, b = self._pct(self.ray, p), self._pct(self.local, p)
            out.append(None if a is None or b is None else a - b)
        return out[0], out[1]

    @property
    def throughput_ratio(self) -> float | None:
        local = self.local.labels / self.local.seconds if self.local.seconds else 0.0
        return (self.ray.labels / self.ray.seconds) / local if local and self.ray.seconds else None

    @property
    def bytes_per_stream_s(self) -> float:
        seconds = self.ray.seconds * self.ray.peers
        return (self.sent_bytes + self.received_bytes) / seconds if seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        p50, p95 = self.added_latency_ms
        return {"added_latency_ms_p50": p50, "added_latency_ms_p95": p95, "throughput_ratio": self.throughput_ratio,
                "bytes_per_stream_s": self.bytes_per_stream_s, "sent_bytes": self.sent_bytes,
                "received_bytes": self.received_bytes, "calls": self.calls}

    def summary(self) -> str:
        p50, p95 = self.added_latency_ms
        ratio = self.throughput_ratio

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:+.0f} ms"

        return (f"ray vs local: added latency per label p50 {ms(p50)}, p95 {ms(p95)}; throughput ratio "
                f"{'-' if ratio is None else f'{ratio:.2f}'}; {self.bytes_per_stream_s / 1000:.1f} kB per stream per "
                f"second over the network ({self.calls} calls)")


async def compare_backends(peers: int, ray: BackendConfig, *, model: str | None, device: str, stride: int | None,
                           torch_threads: int | None, precision: str, seconds: float, fps: float,
                           size: tuple[int, int]) -> tuple[BackendComparison, str, str]:
    """Local first, then Ray, each with its own in-process server on loopback. Returns the comparison and the
    two servers' descriptions."""
    runs: dict[str, LiveRun] = {}
    described: dict[str, str] = {}
    wire = [0, 0, 0]
    server = bench_server("bench live --backend ray")
    for kind in ("local", "ray"):
        apps: list[Any] = []
        async with server.local_server(model, device, stride, torch_threads, precision=precision,
                                       backend=ray if kind == "ray" else None, apps=apps) as (url, where):
            described[kind] = where
            stats = server.wire_stats(apps[0]) if kind == "ray" else None

            async def measured() -> None:
                """run_peers' measured seconds, with the wire counters read at their start and end."""
                before = (stats.sent_bytes, stats.received_bytes, stats.calls) if stats else (0, 0, 0)
                await asyncio.sleep(seconds)
                if stats is not None:
                    wire[:] = [stats.sent_bytes - before[0], stats.received_bytes - before[1],
                               stats.calls - before[2]]

            runs[kind] = await run_peers(url, peers, fps=fps, stride=stride, size=size, during=measured)
    return BackendComparison(runs["local"], runs["ray"], *wire), described["local"], described["ray"]
