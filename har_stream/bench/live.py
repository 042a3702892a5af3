"""Live throughput: N aiortc peers send synthetic webcams at 15 fps; how fast do labels come back, and how
many peers does the server sustain in real time with no frame dropped?

Figures per run: label latency p50/p95 as the server measures it (frame arrival → label sent, so beyond the
window fill) and as the client sees it (newest frame of the window handed to the encoder → label received),
frames dropped by the server, and windows per second per peer against the rate the stride asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .webrtc_client import ClientPeer, motion_frames

MOTIONS = ("moving left", "holding still")
SUSTAINED_WINDOW_RATE = 0.9  # of fps / stride: below this the server is not keeping up


@dataclass(frozen=True)
class LiveRun:
    peers: int
    seconds: float
    fps: float
    stride: int
    labels: int
    server_latency_ms: tuple[float, ...]
    round_trip_ms: tuple[float, ...]
    frames_sent: int
    frames_received: int
    frames_dropped: int
    windows_per_peer: tuple[int, ...]  # windows labelled per peer during the measured seconds
    model_fps: float = 15.0
    refused: str | None = None  # the server's error if it refused a peer

    @property
    def expected_windows(self) -> float:
        """Windows one peer needs in the measured time: one per ``stride`` sampled frames."""
        return self.seconds * min(self.fps, self.model_fps) / self.stride

    @property
    def windows_per_peer_s(self) -> tuple[float, ...]:
        return tuple(w / self.seconds for w in self.windows_per_peer) if self.seconds else ()

    @property
    def sustained(self) -> bool:
        """Real time: every peer connected, nothing dropped, every peer labelled at the stride's rate.

        Counting windows in a fixed time is off by up to one either way, so one window of slack is allowed.
        """
        return (self.refused is None and self.frames_dropped == 0 and bool(self.windows_per_peer)
                and min(self.windows_per_peer) >= SUSTAINED_WINDOW_RATE * self.expected_windows - 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


async def _status(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{url}/api/status") as response:
        body = await response.json()
    return {s["peer_id"]: s for s in body["streams"]}


async def run_peers(url: str, peers: int, *, seconds: float = 10.0, fps: float = 15.0, model: str | None = None,
                    stride: int | None = None, size: tuple[int, int] = (320, 240),
                    warmup_timeout: float = 60.0, during: Callable[[], Awaitable[None]] | None = None) -> LiveRun:
    """Connect ``peers`` clients, wait until each has its first label, then measure for ``seconds`` (or, with
    ``during``, for as long as that coroutine runs: e.g. an offline job)."""
    frames = {m: motion_frames(m, width=size[0], height=size[1], fps=fps) for m in MOTIONS}
    async with aiohttp.ClientSession() as session:
        clients: list[ClientPeer] = []
        try:
            try:
                for i in range(peers):
                    clients.append(await ClientPeer.connect(session, url, frames[MOTIONS[i % len(MOTIONS)]],
                                                            fps=fps, model=model, stride=stride))
            except RuntimeError as err:
                return LiveRun(peers, 0.0, fps, stride or 8, 0, (), (), 0, 0, 0, (), refused=str(err))
            await asyncio.gather(*(c.wait_for("label", 1, timeout=warmup_timeout) for c in clients))
            hello = clients[0].of_type("hello")[0]
            before = await _status(session, url)
            sent_before = sum(c.camera.sent for c in clients)
            started = time.monotonic()
            await (during() if during is not None else asyncio.sleep(seconds))
            after = await _status(session, url)
            elapsed = time.monotonic() - started
            sent = sum(c.camera.sent for c in clients) - sent_before
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    latencies: list[float] = []
    trips: list[float] = []
    windows: list[int] = []
    received = dropped = 0
    for client in clients:
        in_run = [r for r in client.messages if r.message.get("type") == "label" and "refines" not in r.message
                  and started <= r.t <= started + elapsed]
        latencies += [r.message["latency_ms"] for r in in_run]
        trips += [ms for t, ms in client.round_trips() if started <= t <= started + elapsed]
        a, b = after.get(client.peer_id), before.get(client.peer_id)
        if a is None or b is None:
            windows.append(0)
            continue
        windows.append(a["windows"] - b["windows"])
        received += a["frames_received"] - b["frames_received"]
        dropped += a["frames_dropped"] - b["frames_dropped"]
    return LiveRun(peers, elapsed, fps, int(hello["stride"]), len(latencies), tuple(latencies), tuple(trips), sent,
                   received, dropped, tuple(windows), model_fps=float(hello["fps"]))


@contextlib.contextmanager
def untrained_torchvision_weights(name: str, folder: Path) -> Iterator[None]:
    """Serve a torchvision model with random weights through the real weights path, for speed figures.

    A temporary manifest lists a freshly initialised state dict under ``name`` with its true sha256, and a
    temporary cache holds it, so the server loads it exactly as it would the published file (hash check
    included). Speed does not depend on the weights' values; labels from it mean nothing.
    """
    import json
    import os

    import torch

    from ..models.torchvision_video import spec_of
    from ..weights import WeightStore, sha256_file

    torch.manual_seed(0)
    spec = spec_of(name)
    state_file = folder / f"{name}-untrained.pth"
    torch.save(spec.builder(weights=None).state_dict(), state_file)
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": {name: {
        "family": "torchvision_video", "description": f"{name} with untrained weights (benchmark only)",
        "files": [{"name": state_file.name, "url": f"https://example.invalid/{state_file.name}",  # never fetched: offline
                   "sha256": sha256_file(state_file), "size": state_file.stat().st_size}]}}}))
    saved = {k: os.environ.get(k) for k in ("HAR_STREAM_MANIFEST", "HAR_STREAM_HOME", "HAR_STREAM_OFFLINE")}
    os.environ.update(HAR_STREAM_MANIFEST=str(manifest), HAR_STREAM_HOME=str(folder / "home"),
                      HAR_STREAM_OFFLINE="1")
    try:
        WeightStore().import_file(name, state_file)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def format_run(run: LiveRun) -> str:
    def pair(values: Sequence[float]) -> str:
        p50, p95 = percentile(values, 50), percentile(values, 95)
        return "      -      " if p50 is None or p95 is None else f"{p50:6.0f} /{p95:6.0f}"

    if run.refused:
        return f"{run.peers:5d}  refused: {run.refused}"
    per_peer = min(run.windows_per_peer) if run.windows_per_peer else 0
    return (f"{run.peers:5d} {run.labels:7d}   {pair(run.server_latency_ms)} ms   {pair(run.round_trip_ms)} ms  "
            f"{run.frames_dropped:8d}  {per_peer:8d} / {run.expected_windows:5.1f}       "
            f"{'yes' if run.sustained else 'no'}")


HEADER = ("peers  labels   server latency p50/p95   client round trip p50/p95   dropped  windows min/needed  "
          "real time")
