"""A real MQTT broker for tests: Mosquitto (Debian package ``mosquitto``) on 127.0.0.1, one process per test.

Persistence is on, in the test's folder, so a broker stopped with SIGTERM and started again keeps its
persistent sessions: a subscriber that connected with ``clean_session=False`` gets the QoS 1 messages
published while it was away, which lets a test show delivery across a broker outage without races.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.webhook_receiver import free_port


def mosquitto_or_skip() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if path is None:
        pytest.skip("the mosquitto MQTT broker is not installed (apt-get install -y mosquitto)")
    return path


class MosquittoBroker:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.binary = mosquitto_or_skip()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.config = self.folder / "mosquitto.conf"
        # Run as root (CI is), Mosquitto would switch to its own user, which cannot write the test's folder.
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {self.folder}/\nuser root\n")
        self.log = self.folder / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> MosquittoBroker:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self._proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistent sessions and exits."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
