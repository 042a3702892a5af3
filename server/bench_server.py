"""The in-process server that ``har-stream bench live``, ``jobs`` and ``cameras`` start and measure.

It lives in the server package because it is one (``har_stream`` never imports ``server``); the benches find it
through the ``har_stream.bench_server`` entry point (pyproject.toml, har_stream/plugins.py). The module is the
``BenchServer`` that plugins.py describes: ``local_server``, ``ice_loopback`` and ``wire_stats``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from har_stream.bench.live import untrained_torchvision_weights
from har_stream.errors import ModelError

from .config import ServerConfig
from .ice import ice_loopback
from .keys import MODELS
from .runner import listening

__all__ = ["ice_loopback", "local_server", "wire_stats"]


@contextlib.asynccontextmanager
async def local_server(model: str | None, device: str, stride: int | None,
                       torch_threads: int | None = None, untrained: bool = False,
                       precision: str = "auto", backend: Any = None,
                       apps: list[Any] | None = None) -> AsyncIterator[tuple[str, str]]:
    """A server in this process on a free loopback port; yields (url, description of its model).

    Without ``model`` it serves an untrained ResNet-18 CNN-LSTM at 112x112 over UCF101's 101 labels (speed does
    not depend on the weights' values), written to a temporary checkpoint. ``backend``: a ``BackendConfig``
    (``--backend ray``; default: local); the app is appended to ``apps`` when given (the bench reads its
    backend's counters).
    """
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="har-bench-live-"))
        stack.enter_context(ice_loopback())
        if untrained and model:
            stack.enter_context(untrained_torchvision_weights(model, Path(tmp)))
        spec = model or str(_untrained_checkpoint(Path(tmp)))
        config = ServerConfig(model=spec, device=device, port=0, clip_threshold=0.0, stride=stride or 8,
                              max_peers=64, preload=False, peer_idle_timeout_s=30.0,
                              torch_threads=torch_threads, precision=precision, data_dir=Path(tmp) / "data",
                              **({"backend": backend} if backend is not None else {}))
        async with listening(config) as (app, url):
            service = app[MODELS]
            if apps is not None:
                apps.append(app)
            slot = await service.wait_ready(service.default, timeout=600)
            if slot.status != "ready" or slot.worker is None:
                raise ModelError(f"bench model {service.default} is {slot.status}: {slot.message}")
            info = slot.worker.info
            import torch

            desc = (f"{info.name} ({info.family}, {info.crop[0]}x{info.crop[1]}, {info.frames} frames at "
                    f"{info.fps:g} fps, {info.num_classes} labels) on {service.device}, in this process, "
                    f"{torch.get_num_threads()} torch threads, precision {precision}")
            if backend is not None and backend.kind == "ray":
                desc = (f"{info.name} ({info.family}, {info.crop[0]}x{info.crop[1]}, {info.num_classes} labels) on "
                        f"Ray Serve ({backend.ray_address}, replicas: {backend.num_replicas or 'autoscaled'}, "
                        f"{backend.num_cpus:g} CPU each), precision {precision}")
            yield url, desc


def _untrained_checkpoint(folder: Path) -> Path:
    from har_stream.bench.machine import untrained_cnn_lstm_net
    from har_stream.models.cnn_lstm import save_checkpoint

    return save_checkpoint(untrained_cnn_lstm_net(), folder / "cnn-lstm-resnet18-untrained.pt")


def wire_stats(app: Any) -> Any:
    """The Ray backend's wire counters (bytes out and back, calls) of an app ``local_server`` put in ``apps``."""
    stats = app[MODELS].backend.stats
    return next(iter(stats.values()))
