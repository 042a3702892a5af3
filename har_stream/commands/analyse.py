"""``har-stream analyse INPUT``: every action in a video file or URL, as a timeline, JSON, CSV or video.

The engine (torch, PyAV) is imported only when the command runs, so ``har-stream --help`` and the light
sub-commands start instantly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import ConfigError, InputError
from ..labels import DEFAULT_PROMPT

if TYPE_CHECKING:
    from ..analyse import Progress
    from ..engine import LoadedModels, ModelChoice
    from ..pipeline import StreamSettings
    from ..types import AnalysisResult


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads models (analyse, serve, watch, bench)."""
    p.add_argument("--model", default="s3d",
                   help="model name (s3d, r2plus1d-18, r3d-18, mc3-18, mvit-v2-s, swin3d-t, cnn-lstm, clip) "
                        "or a CNN-LSTM checkpoint file (default: s3d)")
    p.add_argument("--labels", default=None,
                   help="label set: ucf101, kinetics400, or a file with one label per line "
                        "(CLIP open vocabulary); default: the model's own")
    p.add_argument("--clip-threshold", type=float, default=0.4,
                   help="ask CLIP when the model's top-1 confidence is below this; 0 disables, 1 always "
                        "(default: 0.4)")
    p.add_argument("--clip-model", default=None, metavar="DIR",
                   help="a local CLIP directory (default: the cached openai/clip-vit-base-patch32)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="CLIP prompt template")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    add_precision_options(p)
    add_compile_option(p)


def add_compile_option(p: argparse.ArgumentParser) -> None:
    """``--compile`` (analyse, watch, bench offline/gpu; serve has its own, default from its config)."""
    p.add_argument("--compile", action="store_true",
                   help="run the model's heavy network through torch.compile (CUDA graphs on CUDA); falls back to "
                        "eager with a logged reason when compiling fails. Only for models on --runtime torch "
                        "(default: off)")


def add_precision_options(p: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--runtime``, shared with ``eval``."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="inference precision: auto = bf16 on a CPU with AVX512-BF16/AMX when the model's "
                        "labels agree with fp32 (measured once), else fp32; fp16 on CUDA")
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino", "onnxruntime"),
                   help="where the model's heavy network runs: auto = OpenVINO for the models measured faster "
                        "on it (the Kinetics 3D CNNs, the ResNet-18 CNN-LSTM) when installed, on a CPU; else "
                        "torch (default: auto)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyse", aliases=["analyze"], help="analyse a video file or URL offline",
                       description="Label every overlapping window of a video file or URL (direct media, HLS, "
                                   "or a page yt-dlp can resolve) and merge them into a timeline.")
    p.add_argument("input", help="video file path or URL")
    add_model_options(p)
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the model's own, 16 for most)")
    p.add_argument("--stride", type=int, default=8, help="frames between window starts (default: 8)")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the result as JSON")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write the segments as CSV")
    p.add_argument("--annotate", type=Path, default=None, metavar="OUT.mp4",
                   help="write the video with the current action burned in")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    p.add_argument("--hwdecode", choices=("auto", "none", "cuda"), default="none",
                   help="decode on the GPU (NVDEC, through PyAV's hardware decoding): auto = when FFmpeg and a CUDA "
                        "device allow it; cuda = ask for it, software decoding with a logged reason when it cannot "
                        "start (default: none)")
    add_backend_options(p)
    p.set_defaults(func=run)


def add_backend_options(p: argparse.ArgumentParser, default: str | None = "local") -> None:
    """``--backend`` and ``--ray-address`` (har_stream/backends/, docs/scaling.md)."""
    p.add_argument("--backend", default=default, choices=("local", "ray"),
                   help="where the models run: local = in this process; ray = a Ray Serve cluster shared with "
                        "other front ends (docs/scaling.md) (default: local)")
    p.add_argument("--ray-address", default=None, metavar="auto|ray://HOST:10001|HOST:PORT|local",
                   help="the Ray cluster for --backend ray: auto = the one `ray start` runs on this host, "
                        "local = start one in this process (default: auto)")


def check_input(spec: str) -> None:
    """Fail fast, before loading models, on what can be checked without decoding."""
    scheme = urlsplit(spec).scheme
    if len(scheme) > 1 and scheme != "file":
        return
    path = Path(spec.removeprefix("file://")).expanduser()
    if not path.exists():
        raise InputError(f"no such file: {spec}; give the path of a video file or a URL")
    if path.is_dir():
        raise InputError(f"{spec} is a directory; give the path of a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{spec} is empty (0 bytes); give a video file")


def check_outputs(args: argparse.Namespace) -> None:
    for opt in ("json", "csv", "annotate"):
        out: Path | None = getattr(args, opt)
        if out is not None and not out.parent.resolve().is_dir():
            raise ConfigError(f"--{opt} {out}: folder {out.parent} does not exist")


class ProgressBar:
    """tqdm on stderr: frames done / total and ×realtime."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.frames_total, unit="frame", file=sys.stderr, dynamic_ncols=True,
                            desc="analysing")
        self.bar.update(p.frames_decoded - self.bar.n)
        self.bar.set_postfix_str(f"{p.realtime:.1f}x realtime", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def analyse_with(models: LoadedModels, spec: str, settings: StreamSettings, clip_threshold: float,
                       progress: ProgressBar | None = None, precision: str = "auto",
                       hwdecode: str = "none") -> AnalysisResult:
    """Run one offline analysis with freshly started workers (the CLI's whole lifetime)."""
    from ..analyse import analyse
    from ..fallback import ClipFallback
    from ..preprocess import FramePreparer
    from ..worker import BatchSettings, ModelWorker

    batching = BatchSettings(max_batch=32, max_wait_ms=5.0, precision=precision)
    async with ModelWorker(models.primary, batching) as worker:
        if models.fallback is None:
            return await analyse(spec, worker, settings=settings, model_ref=models.ref, progress=progress,
                                 hwdecode=hwdecode)
        prepare = FramePreparer.for_model(models.fallback.info)
        clip_batching = BatchSettings(max_batch=8, precision=precision)
        async with ModelWorker(models.fallback, clip_batching, prepare=prepare) as clip_worker:
            fallback = ClipFallback(clip_worker, clip_threshold, cache_frames=4 * settings.window)
            return await analyse(spec, worker, settings=settings, fallback=fallback, model_ref=models.ref,
                                 progress=progress, hwdecode=hwdecode)


def compiled_models(models: LoadedModels, enabled: bool) -> LoadedModels:
    """``models`` with the primary's heavy network compiled when ``--compile`` asks (compiled.py)."""
    if not enabled:
        return models
    from dataclasses import replace

    from ..compiled import with_compile

    return replace(models, primary=with_compile(models.primary, True))


def run(args: argparse.Namespace) -> int:
    check_input(args.input)
    check_outputs(args)
    if args.fps is not None and args.fps <= 0:
        raise ConfigError(f"--fps must be positive (got {args.fps})")
    from ..backends import BackendConfig, ModelOptions, make_backend
    from ..engine import ModelChoice, load_models

    choice = ModelChoice(model=args.model, labels=args.labels, clip_threshold=args.clip_threshold,
                         clip_model=args.clip_model, prompt=args.prompt, device=args.device, runtime=args.runtime)
    backend = make_backend(BackendConfig(kind=args.backend, ray_address=args.ray_address or "auto"),
                           ModelOptions(device=args.device, runtime=args.runtime, compile=args.compile,
                                        precision=args.precision, prompt=args.prompt))
    try:
        return _run_with(args, choice, load_models(choice, backend=backend))
    finally:
        backend.close()


def _run_with(args: argparse.Namespace, choice: ModelChoice, loaded: LoadedModels) -> int:
    from ..pipeline import StreamSettings

    models = compiled_models(loaded, args.compile)
    for notice in models.notices:
        print(f"har-stream: note: {notice}", file=sys.stderr)
    window = args.window if args.window is not None else models.primary.info.frames
    settings = StreamSettings(window=window, stride=args.stride,
                              fps=args.fps)
    bar = ProgressBar(args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty()))
    try:
        precision = args.precision if args.backend == "local" else "fp32"  # a replica applies --precision
        result = asyncio.run(analyse_with(models, args.input, settings, choice.clip_threshold, bar,
                                          precision=precision, hwdecode=args.hwdecode))
    finally:
        bar.close()
    from ..export import format_timeline, terminal_width, write_csv, write_json

    print(format_timeline(result, width=terminal_width() if sys.stdout.isatty() else None,
                          color=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    if args.json:
        write_json(result, args.json)
    if args.csv:
        write_csv(result, args.csv)
    if args.annotate:
        from ..annotate import write_annotated_video

        write_annotated_video(args.input, args.annotate, result.segments, result.timeline)
        print(f"annotated video: {args.annotate}", file=sys.stderr)
    return 0
