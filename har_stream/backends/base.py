"""The inference backend seam: where a model's networks run, chosen by one setting.

Everything above a ``VideoModel`` (``ModelWorker``'s batchers, the pipeline's windows, top-5, smoothing, events,
the CLIP fallback) is the same whichever backend runs; only the model object differs. ``local`` loads the model
in this process (today's behaviour, the default); ``ray`` (``ray_serve.py``) returns a ``RemoteModel`` whose
``encode``/``classify`` are calls to a Ray Serve deployment that loaded the same weights. So labels are
identical by construction: the same code turns the same probabilities into labels.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..models.base import VideoModel
from ..weights import WeightStore

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class BackendConfig:
    """``[backend]`` in the config file; ``--backend``/``--ray-address`` (and HAR_STREAM_BACKEND,
    HAR_STREAM_RAY_ADDRESS) override ``kind`` and ``ray_address``. The rest only matters for ``ray``: the
    replicas' resources, their autoscaling bounds and ``@serve.batch``'s cross-request batching."""

    kind: str = "local"
    ray_address: str = "auto"  # auto (a running `ray start` on this host), ray://HOST:10001, HOST:PORT, or local
    num_replicas: int | None = None  # fixed replica count; None: autoscale between min and max
    min_replicas: int = 1
    max_replicas: int = 4
    num_cpus: float = 1.0  # per replica
    num_gpus: float = 0.0  # per replica; e.g. 0.25 packs four replicas on a GPU
    max_batch_size: int = 8  # requests (each a front end's batch) @serve.batch merges into one model call
    batch_wait_timeout_s: float = 0.005
    target_ongoing_requests: float = 4.0  # autoscaling: requests per replica the autoscaler aims for
    request_timeout_s: float = 60.0  # one call (a replacement replica must start within it after a failure)
    retries: int = 1  # a call that fails (replica died, timeout) is sent again this often, then BackendError
    app_prefix: str = "har"  # Serve application names: <prefix>-<model>-<sha256[:12]>

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"backend {name} {why} (got {getattr(self, name)!r}); fix --backend, "
                               "--ray-address or the config file's [backend] table")

        if self.kind not in BACKENDS:
            raise bad("kind", f"must be one of {', '.join(BACKENDS)}")
        if not self.ray_address:
            raise bad("ray_address", "must not be empty")
        if self.num_replicas is not None and self.num_replicas < 1:
            raise bad("num_replicas", "must be at least 1")
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            raise bad("max_replicas", "must be at least 1 and at least min_replicas")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise bad("num_cpus", "and num_gpus must not be negative")
        if self.max_batch_size < 1:
            raise bad("max_batch_size", "must be at least 1")
        if self.batch_wait_timeout_s < 0:
            raise bad("batch_wait_timeout_s", "must not be negative")
        if not self.target_ongoing_requests > 0 or not self.request_timeout_s > 0:
            raise bad("request_timeout_s", "and target_ongoing_requests must be positive")
        if self.retries < 0:
            raise bad("retries", "must not be negative")


FIELD_TYPES = {f.name: f.type for f in fields(BackendConfig)}
ENV_VARS = {"HAR_STREAM_BACKEND": "kind", "HAR_STREAM_RAY_ADDRESS": "ray_address"}


def parse_backend_table(table: Any, origin: str) -> BackendConfig:
    """A config file's ``[backend]`` table (``kind = "ray"``, ``ray_address = ...``, replica settings)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{origin}: backend must be a [backend] table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        kind = str(FIELD_TYPES.get(name))
        if name not in FIELD_TYPES:
            raise ConfigError(f"{origin}: unknown [backend] setting {key!r}; known: {', '.join(FIELD_TYPES)}")
        ok = (isinstance(value, str) if kind.startswith("str") else
              isinstance(value, (int, float)) and not isinstance(value, bool))
        whole = kind.startswith("int")
        if whole and ok and not float(value).is_integer():
            ok = False
        if not ok:
            expected = "a string" if kind.startswith("str") else "a whole number" if whole else "a number"
            raise ConfigError(f"{origin}: [backend] {key} must be {expected}, got {value!r}")
        values[name] = int(value) if whole else value
    return BackendConfig(**values)


def with_overrides(config: BackendConfig, cli: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> BackendConfig:
    """``config`` (file or default) with the environment's and then the CLI's ``backend``/``ray_address``."""
    changes: dict[str, Any] = {}
    for var, name in ENV_VARS.items():
        if (raw := env.get(var, "").strip()):
            changes[name] = raw
    if cli.get("backend") is not None:
        changes["kind"] = cli["backend"]
    if cli.get("ray_address") is not None:
        changes["ray_address"] = cli["ray_address"]
    return replace(config, **changes) if changes else config


@dataclass(frozen=True)
class ModelOptions:
    """How a model is to be run, wherever it runs: the same for the front end and a replica."""

    device: str = "auto"
    runtime: str = "auto"
    compile: bool = False
    precision: str = "auto"
    prompt: str | None = None  # CLIP's prompt template (None: the default)


class InferenceBackend(abc.ABC):
    """Loads models for a front end. ``load_model`` and ``load_clip_encoder`` block (weights, a network call):
    call them where models are loaded, off the event loop. ``close`` once nothing uses the models."""

    name: str

    @abc.abstractmethod
    def load_model(self, spec: str, *, device: torch.device, store: WeightStore, options: ModelOptions,
                   labels: Any = None, clip: Any = None) -> VideoModel:
        """``spec``: a registry name or a CNN-LSTM checkpoint path, as ``registry.load_model`` takes it; the
        model comes back on its runtime (``--runtime``) and compiled when ``options.compile`` asks."""

    @abc.abstractmethod
    def load_clip_encoder(self, store: WeightStore, device: torch.device, clip: Any, options: ModelOptions) -> Any:
        """A CLIP encoder (``with_labels``, ``text_embeddings``, ``image_info``) as ``registry.load_clip_encoder``."""

    def close(self) -> None:
        """Let go of what the backend holds (a cluster connection); models it gave out stop working."""


class LocalBackend(InferenceBackend):
    """In-process: exactly what har-stream did before backends existed."""

    name = "local"

    def load_model(self, spec: str, *, device: torch.device, store: WeightStore, options: ModelOptions,
                   labels: Any = None, clip: Any = None) -> VideoModel:
        from ..models.registry import ClipSource, load_model
        from ..runtime import with_runtime

        model = with_runtime(load_model(spec, device=device, store=store, labels=labels, clip=clip or ClipSource()),
                             options.runtime, home=store.home)
        if not options.compile:
            return model  # without importing torch.compile's machinery (seconds of CPU at start-up)
        from ..compiled import with_compile

        return with_compile(model, True)

    def load_clip_encoder(self, store: WeightStore, device: torch.device, clip: Any, options: ModelOptions) -> Any:
        from ..models.registry import load_clip_encoder

        return load_clip_encoder(store, device, clip)


def make_backend(config: BackendConfig | None, options: ModelOptions = ModelOptions()) -> InferenceBackend:
    """The backend ``config`` names; ``ray`` connects to (or starts) the cluster now, failing with one
    ``BackendError`` line when Ray is missing or unreachable."""
    if config is None or config.kind == "local":
        return LocalBackend()
    from ..errors import BackendError

    try:
        from .ray_serve import RayBackend
    except ImportError:
        raise BackendError("--backend ray needs Ray Serve, which is not installed: pip install 'ray[serve]' "
                           "(or `pip install -e '.[cluster]'`)") from None
    return RayBackend(config, options)


def checkpoint_identity(spec: str) -> tuple[str, Path | None]:
    """(name, path) of a ``--model`` value: a checkpoint file is shipped to replicas by its absolute path."""
    from ..models.registry import is_checkpoint_path

    if is_checkpoint_path(spec):
        path = Path(spec).expanduser().resolve()
        return path.stem, path
    return spec, None
