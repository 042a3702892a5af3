"""``har-stream serve`` as a subprocess, as a user starts it: offline, loopback ICE, a private weights cache."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.clips import REPO

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A ``har-stream serve`` subprocess; ``url`` is its page."""

    port: int
    home: Path
    log: Path
    args: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    token: str | None = None  # sent as Authorization: Bearer by get_json (pass --token in args too)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> LiveServer:
        env = {**os.environ, "HAR_STREAM_ICE_LOOPBACK": "1", "HAR_STREAM_OFFLINE": "1",
               "HAR_STREAM_HOME": str(self.home), "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        for name in ("HAR_STREAM_HOST", "HAR_STREAM_PORT", "HAR_STREAM_MODEL", "HAR_STREAM_CONFIG"):
            env.pop(name, None)
        command = [sys.executable, "-m", "har_stream.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"har-stream serve exited with {self.process.returncode} before answering:\n"
                            f"{self.log_text()}", pytrace=False)
            try:  # /api/health answers at once; the default model loads in the background after it
                models = self.get_json("/api/models")
                if next(m for m in models["models"] if m["name"] == models["default"])["status"] == "ready":
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"har-stream serve's default model was not ready within {START_TIMEOUT_S:.0f} s:\n"
                    f"{self.log_text()}", pytrace=False)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (what Ctrl-C / docker stop send), then SIGKILL if it hangs; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"har-stream serve did not stop within {timeout:.0f} s of SIGTERM:\n{self.log_text()}",
                        pytrace=False)

    def log_text(self, limit: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-limit:] if self.log.exists() else ""

    def get_json(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with urllib.request.urlopen(urllib.request.Request(self.url + path.lstrip("/"), headers=headers),
                                    timeout=5) as reply:
            return json.loads(reply.read())
