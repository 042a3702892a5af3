"""``har-stream eval``: any model's held-out figures on a dataset's test split, through the live engine's windows.

Per clip (each window the engine classifies) and per video (the mean of its windows' probabilities): top-1 and
top-5, per-class accuracy, a confusion matrix PNG and a JSON report. torch is imported only when it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..labels import DEFAULT_PROMPT
from .analyse import add_precision_options
from .train import add_dataset_options, add_progress_option, dataset_from_args, progress_enabled


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a model on a dataset's held-out test split",
                       description="Run every test video of a split through the engine (same fps, window and "
                                   "stride as live) and report per-clip and per-video top-1/top-5, per-class "
                                   "accuracy and a confusion matrix.")
    p.add_argument("--model", required=True,
                   help="a CNN-LSTM checkpoint, a Kinetics model (s3d, r2plus1d-18, r3d-18, mc3-18, mvit-v2-s, "
                        "swin3d-t; only on datasets of Kinetics classes), or clip (zero-shot over the dataset's "
                        "classes)")
    add_dataset_options(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where report.json, per_class.csv and confusion.png go (default: runs/eval-<model>-<dataset>)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the model's)")
    p.add_argument("--stride", type=int, default=8, help="frames between windows (default: 8, as served)")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N test videos of each class (a quicker, partial figure; the report says so)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="CLIP prompt template (default: %(default)r)")
    p.add_argument("--clip-model", default=None, metavar="DIR",
                   help="a local CLIP directory (default: the cached openai/clip-vit-base-patch32)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    add_precision_options(p)
    p.add_argument("--jobs", type=int, default=2, help="videos decoded at once; their windows share batches "
                                                        "(default: 2)")
    add_progress_option(p)
    p.set_defaults(func=run)


def _model_slug(spec: str) -> str:
    return Path(spec).stem if spec.endswith((".pt", ".pth", ".ckpt")) else spec


def run(args: argparse.Namespace) -> int:
    from ..labels import check_prompt

    check_prompt(args.prompt)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {args.jobs})")
    if args.fps is not None and args.fps <= 0:
        raise ConfigError(f"--fps must be positive (got {args.fps})")
    dataset = dataset_from_args(args)
    from ..training.evaluate import check_held_out, evaluate, limit_per_class

    clips = limit_per_class(dataset.test, args.limit)
    check_held_out(args.model, clips)
    out = args.out or Path("runs") / f"eval-{_model_slug(args.model)}-{dataset.name}-split{dataset.split}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder")

    from ..bench.machine import describe
    from ..labels import LabelSet
    from ..models.base import pick_device
    from ..models.registry import ClipSource, load_model
    from ..runtime import check_runtime, with_runtime
    from ..weights import WeightStore

    check_runtime(args.runtime)
    device = pick_device(args.device)
    store = WeightStore()
    model = load_model(args.model, device=device, store=store,
                       labels=LabelSet(dataset.name, dataset.classes),
                       clip=ClipSource(Path(args.clip_model) if args.clip_model else None, args.prompt))
    model = with_runtime(model, args.runtime, home=store.home)
    started = time.monotonic()
    bar = None
    if progress_enabled(args.progress):
        from tqdm import tqdm

        bar = tqdm(total=len(clips), desc="evaluating", unit="video", file=sys.stderr, dynamic_ncols=True)
    try:
        result = evaluate(model, dataset, clips, window=args.window, stride=args.stride, fps=args.fps,
                          precision=args.precision, jobs=args.jobs, tick=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - started
    report = result.report
    info = model.info
    payload: dict[str, Any] = {
        "model": {"spec": args.model, "name": info.name, "family": info.family, "label_set": info.label_set,
                  "weights_sha256": info.weights_sha256,
                  "prompt": args.prompt if info.family == "clip" else None},
        "dataset": {"name": dataset.name, "layout": dataset.layout, "root": str(dataset.root),
                    "split": dataset.split, "subset": "test", "held_out": True, "classes": len(dataset.classes),
                    "test_videos": len(dataset.test), "evaluated_videos": len(clips),
                    "limit_per_class": args.limit, "skipped_unlisted": len(dataset.skipped)},
        "settings": result.settings,
        **report.to_json(),
        "failed_videos": [{"name": n, "reason": r} for n, r in result.failed],
        "machine": describe(device),
        "elapsed_s": round(elapsed, 3),
        "command": "har-stream " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "",
    }
    from ..training.plots import plot_confusion

    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "report.json", payload)
    _write_per_class(out / "per_class.csv", report)
    plot_confusion(report.confusion, report.classes, report.columns, out / "confusion.png",
                   title=f"{info.name} on {dataset.name} split {dataset.split} (test videos)")
    partial = f" (first {args.limit} per class)" if args.limit else ""
    print(f"{info.name} on {dataset.name} split {dataset.split}, {report.video.count} held-out test videos"
          f"{partial}, {report.clip.count} clips:")
    print(f"  per clip:  top-1 {100 * report.clip.top1:6.2f}%   top-{report.clip.k} {100 * report.clip.top5:6.2f}%")
    print(f"  per video: top-1 {100 * report.video.top1:6.2f}%   top-{report.video.k} {100 * report.video.top5:6.2f}%"
          f"   (mean per-class {100 * report.mean_class_top1:.2f}%)")
    if result.failed:
        print(f"  {len(result.failed)} video(s) could not be decoded and are not counted (see report.json)")
    print(f"report: {out / 'report.json'}  per class: {out / 'per_class.csv'}  confusion: {out / 'confusion.png'}")
    return 0


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from ..fileutil import publish

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    publish(tmp, path)


def _write_per_class(path: Path, report: Any) -> None:
    from ..fileutil import publish

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "videos", "video_top1", "clips", "clip_top1"])
        for c in report.per_class:
            writer.writerow([c.name, c.videos, f"{c.video_top1:.6f}", c.clips, f"{c.clip_top1:.6f}"])
    publish(tmp, path)
