"""``har-stream weights ...`` through the installed console script, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from har_stream.errors import HashMismatchError, ModelError, WeightsError
from har_stream.weights import sha256_file
from tests.helpers.http_server import StaticServer

SCRIPT = Path(sys.executable).with_name("har-stream")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run `.venv/bin/pip install -e . --no-deps` to install the console script")
    return subprocess.run([str(SCRIPT), "weights", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli_env(tmp_path: Path, http_server: StaticServer) -> dict:
    """A manifest with ``tiny`` (served, full digest) and ``pinme`` (prefix only); a temp home."""
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(6, 2).state_dict(), http_server.root / "tiny.pt")
    torch.manual_seed(1)
    torch.save(torch.nn.Linear(6, 2).state_dict(), http_server.root / "pinme.pt")
    tiny_sha, pin_sha = sha256_file(http_server.root / "tiny.pt"), sha256_file(http_server.root / "pinme.pt")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "models": {
        "tiny": {"family": "test", "description": "tiny test checkpoint", "files": [
            {"name": "tiny.pt", "url": http_server.url("tiny.pt"), "sha256": tiny_sha, "size": None}]},
        "pinme": {"family": "test", "description": "published without a full digest", "files": [
            {"name": "pinme.pt", "url": http_server.url("pinme.pt"), "sha256": None, "size": None,
             "sha256_prefix": pin_sha[:8]}]},
    }}))
    env = {**os.environ, "HAR_STREAM_HOME": str(tmp_path / "home"), "HAR_STREAM_MANIFEST": str(manifest)}
    env.pop("HAR_STREAM_OFFLINE", None)
    return {"env": env, "home": tmp_path / "home", "tiny_sha": tiny_sha, "pin_sha": pin_sha, "tmp": tmp_path}


def test_list_pull_verify(cli_env: dict, http_server: StaticServer) -> None:
    env = cli_env["env"]
    listed = run(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "tiny" in listed.stdout and "missing" in listed.stdout
    assert "(sha256 prefix only)" in next(line for line in listed.stdout.splitlines() if line.startswith("pinme "))

    pulled = run(env, "pull", "tiny")
    assert pulled.returncode == 0, pulled.stderr
    cached = cli_env["home"] / "weights" / "tiny" / "tiny.pt"
    assert sha256_file(cached) == cli_env["tiny_sha"]
    assert http_server.count("/tiny.pt") == 1

    listed = run(env, "list")
    tiny_line = next(line for line in listed.stdout.splitlines() if line.startswith("tiny "))
    assert "cached" in tiny_line

    verified = run(env, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "ok" in next(line for line in verified.stdout.splitlines() if line.startswith("tiny "))

    with open(cached, "ab") as handle:
        handle.write(b"bit rot")
    verified = run(env, "verify")
    assert verified.returncode == HashMismatchError.exit_code
    assert "mismatch" in verified.stdout and "har-stream weights pull tiny" in verified.stderr

    assert run(env, "pull", "tiny").returncode == 0  # repairs the corrupt file
    assert sha256_file(cached) == cli_env["tiny_sha"]
    assert run(env, "verify", "tiny").returncode == 0


def test_offline_pull_fails_with_the_import_command_then_import_works(cli_env: dict, http_server: StaticServer) -> None:
    env = {**cli_env["env"], "HAR_STREAM_OFFLINE": "1"}
    pulled = run(env, "pull", "tiny")
    assert pulled.returncode == WeightsError.exit_code
    assert pulled.stderr.startswith("har-stream: error: ") and pulled.stderr.count("\n") == 1
    assert "har-stream weights import tiny" in pulled.stderr

    wrong = cli_env["tmp"] / "wrong.pt"
    wrong.write_bytes(b"something else")
    refused = run(env, "import", "tiny", str(wrong))
    assert refused.returncode == HashMismatchError.exit_code and "refused" in refused.stderr

    good = cli_env["tmp"] / "tiny-from-usb.pt"
    good.write_bytes((http_server.root / "tiny.pt").read_bytes())
    imported = run(env, "import", "tiny", str(good))
    assert imported.returncode == 0, imported.stderr
    assert cli_env["tiny_sha"] in imported.stdout
    assert run(env, "verify", "tiny").returncode == 0
    assert http_server.count() == 0


def test_prefix_only_pull_warns_pins_and_later_checks_the_full_digest(cli_env: dict, http_server: StaticServer) -> None:
    env = cli_env["env"]
    pulled = run(env, "pull", "pinme")
    assert pulled.returncode == 0, pulled.stderr
    assert f"published prefix {cli_env['pin_sha'][:8]} only" in pulled.stderr and cli_env["pin_sha"] in pulled.stderr
    assert "WARNING" in pulled.stderr and pulled.stdout.startswith("pinme/pinme.pt: ok")
    cached = cli_env["home"] / "weights" / "pinme" / "pinme.pt"
    assert sha256_file(cached) == cli_env["pin_sha"]

    again = run(env, "pull", "pinme")
    assert again.returncode == 0 and "prefix" not in again.stderr  # pinned: no new warning, no new download
    assert http_server.count("/pinme.pt") == 1

    with open(cached, "ab") as handle:
        handle.write(b"bit rot")
    verified = run(env, "verify", "pinme")
    assert verified.returncode == HashMismatchError.exit_code and cli_env["pin_sha"] in verified.stderr


def test_import_prefix_only_file_and_local_checkpoint(cli_env: dict, http_server: StaticServer) -> None:
    env = {**cli_env["env"], "HAR_STREAM_OFFLINE": "1"}
    wrong = cli_env["tmp"] / "wrong.pt"
    wrong.write_bytes(b"not the published checkpoint")
    refused = run(env, "import", "pinme", str(wrong))
    assert refused.returncode == HashMismatchError.exit_code
    assert f"published prefix {cli_env['pin_sha'][:8]}" in refused.stderr and "refused" in refused.stderr

    trusted = cli_env["tmp"] / "pinme.pt"
    trusted.write_bytes((http_server.root / "pinme.pt").read_bytes())
    imported = run(env, "import", "pinme", str(trusted))
    assert imported.returncode == 0, imported.stderr
    assert cli_env["pin_sha"] in imported.stdout and "prefix only" in imported.stdout
    assert "prefix" in imported.stderr  # the same warning as a first pull
    assert sha256_file(cli_env["home"] / "weights" / "pinme" / "pinme.pt") == cli_env["pin_sha"]
    assert http_server.count() == 0

    checkpoint = cli_env["tmp"] / "trained.pt"
    torch.save({"head": torch.zeros(3)}, checkpoint)
    local = run(env, "import", "cnn-lstm", str(checkpoint))
    assert local.returncode == 0, local.stderr
    assert "local checkpoint" in local.stdout


def test_error_exit_codes(cli_env: dict) -> None:
    env = cli_env["env"]
    unknown = run(env, "pull", "no-such-model")
    assert unknown.returncode == ModelError.exit_code and "unknown weights" in unknown.stderr
    missing = run(env, "import", "tiny", str(cli_env["tmp"] / "does-not-exist.pt"))
    assert missing.returncode == WeightsError.exit_code and "does not exist" in missing.stderr
    usage = run(env, "pull")
    assert usage.returncode == 2 and "usage" in usage.stderr
