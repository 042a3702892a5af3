"""Settings resolve CLI > environment > config file > defaults, and every bad value is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from har_stream.errors import ConfigError, ModelError
from server.config import ServerConfig, load_config
from tests.helpers.clips import run_cli


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config({}, env={})
    assert config == ServerConfig()
    assert (config.host, config.port, config.model, config.device, config.max_peers, config.stride) == (
        "127.0.0.1", 8080, "s3d", "auto", 16, 8)
    assert config.clip_threshold == 0.4 and config.peer_idle_timeout_s == 10.0 and not config.ice_loopback
    assert config.url == "http://127.0.0.1:8080"


def test_cli_beats_env_beats_file_beats_defaults(tmp_path: Path) -> None:
    file = write(tmp_path / "serve.toml", 'host = "0.0.0.0"\nport = 9000\nmodel = "r3d-18"\nmax_peers = 4\n'
                                          'stride = 2\nclip_threshold = 0.2\n')
    env = {"HAR_STREAM_PORT": "9100", "HAR_STREAM_MODEL": "mc3-18", "HAR_STREAM_MAX_PEERS": "6"}
    cli = {"port": 9200, "host": None, "model": None, "max_peers": None}
    config = load_config(cli, env=env, config_file=file)
    assert config.port == 9200  # CLI
    assert (config.model, config.max_peers) == ("mc3-18", 6)  # environment over file
    assert (config.host, config.stride, config.clip_threshold) == ("0.0.0.0", 2, 0.2)  # file over defaults
    assert config.device == "auto"  # default


def test_config_file_from_the_environment_with_a_server_table(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", '[server]\nport = 7000\nice-loopback = true\nweb_dir = "site"\n')
    config = load_config({}, env={"HAR_STREAM_CONFIG": str(file), "HAR_STREAM_DEVICE": "cpu"})
    assert (config.port, config.ice_loopback, config.device) == (7000, True, "cpu")
    assert config.web_dir == tmp_path / "site"  # relative to the file, not the working directory


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("on", True), ("0", False), ("no", False)])
def test_ice_loopback_from_the_environment(raw: str, expected: bool) -> None:
    assert load_config({}, env={"HAR_STREAM_ICE_LOOPBACK": raw}).ice_loopback is expected


@pytest.mark.parametrize("env, message", [
    ({"HAR_STREAM_PORT": "eighty"}, "environment variable HAR_STREAM_PORT: port must be an integer, got 'eighty'"),
    ({"HAR_STREAM_PORT": "70000"}, "port must be between 0 and 65535"),
    ({"HAR_STREAM_MAX_PEERS": "0"}, "max_peers must be at least 1"),
    ({"HAR_STREAM_ICE_LOOPBACK": "maybe"}, "ice_loopback must be true or false"),
    ({"HAR_STREAM_DEVICE": "tpu"}, "device must be one of auto, cpu, cuda"),
    ({"HAR_STREAM_CLIP_THRESHOLD": "1.5"}, "clip_threshold must be between 0 and 1"),
    ({"HAR_STREAM_PRECISION": "int8"}, "precision must be one of auto, fp32, bf16, fp16"),
])
def test_bad_environment_values_name_the_variable_or_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config({}, env=env)


def test_precision_from_the_environment_reaches_the_model_workers() -> None:
    from server.models_service import ModelService

    config = load_config({}, env={"HAR_STREAM_PRECISION": "bf16", "HAR_STREAM_MODEL": "r3d-18"})
    assert config.precision == "bf16"
    assert ModelService(config).batch.precision == "bf16"


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'prot'; known: host, port"):
        load_config({}, env={}, config_file=write(tmp_path / "a.toml", "prot = 1\n"))
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config({}, env={}, config_file=write(tmp_path / "b.toml", "port = = 1\n"))
    with pytest.raises(ConfigError, match="port must be an integer, got 80.5"):
        load_config({}, env={}, config_file=write(tmp_path / "c.toml", "port = 80.5\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config({}, env={}, config_file=tmp_path / "missing.toml")


def test_cli_serve_rejects_a_bad_model_in_one_line_before_serving(cli_env: dict[str, str]) -> None:
    result = run_cli("serve", "--model", "no-such-model", "--port", "0", env=cli_env, timeout=60)
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip().splitlines() == [
        "har-stream: error: unknown model 'no-such-model'; choose one of cnn-lstm, s3d, r2plus1d-18, r3d-18, mc3-18, "
        "mvit-v2-s, swin3d-t, clip or pass a CNN-LSTM checkpoint file"]


def test_create_app_refuses_a_missing_checkpoint_or_device(tmp_path: Path) -> None:
    from server.app import create_app

    with pytest.raises(ModelError, match="no such checkpoint file"):
        create_app(ServerConfig(model=str(tmp_path / "missing.pt"), home=tmp_path, offline=True))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            create_app(ServerConfig(device="cuda", home=tmp_path, offline=True))


def test_cameras_webhooks_and_data_settings_from_a_config_file(tmp_path: Path) -> None:
    file = write(tmp_path / "serve.toml", '''
data_dir = "data"
webhooks = ["http://hooks.example/a", "https://hooks.example/b"]
mqtt_url = "mqtt://broker.example:1884/site1"
event_min_s = 2.5

[[cameras]]
name = "door"
url = "rtsp://user:pw@10.0.0.5/stream1"
label_filter = ["falling"]
stride = 4

[[cameras]]
name = "yard"
url = "https://example.com/live.m3u8"
''')
    config = load_config({}, env={}, config_file=file)
    assert config.data_path == (tmp_path / "data").resolve()
    assert config.webhooks == ("http://hooks.example/a", "https://hooks.example/b") and config.event_min_s == 2.5
    assert [c.name for c in config.cameras] == ["door", "yard"]
    door = config.cameras[0]
    assert (door.stride, door.label_filter, door.safe_url) == (4, ("falling",), "rtsp://***@10.0.0.5/stream1")
    env = load_config({}, env={"HAR_STREAM_WEBHOOKS": "http://a.example/h, http://b.example/h",
                               "HAR_STREAM_DATA": str(tmp_path / "d2")})
    assert env.webhooks == ("http://a.example/h", "http://b.example/h") and env.data_path == tmp_path / "d2"


@pytest.mark.parametrize("text, message", [
    ('[[cameras]]\nname = "a"\n', "camera url is missing"),
    ('[[cameras]]\nname = "a"\nurl = "rtsp://x/y"\n[[cameras]]\nname = "a"\nurl = "rtsp://x/z"\n', "unique"),
    ('[[cameras]]\nname = "a"\nurl = "rtsp://x/y"\nfps = 0\n', "fps must be between"),
    ('cameras = "rtsp://x"\n', "[[cameras]] tables"),
    ('webhooks = [1, 2]\n', "list of strings"),
    ('max_upload_mb = 0\n', "max_upload_mb must be positive"),
    ('reconnect_initial_s = 5\nreconnect_max_s = 1\n', "at least reconnect_initial_s"),
])
def test_bad_camera_and_job_settings_name_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config({}, env={}, config_file=write(tmp_path / "bad.toml", text))
