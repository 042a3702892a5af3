"""``har-stream bench``: throughput figures with the machine they came from; comparisons run side by side."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..models.base import VideoModel


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput and latency (prints figures and the machine)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    off = bsub.add_parser("offline", help="offline analysis: the engine vs a naive re-encode-every-window app")
    off.add_argument("--model", default=None,
                     help="a CNN-LSTM checkpoint (default: a ResNet-18 CNN-LSTM with untrained weights; "
                          "throughput does not depend on the weights' values)")
    off.add_argument("--video", type=Path, default=None,
                     help="video to analyse (default: a 30 s 640x480 30 fps synthetic clip made for the run)")
    off.add_argument("--window", type=int, default=16)
    off.add_argument("--stride", type=int, default=4)
    off.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's)")
    off.add_argument("--repeats", type=int, default=2, help="runs of each pipeline; the best is kept")
    off.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    off.set_defaults(func=run_offline)


def bench_model(spec: str | None, device: torch.device) -> VideoModel:
    import torch

    from ..models.cnn_lstm import CnnLstmConfig, CnnLstmModel, CnnLstmNet, load_cnn_lstm
    from ..labels import load_label_set

    if spec:
        return load_cnn_lstm(Path(spec), device)
    torch.manual_seed(0)
    labels = load_label_set("ucf101")
    net = CnnLstmNet(CnnLstmConfig(labels=labels.labels, label_set="ucf101"))
    return CnnLstmModel(net, device, name="cnn-lstm (ResNet-18, untrained)")


def run_offline(args: argparse.Namespace) -> int:
    from ..bench.machine import describe
    from ..bench.offline import run_offline_bench
    from ..models.base import pick_device

    device = pick_device(args.device)
    model = bench_model(args.model, device)
    fps = args.fps or model.info.fps
    with tempfile.TemporaryDirectory(prefix="har-bench-"):
        naive, engine, video = run_offline_bench(model, args.video, window=args.window, stride=args.stride,
                                                 sample_fps=fps, repeats=args.repeats)
    print(f"machine: {describe(device)}")
    print(f"model:   {model.info.name}, {model.info.crop[0]}x{model.info.crop[1]}, window {args.window}, "
          f"stride {args.stride}, sampled at {fps:g} fps")
    print(f"video:   {video.name if args.video is None else video}, {engine.duration_s:.1f} s, "
          f"{engine.frames_decoded} frames")
    for fig in (naive, engine):
        print(f"  {fig.name:36s} {fig.fps:8.1f} frames/s  {fig.realtime:6.2f}x realtime  "
              f"{fig.windows} windows  {fig.wall_s:.2f} s")
    print(f"  ratio engine/naive: {engine.realtime / naive.realtime:.2f}x (best of {args.repeats} each, "
          "alternating runs)")
    return 0
