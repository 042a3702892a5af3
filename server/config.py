"""Server settings: one frozen ``ServerConfig``, resolved from CLI > environment > config file > defaults.

Why one resolver: every source names the same fields (``max_peers`` in TOML, ``HAR_STREAM_MAX_PEERS`` in the
environment, ``--max-peers`` on the CLI), so a value is validated once, whichever source gave it, and an
error names where the bad value came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from har_stream.backends.base import BackendConfig, parse_backend_table, with_overrides
from har_stream.errors import ConfigError
from har_stream.labels import DEFAULT_PROMPT, check_prompt
from har_stream.runtime import RUNTIMES

from .camera_spec import CameraSpec, parse_camera

REPO_ROOT = Path(__file__).resolve().parents[1]

# environment variable -> field; also HAR_STREAM_CONFIG names the config file
ENV_VARS: Mapping[str, str] = {
    "HAR_STREAM_HOST": "host",
    "HAR_STREAM_PORT": "port",
    "HAR_STREAM_MODEL": "model",
    "HAR_STREAM_DEVICE": "device",
    "HAR_STREAM_MAX_PEERS": "max_peers",
    "HAR_STREAM_ICE_LOOPBACK": "ice_loopback",
    "HAR_STREAM_CLIP_THRESHOLD": "clip_threshold",
    "HAR_STREAM_CLIP_MODEL": "clip_model",
    "HAR_STREAM_STRIDE": "stride",
    "HAR_STREAM_PEER_IDLE_TIMEOUT": "peer_idle_timeout_s",
    "HAR_STREAM_PRECISION": "precision",
    "HAR_STREAM_RUNTIME": "runtime",
    "HAR_STREAM_COMPILE": "compile",
    "HAR_STREAM_DATA": "data_dir",
    "HAR_STREAM_DATABASE": "database",  # server/database.py: sqlite (default) or postgresql://…
    "HAR_STREAM_LEASE_RENEW": "lease_renew_s",
    "HAR_STREAM_LEASE_TTL": "lease_ttl_s",
    "HAR_STREAM_MAX_UPLOAD_MB": "max_upload_mb",
    "HAR_STREAM_JOB_CONCURRENCY": "job_concurrency",
    "HAR_STREAM_ALLOW_PRIVATE_URLS": "allow_private_urls",
    "HAR_STREAM_ALLOW_HOSTS": "allow_hosts",
    "HAR_STREAM_MAX_INPUT_DURATION": "max_input_duration_s",
    "HAR_STREAM_MAX_INPUT_SIDE": "max_input_side",
    "HAR_STREAM_MAX_JOB_SECONDS": "max_job_s",
    "HAR_STREAM_WEBHOOKS": "webhooks",
    "HAR_STREAM_WEBHOOK_SECRET": "webhook_secret",
    "HAR_STREAM_MQTT_URL": "mqtt_url",
    "HAR_STREAM_PUBLIC_URL": "public_url",
    "HAR_STREAM_INFERENCE_STALL": "inference_stall_s",
    "HAR_STREAM_TOKEN": "token",  # server/auth.py: required on the API, websockets and media when set
    "HAR_STREAM_TOKEN_FILE": "token_file",
    "HAR_STREAM_INSECURE_NO_AUTH": "insecure_no_auth",
    "HAR_STREAM_CORS_ORIGINS": "cors_origins",
    "HAR_STREAM_TLS_CERT": "tls_cert",
    "HAR_STREAM_TLS_KEY": "tls_key",
    "HAR_STREAM_ICE_SERVERS": "ice_servers",
    "HAR_STREAM_ICE_INTERFACES": "ice_interfaces",
}
CONFIG_ENV = "HAR_STREAM_CONFIG"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``har-stream serve`` can be told. Paths are resolved; ranges are checked on creation."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "s3d"  # default model: a registry name or a CNN-LSTM checkpoint file
    device: str = "auto"
    max_peers: int = 16
    clip_threshold: float = 0.4
    clip_model: str | None = None  # a local CLIP directory instead of the weight store's `clip`
    prompt: str = DEFAULT_PROMPT
    stride: int = 8
    peer_idle_timeout_s: float = 10.0
    ice_loopback: bool = False  # offer 127.0.0.1 as the only ICE candidate (tests, a browser on this machine)
    web_dir: Path = REPO_ROOT / "web"
    home: Path | None = None  # weights cache; None: $HAR_STREAM_HOME or ~/.cache/har-stream
    manifest: Path | None = None  # weights manifest; None: $HAR_STREAM_MANIFEST or weights/manifest.json
    offline: bool | None = None  # None: $HAR_STREAM_OFFLINE
    max_batch: int = 16
    max_wait_ms: float = 5.0
    frame_queue: int = 2  # per peer, prepared frames waiting for the engine (drop_oldest)
    torch_threads: int | None = None
    precision: str = "auto"  # inference autocast: auto (har_stream/precision.py), fp32, bf16, fp16
    runtime: str = "auto"  # where models' heavy networks run: auto, torch, openvino, onnxruntime (runtime.py)
    compile: bool = False  # torch.compile the models' heavy networks, eager when that fails (har_stream/compiled.py)
    preload: bool = True  # also load every other model whose weights are already cached
    shutdown_timeout_s: float = 3.0
    inference_stall_s: float = 30.0  # a model call running longer is given up by the watchdog (har_stream/batcher.py)
    data_dir: Path | None = None  # jobs, uploads, results; None: $XDG_DATA_HOME/har-stream or ~/.local/share/…
    database: str | None = None  # jobs, events, cameras: none = SQLite in data_dir; postgresql://… = shared
    lease_renew_s: float = 2.0  # shared database: each front end renews its camera leases this often
    lease_ttl_s: float = 6.0  # shared database: a camera lease not renewed this long goes to another front end
    max_upload_mb: float = 2048.0  # uploads over this are refused (413) while they stream in
    job_concurrency: int = 1  # offline jobs analysed at once; the rest wait in the queue
    max_queued_jobs: int = 32  # jobs waiting to start; more are refused with 429 (policy: reject)
    allow_private_urls: bool = False  # let jobs fetch URLs on loopback / private networks (tests, a LAN)
    allow_hosts: tuple[str, ...] = ()  # addresses/networks[:port] jobs and cameras may fetch although private
    max_input_duration_s: float = 10800.0  # jobs: a longer video is refused (upload: 413; URL: the job fails)
    max_input_side: int = 7680  # jobs: a video wider or taller than this (pixels) is refused the same way
    max_job_s: float = 21600.0  # jobs: one running longer is stopped and failed with the reason
    cameras: tuple[CameraSpec, ...] = ()  # watched from the start (config file ``[[cameras]]`` tables)
    max_streams: int = 16  # cameras at once; one more gets 429
    max_viewers: int = 32  # browsers watching relayed camera video at once
    reconnect_initial_s: float = 1.0  # cameras: first wait after a drop; doubles per failure ...
    reconnect_max_s: float = 30.0  # ... up to this (with up to 20% jitter taken off)
    first_frame_timeout_s: float = 15.0  # cameras: an opened stream must deliver a frame within this
    stall_timeout_s: float = 10.0  # cameras: no frame for this long → reconnect
    event_min_s: float = 1.0  # an action must hold this long (after smoothing) to open an event
    event_update_s: float = 5.0  # an open event sends an update this often (stream time)
    event_retention_days: float = 30.0  # closed events older than this are deleted
    webhooks: tuple[str, ...] = ()  # http(s) URLs that get every event as JSON (POST)
    webhook_secret: str | None = None  # signs webhook bodies (X-Har-Stream-Signature: sha256=HMAC)
    mqtt_url: str | None = None  # mqtt[s]://[user:pw@]host[:port][/topic-prefix]: events on <prefix>/<stream>/events
    public_url: str | None = None  # how others reach this server (absolute snapshot links in webhooks/MQTT)
    # security (docs/security.md; server/auth.py, server/tls.py, server/ice.py)
    token: str | None = None  # required on every API route, offer, websocket and media file when set
    token_file: Path | None = None  # ... or read from this file (first line), so it stays out of `ps`
    insecure_no_auth: bool = False  # allow a non-loopback host without a token
    auth_max_failures: int = 10  # wrong tokens per client address per minute before 429
    cors_origins: tuple[str, ...] = ()  # other origins (scheme://host[:port]) allowed to call the API
    tls_cert: Path | None = None  # PEM certificate (chain): serve https/wss directly
    tls_key: Path | None = None  # its PEM private key
    ice_servers: tuple[str, ...] = ()  # stun:host:port, turn:user:password@host:port?transport=udp, ...
    ice_interfaces: tuple[str, ...] = ()  # host addresses or interface names to offer as ICE candidates
    backend: BackendConfig = BackendConfig()  # where models run: [backend] table, --backend, --ray-address

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} {why} (got {getattr(self, name)!r}); fix the option, variable or config file")

        if not self.host:
            raise bad("host", "must not be empty")
        if not 0 <= self.port <= 65535:
            raise bad("port", "must be between 0 and 65535")
        if not self.model:
            raise bad("model", "must name a model or a checkpoint file")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise bad("device", f"must be one of {', '.join(DEVICES)}")
        if self.max_peers < 1:
            raise bad("max_peers", "must be at least 1")
        if not 0.0 <= self.clip_threshold <= 1.0:
            raise bad("clip_threshold", "must be between 0 and 1")
        check_prompt(self.prompt)
        if self.stride < 1:
            raise bad("stride", "must be at least 1")
        if not self.peer_idle_timeout_s > 0:
            raise bad("peer_idle_timeout_s", "must be positive")
        if self.max_batch < 1 or self.frame_queue < 1:
            raise ConfigError("max_batch and frame_queue must be at least 1; fix the config file")
        if self.max_wait_ms < 0:
            raise bad("max_wait_ms", "must not be negative")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise bad("torch_threads", "must be at least 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise bad("precision", "must be one of auto, fp32, bf16, fp16")
        if self.runtime not in RUNTIMES:
            raise bad("runtime", f"must be one of {', '.join(RUNTIMES)}")
        if not self.shutdown_timeout_s > 0:
            raise bad("shutdown_timeout_s", "must be positive")
        if not self.inference_stall_s > 0:
            raise bad("inference_stall_s", "must be positive")
        if not self.max_upload_mb > 0:
            raise bad("max_upload_mb", "must be positive")
        if self.job_concurrency < 1:
            raise bad("job_concurrency", "must be at least 1")
        if self.max_queued_jobs < 1:
            raise bad("max_queued_jobs", "must be at least 1")
        for name in ("max_input_duration_s", "max_input_side", "max_job_s"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be positive")
        from .url_guard import parse_allowed_hosts  # noqa: PLC0415 (the check lives with the code that uses it)

        parse_allowed_hosts(self.allow_hosts)
        if self.max_streams < 1 or self.max_viewers < 1:
            raise ConfigError("max_streams and max_viewers must be at least 1; fix the config file")
        for name in ("reconnect_initial_s", "reconnect_max_s", "first_frame_timeout_s", "stall_timeout_s"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be positive")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise bad("reconnect_max_s", "must be at least reconnect_initial_s")
        if self.event_min_s < 0 or not self.event_update_s > 0 or not self.event_retention_days > 0:
            raise ConfigError("event_min_s must be 0 or more, event_update_s and event_retention_days positive; "
                              "fix the config file")
        self._check_security()
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must be unique; {', '.join(sorted({n for n in names if names.count(n) > 1}))} "
                              "appear more than once in the config file")

    def _check_security(self) -> None:
        from .auth import check_origin_list  # noqa: PLC0415 (these checks live with the code that uses them)
        from .ice_servers import parse_ice_server  # noqa: PLC0415

        if self.token is not None and not self.token.strip():
            raise ConfigError("token must not be empty; give a long random string, e.g. from "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if self.token is not None and self.token_file is not None:
            raise ConfigError("give either token (--token, HAR_STREAM_TOKEN) or token_file (--token-file, "
                              "HAR_STREAM_TOKEN_FILE), not both")
        if self.auth_max_failures < 1:
            raise ConfigError(f"auth_max_failures must be at least 1 (got {self.auth_max_failures})")
        check_origin_list(self.cors_origins)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("give both --tls-cert and --tls-key (a PEM certificate and its private key), or "
                              "neither")
        for text in self.ice_servers:
            parse_ice_server(text)
        from .database import DatabaseSettings  # here: database.py imports nothing of the config
        DatabaseSettings.parse(self.database)  # a bad --database fails before anything starts
        if not 0 < self.lease_renew_s < self.lease_ttl_s:
            raise ConfigError(f"lease_renew_s ({self.lease_renew_s}) must be positive and below lease_ttl_s "
                              f"({self.lease_ttl_s}): a lease must be renewed before it expires")

    @property
    def data_path(self) -> Path:
        """Where jobs live: ``data_dir``, else the XDG data folder."""
        if self.data_dir is not None:
            return self.data_dir.resolve()
        base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return (Path(base) / "har-stream").resolve()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


FIELDS: Mapping[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(ServerConfig)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, value: Any, origin: str) -> Any:
    """``value`` (a string from the environment, or a TOML/CLI value) as the type of field ``name``."""
    kind = str(FIELDS[name].type)

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{origin}: {name} must be {expected}, got {value!r}; correct it")

    if value is None:
        if "None" in kind:
            return None
        raise fail("set")
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail("true or false")
    if kind.startswith("int"):
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, float) and not value.is_integer():
            raise fail("an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise fail("an integer") from None
    if kind.startswith("float"):
        if isinstance(value, bool):
            raise fail("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if kind.startswith("tuple[str"):  # a TOML list, or one comma-separated string (environment, CLI)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise fail("a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    if kind.startswith("Path"):
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise fail("a path")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise fail("a string")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file (flat keys named like the fields, or under a ``[server]`` table)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing TOML file to --config") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} could not be read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML ({err}); fix the line it names") from None
    if isinstance(data.get("server"), dict):
        data = {**{k: v for k, v in data.items() if k != "server"}, **data["server"]}
    out: dict[str, Any] = {}
    if "backend" in data:  # the [backend] table (har_stream/backends/base.py)
        out["backend"] = parse_backend_table(data.pop("backend"), f"config file {path}")
    cameras = data.pop("cameras", None)
    if cameras is not None:
        if not isinstance(cameras, list):
            raise ConfigError(f"config file {path}: cameras must be [[cameras]] tables, each with name and url")
        out["cameras"] = tuple(parse_camera(c, f"config file {path}, camera {i + 1}") for i, c in enumerate(cameras))
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"config file {path}: unknown setting {key!r}; known: {', '.join(FIELDS)}")
        out[name] = _convert(name, value, f"config file {path}")
    paths = ("web_dir", "home", "manifest", "data_dir", "token_file", "tls_cert", "tls_key")
    if out.keys() & set(paths):  # relative paths are relative to the file
        for name in paths:
            if out.get(name) is not None and not out[name].is_absolute():
                out[name] = (Path(path).parent / out[name]).resolve()
    return out


def load_config(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                config_file: Path | None = None) -> ServerConfig:
    """Resolve the settings: CLI values (None = not given) > environment > config file > defaults.

    The config file is ``config_file`` (``--config``), else ``$HAR_STREAM_CONFIG``, else none.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or (Path(env[CONFIG_ENV]).expanduser() if env.get(CONFIG_ENV) else None)
    if path is not None:
        values.update(read_config_file(path))
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is not None and raw.strip() != "":
            values[name] = _convert(name, raw.strip(), f"environment variable {var}")
    cli = dict(cli or {})
    backend_cli = {name: cli.pop(name, None) for name in ("backend", "ray_address")}
    values["backend"] = with_overrides(values.get("backend", BackendConfig()), backend_cli, env)
    for name, value in cli.items():
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
    return ServerConfig(**values)
