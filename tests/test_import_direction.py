"""Imports run one way: ``server`` builds on ``har_stream``, never the reverse.

The server package adds ``serve`` and the benches' in-process server through entry points
(pyproject.toml, har_stream/plugins.py). These tests read every module of har_stream for an import of server,
run the real CLI to see that the entry points are found (with PYTHONPATH at the repository, as the other CLI
tests run it), and run a copy of har_stream alone, without site-packages, to see that what the server package
provides fails in one line while the rest of the CLI works.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.clips import REPO, run_cli


def server_imports(source: str) -> list[int]:
    """Lines of ``source`` that import ``server`` or a module of it: ``import``, ``from ... import`` (absolute)
    and ``importlib.import_module``/``__import__`` with a literal name, wherever they are (functions too)."""
    def is_server(name: str) -> bool:
        return name == "server" or name.startswith("server.")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(is_server(a.name) for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_server(node.module or ""):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and is_server(str(node.args[0].value)):
                lines.append(node.lineno)
    return lines


def test_the_check_finds_every_form_of_import() -> None:
    source = ("import server\nimport os, server.keys as k\ndef f():\n    from server.config import X\n"
              "from .server import y\nfrom har_stream import server_side\nimportlib.import_module('server.cli')\n"
              "__import__('server')\nimport_module('serverless')\n")
    assert server_imports(source) == [1, 2, 4, 7, 8]


def test_har_stream_never_imports_server() -> None:
    found = [f"{path.relative_to(REPO)}:{line}" for path in sorted((REPO / "har_stream").rglob("*.py"))
             for line in server_imports(path.read_text(encoding="utf-8"))]
    assert not found, f"har_stream imports server at {found}: provide it through an entry point (har_stream/plugins.py)"


def test_serve_and_the_bench_server_come_from_entry_points(cli_env: dict[str, str]) -> None:
    listed = run_cli("--help", env=cli_env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "serve the live web page" in listed.stdout and "not available" not in listed.stdout
    serve = run_cli("serve", "--help", env=cli_env, timeout=60)
    assert serve.returncode == 0 and "--port" in serve.stdout and "--token" in serve.stdout, serve.stderr
    wrong = run_cli("serve", "--no-such-option", env=cli_env, timeout=60)
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-option" in wrong.stderr, wrong.stderr
    code = ("from har_stream.plugins import bench_server; s = bench_server('test'); "
            "print(s.__name__, callable(s.local_server), callable(s.ice_loopback), callable(s.wire_stats))")
    found = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=120)
    assert found.stdout.split() == ["server.bench_server", "True", "True", "True"], found.stderr


@pytest.fixture
def har_stream_alone(tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """A copy of har_stream with no server package and no site-packages (``python -S``): no entry points."""
    shutil.copytree(REPO / "har_stream", tmp_path / "har_stream", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(tmp_path), HAR_STREAM_HOME=str(tmp_path / "home"), HAR_STREAM_OFFLINE="1")
    return [sys.executable, "-S", "-m", "har_stream.cli"], env, tmp_path


@pytest.mark.parametrize("args, first_words", [
    (("serve", "--port", "0"), "har-stream: error: serve: the server package provides it and is not installed"),
    (("serve", "--help"), "har-stream: error: serve: the server package provides it and is not installed"),
    (("bench", "live", "--peers", "1"), "har-stream: error: bench live starts a server in this process: the server "
                                         "package provides it"),
    (("bench", "jobs", "--peers", "1"), "har-stream: error: bench jobs starts a server in this process"),
    (("bench", "cameras"), "har-stream: error: bench cameras starts a server in this process"),
])
def test_without_the_server_package_its_commands_say_so_in_one_line(
        har_stream_alone: tuple[list[str], dict[str, str], Path], args: tuple[str, ...], first_words: str) -> None:
    command, env, cwd = har_stream_alone
    done = subprocess.run([*command, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(first_words) and "pip install -e ." in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (cwd / "server").exists()


def test_without_the_server_package_the_rest_of_the_cli_works(
        har_stream_alone: tuple[list[str], dict[str, str], Path]) -> None:
    command, env, cwd = har_stream_alone
    listed = subprocess.run([*command, "--help"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "analyse a video file" in listed.stdout and "serve" in listed.stdout and "not available" in listed.stdout
    version = subprocess.run([*command, "--version"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("har-stream "), version.stderr
    wrong = subprocess.run([*command, "analyse", "clip.mp4", "--no-such-option"], env=env, cwd=cwd,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-option" in wrong.stderr, wrong.stderr
