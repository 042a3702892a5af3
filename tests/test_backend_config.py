"""The backend setting (``[backend]`` in the config file, ``--backend``/``--ray-address``, HAR_STREAM_BACKEND) and
the one-line errors of ``--backend ray`` when the cluster cannot be reached."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from har_stream.backends.base import BackendConfig
from har_stream.errors import ConfigError
from server.config import load_config
from tests.helpers.clips import run_cli


def test_backend_table_then_environment_then_cli(tmp_path: Path) -> None:
    path = tmp_path / "har.toml"
    path.write_text('max_peers = 4\n[backend]\nkind = "ray"\nray_address = "ray://head:10001"\nmin_replicas = 2\n'
                    "max_replicas = 8\nnum_gpus = 0.5\nmax_batch_size = 16\nbatch_wait_timeout_s = 0.01\n")
    config = load_config({}, env={}, config_file=path)
    assert config.max_peers == 4
    assert config.backend == BackendConfig(kind="ray", ray_address="ray://head:10001", min_replicas=2,
                                           max_replicas=8, num_gpus=0.5, max_batch_size=16,
                                           batch_wait_timeout_s=0.01)
    env = {"HAR_STREAM_RAY_ADDRESS": "10.0.0.5:6379"}
    assert load_config({}, env=env, config_file=path).backend.ray_address == "10.0.0.5:6379"
    cli = load_config({"backend": "local", "ray_address": "auto"}, env=env, config_file=path).backend
    assert (cli.kind, cli.ray_address, cli.max_replicas) == ("local", "auto", 8)
    assert load_config({}, env={}).backend == BackendConfig()  # local, the default


@pytest.mark.parametrize("table, complaint", [
    ('kind = "spark"', "kind must be one of local, ray"),
    ("replicas = 3", "unknown [backend] setting 'replicas'"),
    ("max_batch_size = 0", "max_batch_size must be at least 1"),
    ('num_gpus = "one"', "num_gpus must be a number"),
    ("max_replicas = 2.5", "max_replicas must be a whole number"),
    ("min_replicas = 4\nmax_replicas = 2", "max_replicas must be at least 1 and at least min_replicas"),
])
def test_bad_backend_settings_are_one_line(tmp_path: Path, table: str, complaint: str) -> None:
    path = tmp_path / "har.toml"
    path.write_text(f"[backend]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load_config({}, env={}, config_file=path)
    assert complaint in str(err.value) and "\n" not in str(err.value)


def test_unreachable_ray_cluster_is_one_error_line(tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HAR_STREAM_HOME": str(tmp_path / "home"), "HAR_STREAM_OFFLINE": "1"}
    done = run_cli("analyse", str(change_clip), "--model", str(tiny_checkpoint), "--clip-threshold", "0",
                   "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", env=env, timeout=120)
    assert done.returncode == 10, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"har-stream: error: cannot reach the Ray cluster at '127.0.0.1:{port}' (Connection refused); "
                     "start one with `ray start --head` there, or fix --ray-address"], done.stderr
