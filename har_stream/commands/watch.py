"""``har-stream watch URL``: the live labels of an RTSP camera or a live stream URL, in the terminal.

One line per window's label (wall time, stream time, label, confidence, latency; a change of the smoothed
label is marked ``»`` and, on a terminal, in bold) and one line per change of the connection (connecting,
live, reconnecting with the error and the next retry's delay, stopped, failed). The stream reconnects by
itself (``ReconnectingSource``); the command runs until Ctrl-C or SIGTERM (exit 0) or until the stream fails
for good (the error's exit code). ``--json`` prints the same as JSON lines.

The engine (torch, PyAV) is imported only when the command runs, so ``har-stream --help`` stays instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError
from .analyse import add_model_options, compiled_models

if TYPE_CHECKING:
    import numpy as np

    from ..engine import LoadedModels
    from ..pipeline import StreamSettings
    from ..sources.reconnecting import ReconnectPolicy, SourceStatus
    from ..types import LabelEvent


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="print the live labels of an RTSP camera or live stream URL",
                       description="Follow a live stream (rtsp://, rtsps://, rtmp://, srt://, http(s) media or HLS, "
                                   "or a page yt-dlp resolves) and print each window's label as it happens, and "
                                   "every change of the connection. The stream reconnects with backoff when it "
                                   "drops. Ctrl-C stops it.")
    p.add_argument("url", help="stream URL (credentials in it are never printed)")
    add_model_options(p)
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the model's own)")
    p.add_argument("--stride", type=int, default=8, help="frames between windows (default: 8)")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON lines (label and status events) instead of text")
    p.add_argument("--name", default=None, help="the stream's name in the output (default: the URL's host)")
    p.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp", help="RTSP transport (default: tcp)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="network timeout for connecting and for each read (default: 10)")
    p.add_argument("--first-frame-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="reconnect when no frame arrives this long after connecting (default: 15)")
    p.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="reconnect when the stream sends no frame for this long (default: 10)")
    p.add_argument("--retry-initial", type=float, default=1.0, metavar="SECONDS",
                   help="first delay before reconnecting; doubles on each failure in a row (default: 1)")
    p.add_argument("--retry-max", type=float, default=30.0, metavar="SECONDS",
                   help="longest delay between reconnects (default: 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sources.reconnecting import ReconnectPolicy, check_live_url

    check_live_url(args.url)  # before torch and the models load: a bad URL is one line and exit 3 at once
    for option, value in (("--timeout", args.timeout), ("--first-frame-timeout", args.first_frame_timeout),
                          ("--stall-timeout", args.stall_timeout), ("--retry-initial", args.retry_initial),
                          ("--retry-max", args.retry_max)):
        if not 0 < value < float("inf"):
            raise ConfigError(f"{option} must be a positive number of seconds (got {value:g})")
    if args.retry_max < args.retry_initial:
        raise ConfigError(f"--retry-max ({args.retry_max:g} s) must be at least --retry-initial "
                          f"({args.retry_initial:g} s)")
    if args.window is not None and args.window < 1:
        raise ConfigError(f"--window must be at least 1 (got {args.window})")
    policy = ReconnectPolicy(initial_delay=args.retry_initial, max_delay=args.retry_max,
                             first_frame_timeout=args.first_frame_timeout, stall_timeout=args.stall_timeout,
                             open_timeout=args.timeout, read_timeout=args.timeout)
    from ..engine import ModelChoice, load_models
    from ..pipeline import StreamSettings

    StreamSettings(window=args.window or 1, stride=args.stride, fps=args.fps)  # the option checks, before loading
    choice = ModelChoice(model=args.model, labels=args.labels, clip_threshold=args.clip_threshold,
                         clip_model=args.clip_model, prompt=args.prompt, device=args.device, runtime=args.runtime)
    if not args.verbose:  # the status lines say it already; the log would repeat them on stderr
        logging.getLogger("har_stream.sources.reconnecting").setLevel(logging.ERROR)
    models = compiled_models(load_models(choice), args.compile)
    for notice in models.notices:
        print(f"har-stream: note: {notice}", file=sys.stderr)
    settings = StreamSettings(window=args.window or models.primary.info.frames, stride=args.stride, fps=args.fps,
                              live=True, window_queue=1, fallback_queue=1, max_in_flight=2)
    printer = Printer(sys.stdout, as_json=args.json,
                      color=not args.json and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    return asyncio.run(watch(args.url, models, settings, policy, printer, name=args.name,
                             clip_threshold=choice.clip_threshold, precision=args.precision,
                             options={"rtsp_transport": args.rtsp_transport}))


async def watch(url: str, models: LoadedModels, settings: StreamSettings, policy: ReconnectPolicy,
                printer: Printer, *, name: str | None = None, clip_threshold: float = 0.0,
                precision: str = "auto", options: dict[str, str] | None = None) -> int:
    """Run until SIGINT/SIGTERM (returns 0), the media ends (0), or the stream fails (raises its error)."""
    from ..fallback import ClipFallback
    from ..pipeline import StreamPipeline
    from ..preprocess import FramePreparer
    from ..sources.reconnecting import ReconnectingSource
    from ..worker import BatchSettings, ModelWorker

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            worker = await stack.enter_async_context(
                ModelWorker(models.primary, BatchSettings(max_batch=8, max_wait_ms=2.0, precision=precision)))
            fallback = None
            if models.fallback is not None:
                clip_worker = await stack.enter_async_context(
                    ModelWorker(models.fallback, BatchSettings(max_batch=8, precision=precision),
                                prepare=FramePreparer.for_model(models.fallback.info)))
                fallback = ClipFallback(clip_worker, clip_threshold, cache_frames=4 * settings.window)
            source = await stack.enter_async_context(
                ReconnectingSource(url, name=name, sample_fps=settings.fps or worker.info.fps,
                                   prepare=worker.preparer(), policy=policy, options=options,
                                   on_status=printer.status))
            pipeline = StreamPipeline(source.name, source, worker, settings, printer.label, fallback)
            running = asyncio.create_task(pipeline.run(), name="watch-pipeline")
            stopping = asyncio.create_task(stop.wait(), name="watch-stop")
            try:
                await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (running, stopping):
                    task.cancel()
                await asyncio.gather(running, stopping, return_exceptions=True)
            if not running.cancelled():
                running.result()  # the stream failed for good: its error (exit code) goes to the CLI
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


class Printer:
    """Writes label and status lines (text or JSON lines), flushed one by one so pipes see them at once."""

    def __init__(self, out: TextIO, *, as_json: bool = False, color: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self.color = color
        self._smoothed: str | None = None

    def label(self, event: LabelEvent, probs: np.ndarray) -> None:
        now = time.time()
        changed = event.refines is None and event.smoothed_label != self._smoothed
        if event.refines is None:
            self._smoothed = event.smoothed_label
        if self.as_json:
            self._write(json.dumps({**event.to_json(), "time": round(now, 3), "changed": changed}))
            return
        p = event.prediction
        head = "clip" if event.refines is not None else ""
        line = (f"{_clock(now)}  t={event.t:8.2f}s  {head:4} {p.label:<24} {p.confidence:5.2f}  "
                f"latency {event.latency_ms:5.0f} ms")
        if changed:
            line += f"  » {event.smoothed_label}"
            line = self._ansi(line, "1")
        self._write(line)

    def status(self, status: SourceStatus) -> None:
        if self.as_json:
            self._write(json.dumps({"type": "status", **status.to_json()}))
            return
        if status.state == "reconnecting" and status.retry_in is None:
            return  # an attempt starting: its outcome gets a line
        self._write(f"{_clock(time.time())}  [{status.state}] {self._detail(status)}".rstrip())

    def _detail(self, status: SourceStatus) -> str:
        if status.state == "connecting":
            return status.url
        if status.state == "live":
            info = status.info
            video = "" if info is None else f"{info.width}x{info.height} {info.codec} {info.fps:g} fps"
            again = f" (reconnect {status.reconnects})" if status.reconnects else ""
            return self._ansi(f"{status.url} {video}{again}", "32")
        if status.state == "reconnecting":
            return self._ansi(f"{status.error}; retry {status.attempt} in {status.retry_in:.1f} s", "33")
        if status.state == "failed":
            return self._ansi(status.error or "", "31")
        return ""

    def _ansi(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _write(self, line: str) -> None:
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:  # `har-stream watch ... | head`: the reader left
            pass


def _clock(now: float) -> str:
    t = time.localtime(now)
    return time.strftime("%H:%M:%S", t) + f".{int((now % 1) * 10)}"
