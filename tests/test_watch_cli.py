"""``har-stream watch`` through the real CLI, in a subprocess, on a real RTSP camera (GStreamer) and real HTTP.

Ctrl-C is a real SIGINT; the camera is really killed and restarted. Labels come from the tiny CNN-LSTM
trained in the test run, on a camera looping a square that moves left.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.clips import run_cli
from tests.helpers.http_server import StaticServer
from tests.helpers.rtsp_server import LEFT_PASS_UNTRAINED_FRAMES, RtspServer, clean_window, motion_loop

FPS = 15.0
WAIT = 90.0  # the most any awaited output may take on a busy machine (model load included)
PASSWORD = "hunter2-Secret"
FAST = ("--retry-initial", "0.2", "--retry-max", "1", "--stall-timeout", "2", "--timeout", "3")
LABEL_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d  t=\s*(?P<t>[\d.]+)s  (?P<clip>clip|    ) (?P<label>.+?)\s+"
                        r"(?P<conf>[01]\.\d\d)  latency\s+(?P<latency>\d+) ms(?P<changed>  » .+)?$")


class Watch:
    """A running ``har-stream watch``; its stdout lines are collected by a reader thread as they come."""

    def __init__(self, url: str, checkpoint: Path, env: dict[str, str], *extra: str) -> None:
        command = [sys.executable, "-m", "har_stream.cli", "watch", url, "--model", str(checkpoint),
                   "--clip-threshold", "0", "--stride", "4", *FAST, *extra]
        self.proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="watch-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        """Wait until ``predicate(lines)`` holds; fails with the output so far if it never does."""
        deadline = time.monotonic() + WAIT
        with self._cond:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    pytest.fail(f"watch never printed {what}; stdout:\n" + "\n".join(self.lines)
                                + f"\nstderr:\n{self.stderr()}")
                self._cond.wait(min(left, 0.5))
            return list(self.lines)

    def interrupt(self) -> int:
        """Ctrl-C, then the exit code."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=WAIT)
        self._reader.join(timeout=10)
        return code

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def watches() -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: object) -> Watch:
        started.append(Watch(*args))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for watch in started:
        watch.stop()


@pytest.fixture(scope="module")
def left_frames():  # type: ignore[no-untyped-def]
    return motion_loop("moving left")


def labels_of(lines: list[str]) -> list[re.Match[str]]:
    return [m for line in lines if (m := LABEL_LINE.match(line))]


def test_watch_prints_states_and_right_labels_until_ctrl_c(tiny_checkpoint: Path, cli_env: dict[str, str],
                                                          left_frames, watches) -> None:  # type: ignore[no-untyped-def]
    with RtspServer.from_frames(left_frames, fps=FPS, credentials=("admin", PASSWORD)) as camera:
        watch = watches(camera.url, tiny_checkpoint, cli_env)
        watch.wait_for(lambda lines: len(labels_of(lines)) >= 16, "16 label lines")
        code = watch.interrupt()
    out, err = "\n".join(watch.lines), watch.stderr()
    assert code == 0, f"exit {code}; stderr:\n{err}"
    assert PASSWORD not in out + err and "admin:" not in out + err
    shown = f"rtsp://***@127.0.0.1:{camera.port}/cam"
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d  \[connecting\] {re.escape(shown)}", watch.lines[0]), watch.lines[0]
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d  \[live\] {re.escape(shown)} 160x120 h264 15 fps", watch.lines[1]), \
        watch.lines[1]
    assert watch.lines[-1].endswith("[stopped]"), watch.lines[-1]
    labels = labels_of(watch.lines)
    counts = Counter(m["label"] for m in labels)
    # Windows across the loop's jump back may read otherwise: the square leaps back right, and a model trained
    # on this machine may call that "moving right". Every window within one pass must be right.
    assert counts.most_common(1)[0][0] == "moving left" and counts["moving left"] >= 0.5 * len(labels), counts
    window_s = 16 / FPS  # the tiny model's window
    clean = Counter(m["label"] for m in labels if clean_window(float(m["t"]) - window_s, float(m["t"]),
                                                                 skip=LEFT_PASS_UNTRAINED_FRAMES))
    assert clean.total() >= 4 and clean["moving left"] >= 0.9 * clean.total(), clean
    assert labels[0]["changed"], labels[0].string  # the first smoothed label is a change, and marked
    assert all(not m["clip"].strip() for m in labels)  # --clip-threshold 0: the model only
    assert "Traceback" not in err and "interrupted" not in err, err


def test_watch_json_reports_the_drop_the_backoff_and_the_return(tiny_checkpoint: Path, cli_env: dict[str, str],
                                                               left_frames, watches) -> None:  # type: ignore[no-untyped-def]
    def parsed(lines: list[str]) -> list[dict]:
        return [json.loads(line) for line in lines]

    def statuses(lines: list[str], **match: object) -> list[dict]:
        return [d for d in parsed(lines) if d["type"] == "status" and all(d.get(k) == v for k, v in match.items())]

    def labels(lines: list[str]) -> list[dict]:
        return [d for d in parsed(lines) if d["type"] == "label"]

    with RtspServer.from_frames(left_frames, fps=FPS) as camera:
        watch = watches(camera.url, tiny_checkpoint, cli_env, "--json", "--name", "door")
        before = labels(watch.wait_for(lambda lines: len(labels(lines)) >= 16, "16 labels"))
        camera.kill()
        watch.wait_for(lambda lines: any(d["attempt"] >= 2 and d["retry_in"] for d in statuses(lines)),
                       "a second retry")
        camera.start()
        lines = watch.wait_for(lambda lines: statuses(lines, state="live", reconnects=1), "live again")
        after = len(lines)
        watch.wait_for(lambda lines: len(labels(lines[after:])) >= 3, "labels after the reconnect")
        code = watch.interrupt()
    assert code == 0, watch.stderr()
    states = [d["state"] for d in statuses(watch.lines)]
    assert states[:2] == ["connecting", "live"] and states[-1] == "stopped", states
    retries = [d for d in statuses(watch.lines) if d["retry_in"] is not None]
    assert [d["attempt"] for d in retries[:2]] == [1, 2] and all(0 < d["retry_in"] <= 1.0 for d in retries)
    assert all(d["error"] and d["name"] == "door" for d in retries)
    # the first connection: clip frame 0 at t = 0
    clean = [d for d in before if clean_window(*d["window"], skip=LEFT_PASS_UNTRAINED_FRAMES)]
    assert len(clean) >= 4 and sum(d["label"] == "moving left" for d in clean) >= 0.8 * len(clean), clean
    first = labels(watch.lines)[0]
    assert first["stream"] == "door" and {"t", "window", "label", "confidence", "top5", "smoothed_label",
                                          "latency_ms", "time", "changed"} <= set(first)


def test_watch_stops_with_the_errors_exit_code_when_the_url_is_not_video(
        tiny_checkpoint: Path, cli_env: dict[str, str], http_server: StaticServer) -> None:
    url = http_server.serve_bytes("cam.mp4", b"<html>not a video</html>\n")
    proc = run_cli("watch", url, "--model", str(tiny_checkpoint), "--clip-threshold", "0", *FAST, env=cli_env,
                   timeout=WAIT)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"har-stream: error: {url} did not return a video FFmpeg can "
                                                   "read ("), proc.stderr
    assert proc.stdout.splitlines()[-1].split("  ", 1)[1].startswith("[failed] "), proc.stdout


@pytest.mark.parametrize("args, code, words", [
    (("ftp://cam/x",), 3, "unsupported URL scheme 'ftp'"),
    (("/no/such/clip.mp4",), 3, "is not a stream URL"),
    (("rtsp://cam/x", "--retry-initial", "2", "--retry-max", "1"), 2, "--retry-max (1 s) must be at least"),
    (("rtsp://cam/x", "--stall-timeout", "0"), 2, "--stall-timeout must be a positive number"),
    (("rtsp://cam/x", "--stride", "0"), 2, "--stride must be at least 1"),
])
def test_bad_input_is_one_line_before_any_model_loads(cli_env: dict[str, str], args: tuple[str, ...], code: int,
                                                      words: str) -> None:
    proc = run_cli("watch", *args, "--model", "no-such-model", env=cli_env, timeout=60)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("har-stream: error: ") and words in lines[0], proc.stderr
