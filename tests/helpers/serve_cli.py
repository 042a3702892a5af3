"""``har-stream serve`` started as a user starts it, for the tests of what it refuses or offers at start
(a public address without a token, TLS): wait for its "serving on" line, wait until its default model is
loaded (a stop in the middle of a load is another test's subject), then SIGTERM it and check it exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.helpers.clips import REPO

START_TIMEOUT_S = 90.0


@dataclass
class Served:
    url: str  # scheme://127.0.0.1:port, whatever address it bound
    bound: str  # the address of its "serving on" line
    lines: list[str] = field(default_factory=list)

    def get_json(self, path: str, headers: dict[str, str] | None = None,
                 context: ssl.SSLContext | None = None) -> object:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=5, context=context) as reply:
            return json.loads(reply.read())


@contextlib.contextmanager
def serve_cli(args: list[str], env: dict[str, str], *, headers: dict[str, str] | None = None,
              context: ssl.SSLContext | None = None) -> Iterator[Served]:
    command = [sys.executable, "-m", "har_stream.cli", "serve", *args]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        match = None
        while time.monotonic() < deadline and match is None:
            line = process.stdout.readline() if process.stdout else ""
            if not line:
                break
            lines.append(line)
            match = re.search(r"serving on (https?)://(\S+):(\d+)", line)
        assert match, "serve never said where it serves:\n" + "".join(lines)
        served = Served(url=f"{match.group(1)}://127.0.0.1:{match.group(3)}", bound=match.group(2), lines=lines)
        while time.monotonic() < deadline:
            models: dict = served.get_json("/api/models", headers, context)  # type: ignore[assignment]
            if next(m for m in models["models"] if m["name"] == models["default"])["status"] == "ready":
                break
            time.sleep(0.2)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        lines.append(rest or "")
    assert process.returncode == 0, "".join(lines)
