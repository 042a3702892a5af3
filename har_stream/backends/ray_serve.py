"""``--backend ray``: each model runs as one Ray Serve application, shared by every front end of the cluster.

One application per model and weights (``<prefix>-<name>-<sha256[:12]>``): the first front end that needs it
deploys it, the others find it running and take a handle. Its replicas load the same weights as a local
front end would (a registry name from the replica's weight cache, or a checkpoint path that every host can
read) and refuse to serve when the weights' sha256 differs from the one the front end computed.
``@serve.batch`` merges concurrent requests (each one front end's batch) into one model call, so streams of
several front ends share a GPU's batches; replicas' CPUs/GPUs and autoscaling bounds come from ``[backend]``.

Faults: a call that fails (its replica died, it timed out) is sent once more (``retries``): the router has by
then dropped the dead replica, so the retry reaches another one or waits for the replacement Serve starts. A
second failure is a ``BackendError`` for that batch's windows only. Either way nothing is emitted twice or out
of order: the retry is inside one model call, and the pipeline publishes windows strictly in order (and once).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

from ..errors import BackendError, HarStreamError, ModelError
from ..models.base import ModelInfo, VideoModel
from ..weights import WeightStore
from .base import BackendConfig, InferenceBackend, LocalBackend, ModelOptions, checkpoint_identity
from .remote import RemoteClipEncoder, RemoteModel, WireStats

try:
    import ray
    from ray import serve
except ImportError as err:  # make_backend turns this into one BackendError line
    raise ImportError("ray[serve] is not installed") from err

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 2.0  # how soon Serve notices a dead replica and starts its replacement


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica loads: the same identity (name or path, sha256) and options as the front end's."""

    kind: str  # "model" or "clip"
    spec: str  # registry name, checkpoint path, or a CLIP directory ("" = the weight store's clip)
    sha256: str | None
    home: str
    options: ModelOptions
    max_batch_size: int
    batch_wait_timeout_s: float
    threads: int


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


@serve.deployment
class ModelReplica:
    """One replica: a model on its device, one thread that owns it, ``@serve.batch`` in front."""

    def __init__(self, spec: ReplicaSpec) -> None:
        from ..models.base import pick_device
        from ..models.registry import ClipSource
        from ..precision import resolve_precision
        from ..worker import autocast_dtype

        torch.set_num_threads(spec.threads)
        store = WeightStore(Path(spec.home), offline=True)
        device = pick_device(spec.options.device)
        local = LocalBackend()
        self.clip = None
        if spec.kind == "clip":
            from ..labels import DEFAULT_PROMPT

            source = ClipSource(Path(spec.spec) if spec.spec else None, spec.options.prompt or DEFAULT_PROMPT)
            self.clip = local.load_clip_encoder(store, device, source, spec.options)
            self.model: VideoModel = self.clip.with_labels(("-",), "")
        else:
            self.model = local.load_model(spec.spec, device=device, store=store, options=spec.options)
        got = self.model.info.weights_sha256
        if spec.sha256 is not None and got is not None and got != spec.sha256:
            raise ModelError(f"replica for {spec.spec}: weights sha256 {got[:12]}… differ from the front end's "
                             f"{spec.sha256[:12]}…; give every host the same weights")
        self.precision = resolve_precision(self.model, spec.options.precision, home=store.home).precision
        self._dtype = autocast_dtype(self.precision, device)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="har-replica")
        for batched in (self.encode, self.classify, self.classify_clip):
            batched.set_max_batch_size(spec.max_batch_size)
            batched.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)

    def describe(self) -> dict[str, Any]:
        """The model's info (labels, input size, ...) and what the front end needs besides."""
        return {"info": self.model.info, "precision": self.precision,
                "logit_scale": self.clip.logit_scale if self.clip is not None else None,
                "prompt": self.clip.prompt if self.clip is not None else None}

    def _autocast(self) -> torch.autocast:
        device = self.model.device.type
        return torch.autocast(device, dtype=self._dtype or torch.float32, enabled=self._dtype is not None)

    async def _run(self, fn: Any, items: list[np.ndarray]) -> list[np.ndarray]:
        """``fn`` over the requests' arrays concatenated (one model call), split back per request."""
        sizes = [len(x) for x in items]
        out = await asyncio.get_running_loop().run_in_executor(self._thread, fn, np.concatenate(items))
        return np.split(out, np.cumsum(sizes)[:-1])

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            return self.model.encode(torch.from_numpy(frames)).float().cpu().numpy()

    def _classify(self, windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            return self.model.classify(torch.from_numpy(windows)).float().cpu().numpy()

    def _classify_clip(self, windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            b, t = windows.shape[:2]
            feats = self.model.encode(torch.from_numpy(windows).flatten(0, 1))
            return self.model.classify(feats.view(b, t, *feats.shape[1:])).float().cpu().numpy()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def encode(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return await self._run(self._encode, items)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def classify(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return await self._run(self._classify, items)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def classify_clip(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return await self._run(self._classify_clip, items)

    def text_embeddings(self, labels: tuple[str, ...]) -> np.ndarray:
        assert self.clip is not None, "text_embeddings is CLIP's"
        return self._thread.submit(lambda: self.clip.text_embeddings(labels).cpu().numpy()).result()


class ServeCaller:
    """``call(method, *args)`` on a deployment handle, blocking (the worker's inference thread), with the retry."""

    def __init__(self, handle: Any, app: str, config: BackendConfig, stats: WireStats) -> None:
        self.handle = handle
        self.app = app
        self.config = config
        self.stats = stats

    def __call__(self, method: str, *args: Any) -> Any:
        sent = sum(a.nbytes for a in args if isinstance(a, np.ndarray))
        last: BaseException | None = None
        for attempt in range(self.config.retries + 1):
            if attempt:
                self.stats.retries += 1
                log.warning("model %s: %s failed (%s: %s); sending it again", self.app, method,
                            type(last).__name__, _first_line(last) if last else "")
            try:
                out = getattr(self.handle, method).remote(*args).result(timeout_s=self.config.request_timeout_s)
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, HarStreamError):  # the replica refused (e.g. a bad input): no retry
                    self.stats.failures += 1
                    raise BackendError(f"model {self.app}: {cause}") from None
                last = err
            except Exception as err:  # noqa: BLE001 - a dead replica, a timeout, an unreachable cluster
                last = err
            else:
                self.stats.calls += 1
                self.stats.sent_bytes += sent
                self.stats.received_bytes += out.nbytes if isinstance(out, np.ndarray) else 0
                return out
        self.stats.failures += 1
        raise BackendError(f"model {self.app}: the Ray Serve call {method} failed {self.config.retries + 1} times "
                           f"({type(last).__name__}: {_first_line(last) if last else ''}); check the cluster "
                           "(`ray status`, `serve status`)")


def app_name(prefix: str, name: str, sha256: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    return f"{prefix}-{slug}-{(sha256 or 'unpinned')[:12]}"


def connect(address: str) -> bool:
    """Join the cluster at ``address`` (``local`` starts one in this process, on loopback). True when this
    call started the connection (and ``close`` should end it)."""
    if ray.is_initialized():
        return False
    _probe(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": False}
    if address == "local":
        kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: all "not reachable"
        raise BackendError(f"cannot reach the Ray cluster at {address!r} ({type(err).__name__}: {_first_line(err)}); "
                           "start one with `ray start --head --node-ip-address 127.0.0.1` or fix --ray-address") \
            from None
    return True


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT or ray://HOST:PORT that does not answer fails now: ``ray.init`` would retry it for minutes."""
    if address in ("auto", "local"):
        return  # auto: ray.init fails at once when no cluster runs on this host
    split = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = split.hostname, split.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BackendError(f"--ray-address {address!r} is not auto, local, ray://HOST:PORT or HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise BackendError(f"cannot reach the Ray cluster at {address!r} ({err.strerror or err}); start one with "
                           "`ray start --head` there, or fix --ray-address") from None


class RayBackend(InferenceBackend):
    """Models as Ray Serve deployments (see the module docstring)."""

    name = "ray"

    def __init__(self, config: BackendConfig, options: ModelOptions = ModelOptions()) -> None:
        self.config = config
        self.options = options
        self.stats: dict[str, WireStats] = {}  # per application, for the bench and the log
        self._owns_connection = connect(config.ray_address)
        try:
            serve.start(proxy_location="Disabled")  # no HTTP ingress: front ends call through handles only
        except Exception as err:  # noqa: BLE001
            raise BackendError(f"Ray Serve could not start on the cluster at {config.ray_address!r} "
                               f"({type(err).__name__}: {_first_line(err)})") from None

    # -- what a front end asks for ------------------------------------------------------------------------
    def load_model(self, spec: str, *, device: torch.device, store: WeightStore, options: ModelOptions,
                   labels: Any = None, clip: Any = None) -> VideoModel:
        if spec == "clip":
            from ..labels import load_label_set

            label_set = labels or load_label_set("kinetics400")
            return self.load_clip_encoder(store, device, clip, options).with_labels(label_set.labels, label_set.name)
        from ..weights import sha256_file

        name, path = checkpoint_identity(spec)
        sha = sha256_file(path) if path is not None else store.sha256_of(spec)
        call, described = self._deploy(name, sha, ReplicaSpec("model", str(path or spec), sha, str(store.home),
                                                              self._options(options), *self._batching()))
        info: ModelInfo = described["info"]
        return RemoteModel(call, replace(info, name=name) if path is not None else info, call.stats)

    def load_clip_encoder(self, store: WeightStore, device: torch.device, clip: Any,
                          options: ModelOptions) -> RemoteClipEncoder:
        from ..models.registry import CLIP_WEIGHTS

        directory = getattr(clip, "directory", None)
        prompt = getattr(clip, "prompt", None) or options.prompt
        sha = None if directory else store.sha256_of(CLIP_WEIGHTS)
        opts = replace(self._options(options), prompt=prompt)
        ident = sha if directory is None else "dir" + hashlib.sha256(str(directory).encode()).hexdigest()
        call, described = self._deploy("clip", ident,
                                       ReplicaSpec("clip", str(directory or ""), sha, str(store.home), opts,
                                                   *self._batching()))
        return RemoteClipEncoder(call, described["info"], described["logit_scale"], described["prompt"], call.stats)

    def close(self) -> None:
        """End this process's connection when it made it; the deployments stay for the other front ends."""
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()

    # -- deploying ----------------------------------------------------------------------------------------
    def _options(self, options: ModelOptions) -> ModelOptions:
        """The caller's model options, with the precision and --compile this backend was made with (the
        front end itself runs no network at a precision: the replica does); ``auto`` device on a replica
        without GPUs is the CPU."""
        options = replace(options, precision=self.options.precision, compile=self.options.compile)
        return options if options.device != "auto" or self.config.num_gpus > 0 else replace(options, device="cpu")

    def _batching(self) -> tuple[int, float, int]:
        return self.config.max_batch_size, self.config.batch_wait_timeout_s, max(1, round(self.config.num_cpus))

    def _deployment_options(self) -> dict[str, Any]:
        c = self.config
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": c.num_cpus, "num_gpus": c.num_gpus},
            "max_ongoing_requests": max(8, 4 * c.max_batch_size),
            "health_check_period_s": HEALTH_CHECK_S,
            "logging_config": {"enable_access_log": False},  # a line per call would drown the front end's log
        }
        if c.num_replicas is not None:
            options["num_replicas"] = c.num_replicas
        else:
            options["autoscaling_config"] = {"min_replicas": c.min_replicas, "max_replicas": c.max_replicas,
                                             "initial_replicas": max(1, c.min_replicas),
                                             "target_ongoing_requests": c.target_ongoing_requests}
        return options

    def _deploy(self, name: str, sha: str | None, spec: ReplicaSpec) -> tuple[ServeCaller, dict[str, Any]]:
        """A handle on the model's application: the running one, or one deployed now. Blocks until it answers."""
        app = app_name(self.config.app_prefix, name, sha)
        try:
            running = serve.status().applications.get(app)
            if running is not None and str(running.status) in ("RUNNING", "DEPLOYING",
                                                                "ApplicationStatus.RUNNING",
                                                                "ApplicationStatus.DEPLOYING"):
                handle = serve.get_app_handle(app)
            else:
                log.info("deploying %s on Ray Serve (%s)", app, self._deployment_options())
                handle = serve.run(ModelReplica.options(**self._deployment_options()).bind(spec), name=app,
                                   route_prefix=None)
        except Exception as err:  # noqa: BLE001 - a replica that failed to load reports here
            raise BackendError(f"model {name} could not be deployed on Ray Serve as {app} ({type(err).__name__}: "
                               f"{_first_line(err)}); see `serve status` for the replica's error") from None
        stats = self.stats.setdefault(app, WireStats())
        call = ServeCaller(handle, app, self.config, stats)
        return call, call("describe")
