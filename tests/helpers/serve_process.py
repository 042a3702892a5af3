"""``har-stream serve`` as a real subprocess, for tests of what survives a stop: SIGTERM, kill -9, a restart
on the same ``--data-dir``.

    with ServeProcess(cli_env, ["--model", str(ckpt), "--data-dir", str(data)]) as server:
        await server.wait_ready(session)          # its default model is loaded
        server.url                                 # http://127.0.0.1:<the port it bound (--port 0)>
        server.kill9()                             # SIGKILL: no cleanup at all
        code, took = server.stop(signal.SIGTERM)   # exit code and seconds from the signal to the exit

Its stderr (the log) is read by a thread into ``log`` (so the pipe never fills) and the port is taken from the
"serving on" line. On exit a process still running is killed and reaped.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import aiohttp

from tests.helpers.clips import REPO

SERVING = re.compile(r"serving on https?://127\.0\.0\.1:(\d+)")


def har_stream_command() -> list[str]:
    """The venv's ``har-stream`` console script (what users run), else the module."""
    script = Path(sys.executable).parent / "har-stream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "har_stream.cli"]


class ServeProcess:
    def __init__(self, env: dict[str, str], args: Sequence[str]) -> None:
        self.env = env
        self.args = list(args)
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.port: int | None = None
        self._reader: threading.Thread | None = None
        self._bound = threading.Event()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not said where it listens yet")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def command(self) -> list[str]:
        """The program before ``serve`` (a subclass may run a patched CLI)."""
        return har_stream_command()

    def start(self) -> ServeProcess:
        self.process = subprocess.Popen(
            [*self.command(), "serve", "--host", "127.0.0.1", "--port", "0", *self.args], env=self.env,
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, name="serve-log", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if self.port is None and (found := SERVING.search(line)):
                self.port = int(found.group(1))
                self._bound.set()

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 90) -> None:
        """Until the server listens and its default model is ready."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited early:\n{self.log}"
            if self.port is not None:
                try:
                    async with session.get(f"{self.url}/api/models") as response:
                        body = await response.json()
                        state = next(m for m in body["models"] if m["name"] == body["default"])["status"]
                        if state == "ready":
                            return
                        assert state != "error", f"the default model failed to load:\n{self.log}"
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the server did not get ready:\n{self.log}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self._join_reader()

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> tuple[int | None, float]:
        """Send ``sig``; (exit code, seconds until the exit), code None if it outlived ``timeout``."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(sig)
        while self.process.poll() is None and time.monotonic() - sent < timeout:
            await asyncio.sleep(0.02)
        took = time.monotonic() - sent
        code = self.process.poll()
        if code is not None:
            self._join_reader()
        return code, took

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._join_reader()
