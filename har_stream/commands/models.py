"""``har-stream models check NAME VIDEO``: show that the engine feeds a model what its reference would.

Runs the clip through the engine (its source, sampler and preparer) and through the model's reference
transform (torchvision's weights preset, CLIP's transformers processor, a checkpoint's training pipeline) on
the same frames, then prints the largest input and logit differences. Exit status 1 when they are beyond the
bounds (mean ≤ 1 and 99th percentile ≤ 3 grey levels; logits within float rounding).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from ..models.base import VideoModel
    from ..parity import ParityReport


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("models", help="check a model's input against its reference implementation",
                            description="Model tools. `check` compares the engine's input and logits with the "
                                        "model's reference transform on your own clip and weights.")
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("check", help="engine vs reference input and logits on a clip",
                           description=__doc__.split("\n\n")[1])
    p.add_argument("model", help="a registry name (s3d, r2plus1d-18, …, clip, cnn-lstm) or a CNN-LSTM checkpoint")
    p.add_argument("video", type=Path, help="a video file")
    p.add_argument("--windows", type=int, default=2, help="windows to compare (default: 2)")
    p.add_argument("--stride", type=int, default=None, help="frames between windows (default: the window length)")
    p.add_argument("--random-weights", action="store_true",
                   help="a torchvision model with seeded random weights instead of the cached ones (checks the "
                        "input path without downloading anything)")
    p.add_argument("--clip-model", type=Path, default=None, metavar="DIR",
                   help="a local CLIP directory (default: the cached openai/clip-vit-base-patch32)")
    p.add_argument("--labels", default=None, help="label set for CLIP (default: kinetics400)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="default: cpu")
    p.add_argument("--home", type=Path, default=None,
                   help="cache folder (default: $HAR_STREAM_HOME or ~/.cache/har-stream)")
    p.set_defaults(func=_check)


def _load(args: argparse.Namespace) -> VideoModel:
    from ..labels import load_label_set
    from ..models.base import pick_device
    from ..models.registry import ClipSource, load_model
    from ..models.torchvision_video import TORCHVISION_MODELS, untrained_torchvision_video
    from ..weights import WeightStore

    device = pick_device(args.device)
    if args.random_weights:
        if args.model not in TORCHVISION_MODELS:
            raise ConfigError(f"--random-weights is for the torchvision models ({', '.join(TORCHVISION_MODELS)}); "
                              f"{args.model} needs its own weights or checkpoint")
        return untrained_torchvision_video(args.model, device)
    labels = load_label_set(args.labels) if args.labels else None
    return load_model(args.model, device=device, store=WeightStore(home=args.home), labels=labels,
                      clip=ClipSource(directory=args.clip_model))


def _print(report: ParityReport, video: Path, weights: str) -> None:
    from ..parity import INPUT_MEAN_BOUND, INPUT_P99_BOUND, LOGIT_TOLERANCE

    d = report.input
    w, h = report.frame_size
    print(f"model:      {report.model} ({weights})")
    print(f"reference:  {report.reference}")
    print(f"resampling: {report.resampling}")
    print(f"clip:       {video} ({w}x{h}), {report.frames} frames compared")
    print(f"input:      |engine - reference| mean {d.mean:.3f}, p99 {d.p99:.3f}, max {d.max:.3f} grey levels "
          f"(bound: mean <= {INPUT_MEAN_BOUND:g}, p99 <= {INPUT_P99_BOUND:g})")
    for win in report.windows:
        agree = "same" if win.top1_engine == win.top1_reference else f"reference {win.top1_reference!r}"
        print(f"window {win.start:6.2f} s: input max {win.input.max:.3f}, logits max |diff| {win.logit_max_diff:.2e} "
              f"(spread {win.logit_spread:.3g}), top-1 {win.top1_engine!r} ({agree})")
    verdict = "OK" if report.ok else "MISMATCH"
    print(f"parity:     {verdict} (logit tolerance {LOGIT_TOLERANCE:g} x max(1, spread); "
          f"top-1 agrees in {report.top1_agree} of {len(report.windows)} windows)")


def _check(args: argparse.Namespace) -> int:
    if not args.video.is_file():
        raise InputError(f"no such file: {args.video}; give a video file")
    from ..parity import check_model

    model = _load(args)
    report = check_model(model, args.video, windows=args.windows, stride=args.stride)
    sha = model.info.weights_sha256
    weights = "random weights, seed 0" if args.random_weights else (f"weights sha256 {sha[:12]}" if sha else "weights")
    _print(report, args.video, weights)
    return 0 if report.ok else 1
