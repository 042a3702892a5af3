"""``--backend ray``: the tiny CNN-LSTM served by a real Ray Serve deployment (one Ray per test session, loopback,
2 CPUs) gives the labels the in-process backend gives, offline and live, to two front ends at once, and a
replica killed during a run costs a retry, not a label.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.backends.base import ModelOptions, make_backend
from har_stream.backends.ray_serve import RayBackend
from har_stream.commands.analyse import analyse_with
from har_stream.engine import LoadedModels, ModelChoice, load_models
from har_stream.pipeline import StreamSettings
from har_stream.synthetic import write_motion_clip
from har_stream.types import AnalysisResult
from har_stream.weights import WeightStore
from server.config import ServerConfig
from tests.helpers.clips import check_labels_and_boundary
from tests.helpers.ray_cluster import TEST_BACKEND, kill_replica, ray_session, replica_actors  # noqa: F401
from tests.helpers.tiny_clip import make_tiny_clip
from tests.helpers.webrtc_client import clean_windows, label_counts, live_server

pytestmark = pytest.mark.usefixtures("ray_session", "one_torch_thread")


def choice(checkpoint: Path) -> ModelChoice:
    return ModelChoice(model=str(checkpoint), clip_threshold=0.0, device="cpu", runtime="torch")


def ray_backend() -> RayBackend:
    backend = make_backend(TEST_BACKEND, ModelOptions(device="cpu", runtime="torch", precision="fp32"))
    assert isinstance(backend, RayBackend)
    return backend


async def analysed(models: LoadedModels, clip: Path, stride: int = 4) -> AnalysisResult:
    return await analyse_with(models, str(clip), StreamSettings(window=16, stride=stride), 0.0, precision="fp32")


def predictions(result: AnalysisResult) -> list[tuple[float, str, tuple[tuple[str, float], ...]]]:
    return [(s.start, s.prediction.label, s.prediction.top5) for s in result.segments]


def assert_same(ray: AnalysisResult, local: AnalysisResult) -> None:
    """Same windows, same top-5 (to float noise), same timeline: the labels do not depend on the backend."""
    assert len(ray.segments) == len(local.segments)
    for (t_r, label_r, top_r), (t_l, label_l, top_l) in zip(predictions(ray), predictions(local)):
        assert (t_r, label_r) == (t_l, label_l)
        assert [name for name, _ in top_r] == [name for name, _ in top_l]
        assert [p for _, p in top_r] == pytest.approx([p for _, p in top_l], abs=1e-4), (top_r, top_l)
    assert [(e.label, e.start) for e in ray.timeline] == [(e.label, e.start) for e in local.timeline]


async def test_offline_labels_match_the_local_backend(tiny_checkpoint: Path, change_clip: Path,
                                                      tmp_path: Path) -> None:
    store = WeightStore(tmp_path / "home", offline=True)
    local = await analysed(load_models(choice(tiny_checkpoint), store), change_clip)
    backend = ray_backend()
    models = await asyncio.to_thread(load_models, choice(tiny_checkpoint), store, backend)
    assert models.ref == local.model  # the replica loaded the same weights (name, sha256, labels)
    result = await analysed(models, change_clip)
    assert_same(result, local)
    check_labels_and_boundary(result.to_json(), stride=4)
    stats = next(iter(backend.stats.values()))
    assert stats.failures == 0 and stats.calls > 2
    # uint8 frames at the model's input size went over once each, features (not frames) came back
    h, w = models.primary.info.crop
    assert stats.sent_bytes >= result.frames_sampled * h * w * 3
    assert stats.received_bytes < stats.sent_bytes / 10


async def test_clip_fallback_through_ray_matches_the_local_one(tiny_checkpoint: Path, change_clip: Path,
                                                              tmp_path: Path) -> None:
    """CLIP on its own replica: image embeddings come back from it, the text side once per label set; every
    window is refined (threshold 1), and the refinements are the local backend's."""
    clip_dir = make_tiny_clip(tmp_path / "clip")
    store = WeightStore(tmp_path / "home", offline=True)
    pick = replace(choice(tiny_checkpoint), clip_threshold=1.0, clip_model=str(clip_dir))
    settings = StreamSettings(window=16, stride=8)
    local_models = load_models(pick, store)
    assert local_models.fallback is not None
    local = await analyse_with(local_models, str(change_clip), settings, 1.0, precision="fp32")
    backend = ray_backend()
    models = await asyncio.to_thread(load_models, pick, store, backend)
    assert models.ref == local.model and models.fallback is not None
    result = await analyse_with(models, str(change_clip), settings, 1.0, precision="fp32")
    assert any(s.prediction.source == "clip" for s in result.segments)
    assert_same(result, local)
    clip_app = next(app for app in backend.stats if "-clip-" in app)
    assert backend.stats[clip_app].calls > 1 and backend.stats[clip_app].failures == 0


async def test_replica_killed_during_a_run_costs_a_retry_not_a_label(tiny_checkpoint: Path,
                                                                     tmp_path: Path) -> None:
    clip = write_motion_clip(tmp_path / "long.mp4", (("moving left", 3.0), ("holding still", 3.0)), seed=3,
                             speed=0.4)
    store = WeightStore(tmp_path / "home", offline=True)
    local = await analysed(load_models(choice(tiny_checkpoint), store), clip, stride=1)
    backend = ray_backend()
    models = await asyncio.to_thread(load_models, choice(tiny_checkpoint), store, backend)
    app, stats = next(iter(backend.stats.items()))
    replicas = replica_actors(app)
    assert len(replicas) == 1, replicas
    call, calls = models.primary.call, [0]  # type: ignore[attr-defined]

    def crash_on_the_third_call(method: str, *args: object) -> object:
        """On the inference thread, mid-run: the replica's process dies (like a lost host) and the next call
        goes out before Serve's health check (every 2 s) has noticed, so it reaches the dead replica."""
        calls[0] += 1
        if calls[0] == 3:
            kill_replica(replicas[0])
            time.sleep(0.3)  # the process is gone; the router does not know yet
        return call(method, *args)

    models.primary.call = crash_on_the_third_call  # type: ignore[attr-defined]
    result = await asyncio.wait_for(analysed(models, clip, stride=1), timeout=180)
    assert calls[0] > 3, "the run ended before the replica was killed"
    assert stats.failures == 0, stats  # Serve re-routed the call, or our retry sent it again
    starts = [s.start for s in result.segments]
    assert starts == sorted(set(starts)), "windows out of order or twice"
    assert_same(result, local)
    replacement = replica_actors(app)
    assert len(replacement) == 1 and replacement != replicas  # Serve replaced the dead replica


async def test_a_call_whose_replica_dies_mid_request_is_sent_once_more(tiny_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    store = WeightStore(tmp_path / "home", offline=True)
    backend = ray_backend()
    models = await asyncio.to_thread(load_models, choice(tiny_checkpoint), store, backend)
    app, stats = next(iter(backend.stats.items()))
    replicas = replica_actors(app)
    h, w = models.primary.info.crop
    frames = np.random.default_rng(0).integers(0, 256, (3000, h, w, 3), dtype=np.uint8)  # seconds of work
    call = asyncio.create_task(asyncio.to_thread(models.primary.call, "encode", frames))  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)  # the replica is busy with it
    assert not call.done()
    await asyncio.to_thread(kill_replica, replicas[0])
    features = await asyncio.wait_for(call, timeout=180)
    assert stats.retries == 1 and stats.failures == 0, stats
    local = load_models(choice(tiny_checkpoint), store).primary
    assert features.shape[0] == len(frames)  # the whole answer, from the replacement replica
    np.testing.assert_allclose(features[:64], local.encode(torch.from_numpy(frames[:64])).numpy(), atol=1e-4)
    assert replica_actors(app) != replicas


def ray_config(checkpoint: Path, tmp_path: Path, **kw: object) -> ServerConfig:
    values: dict = dict(model=str(checkpoint), offline=True, home=tmp_path / "home", port=0, stride=4,
                        peer_idle_timeout_s=5.0, clip_threshold=0.0, precision="fp32", runtime="torch",
                        device="cpu", backend=TEST_BACKEND, data_dir=tmp_path / "data")
    values.update(kw)
    return ServerConfig(**values)


def assert_right(events: list[dict], expected: str) -> None:
    clean = clean_windows(events)
    assert len(clean) >= 3, f"only {len(clean)} clean windows in {len(events)} events"
    assert sum(e["label"] == expected for e in clean) >= 0.8 * len(clean), label_counts(clean)
    indexes = [e["window_index"] for e in events]
    assert indexes == sorted(set(indexes)), "label events out of order or twice"


@pytest.mark.usefixtures("ice_loopback_patch")
async def test_two_front_ends_share_one_deployment_live(tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = ray_config(tiny_checkpoint, tmp_path / "a")
    second = ray_config(tiny_checkpoint, tmp_path / "b")
    local = replace(first, backend=replace(TEST_BACKEND, kind="local"), data_dir=tmp_path / "c")
    async with live_server(first) as a, live_server(second) as b, live_server(local) as c:
        apps = {app for server in (a, b) for app in server.models.backend.stats}
        assert len(apps) == 1 and len(replica_actors(apps.pop())) == 1  # one deployment, shared
        peers = [await a.connect("moving left"), await b.connect("moving right"), await c.connect("moving left")]
        try:
            await asyncio.gather(*(peer.wait_for("label", 12, timeout=90) for peer in peers))
        finally:
            for peer in peers:
                await peer.close()
        left_ray, right_ray, left_local = (peer.labels() for peer in peers)
        assert_right(left_ray, "moving left")
        assert_right(right_ray, "moving right")
        assert_right(left_local, "moving left")
        for server in (a, b):
            stats = next(iter(server.models.backend.stats.values()))
            assert stats.calls > 0 and stats.failures == 0

