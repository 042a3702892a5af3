"""``har-stream train``: train the CNN-LSTM on a dataset (UCF101 layout, class folders, or Kinetics CSVs).

Two stages as in the original design: a frozen ImageNet ResNet-18 with the LSTM head trained on cached
per-frame features, then fine-tuning of the whole network. The result, ``OUT/model.pt``, is a checkpoint that
``serve``, ``analyse`` and ``eval`` take. torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..datasets import Dataset


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``eval``: where the dataset is and which split to use."""
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="dataset folder: UCF101 (class folders of .avi + classInd/trainlist/testlist), "
                        "one folder per class, or videos with Kinetics-style train.csv/validate.csv")
    p.add_argument("--layout", default="auto", choices=("auto", "ucf101", "folders", "kinetics"),
                   help="dataset layout (default: auto: classInd.txt → ucf101, train.csv → kinetics, else folders)")
    p.add_argument("--split", default="1", help="UCF101 split: 1, 2 or 3 (default: 1)")
    p.add_argument("--lists", type=Path, default=None, metavar="DIR",
                   help="folder of the split files (classInd.txt, trainlist0N.txt, ...; train.csv, ...; split.csv) "
                        "when they are not in --data")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="folders layout without a split file: share of each class held out for testing "
                        "(chosen by a hash of the file name; default: 0.2)")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bars on stderr (auto: when stderr is a terminal)")


def progress_enabled(choice: str) -> bool:
    return choice == "on" or (choice == "auto" and sys.stderr.isatty())


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from ..datasets import open_dataset

    dataset = open_dataset(args.data, layout=args.layout, split=args.split, lists=args.lists,
                           test_fraction=args.test_fraction)
    if dataset.skipped:
        print(f"har-stream: note: {len(dataset.skipped)} annotated video(s) are not under {dataset.root} and are "
              f"left out (e.g. {dataset.skipped[0]})", file=sys.stderr)
    return dataset


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the CNN-LSTM on a dataset",
                       description="Train the CNN-LSTM (ResNet-18 → BiLSTM → attention): first the LSTM head on "
                                   "cached features of a frozen ImageNet encoder, then the whole network. Writes "
                                   "OUT/model.pt (serve/analyse/eval take it), OUT/last.pt (for --resume), "
                                   "OUT/log.csv and OUT/curves.png.")
    add_dataset_options(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="run folder (default: runs/cnn-lstm-<dataset>-split<N>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="stop after this epoch (count from the first); continue later with --resume")
    model = p.add_argument_group("model")
    model.add_argument("--encoder", default="resnet18", choices=("resnet18", "tiny"),
                       help="frame encoder (default: resnet18; tiny: a small CNN for quick experiments)")
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="start resnet18 from ImageNet weights (weights `resnet18-imagenet`, pulled or "
                            "imported); default: on for resnet18")
    model.add_argument("--frames", type=int, default=16, help="frames per window (default: 16)")
    model.add_argument("--fps", type=float, default=15.0, help="sampling rate, as served (default: 15)")
    model.add_argument("--size", type=int, default=112, help="frame size in pixels, square (default: 112)")
    model.add_argument("--resample", default="area", choices=("area", "bilinear"),
                       help="how frames are resized: area = swscale's AREA filter (fastest), bilinear = "
                            "torchvision's antialiased bilinear, as its ImageNet preset; the checkpoint records it "
                            "and the engine serves it the same way (default: area)")
    model.add_argument("--hidden", type=int, default=256, help="LSTM units per direction (default: 256)")
    model.add_argument("--layers", type=int, default=2, help="LSTM layers (default: 2)")
    model.add_argument("--dropout", type=float, default=0.3, help="default: 0.3")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=20, help="stage 1 epochs, frozen encoder (default: 20)")
    opt.add_argument("--fine-tune-epochs", type=int, default=5, help="stage 2 epochs, whole network (default: 5)")
    opt.add_argument("--batch-size", type=int, default=32, help="clips per step (default: 32)")
    opt.add_argument("--lr", type=float, default=1e-3, help="stage 1 learning rate, cosine decay (default: 1e-3)")
    opt.add_argument("--fine-tune-lr", type=float, default=1e-4, help="stage 2 learning rate (default: 1e-4)")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    opt.add_argument("--clips-per-video", type=int, default=1,
                     help="random windows drawn from each training video per epoch (default: 1)")
    opt.add_argument("--val-fraction", type=float, default=0.1,
                     help="share of each class's training groups held out to pick the best epoch (default: 0.1; "
                          "0: keep the last epoch)")
    opt.add_argument("--stride", type=int, default=8, help="frames between validation windows (default: 8)")
    opt.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                     help="mirror half the clips (default: on; turn off when left/right is the class)")
    opt.add_argument("--crop-area", type=float, default=0.8,
                     help="random crops keep at least this share of the frame, the same box for a whole clip "
                          "(default: 0.8; 1: no crop)")
    opt.add_argument("--seed", type=int, default=0, help="default: 0")
    run_opts = p.add_argument_group("running")
    run_opts.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    run_opts.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                          help="mixed precision: auto = bf16 on a GPU that has it (else fp16), fp32 on a CPU")
    run_opts.add_argument("--workers", type=int, default=None,
                          help="data loader processes for fine-tuning (default: 0 on CPU, 8 on GPU)")
    run_opts.add_argument("--jobs", type=int, default=2, help="videos decoded at once (default: 2)")
    run_opts.add_argument("--cache", type=Path, default=None, metavar="DIR",
                          help="decoded frames and features (default: $HAR_STREAM_HOME/cache/train)")
    add_progress_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = dataset_from_args(args)  # first: a wrong --data fails before torch is even imported
    from ..training.settings import RunOptions, TrainSettings

    pretrained = args.pretrained if args.pretrained is not None else args.encoder == "resnet18"
    settings = TrainSettings(
        encoder=args.encoder, pretrained=pretrained, frames=args.frames, fps=args.fps, size=args.size,
        resample=args.resample, hidden=args.hidden, layers=args.layers, dropout=args.dropout, epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, batch_size=args.batch_size, lr=args.lr,
        fine_tune_lr=args.fine_tune_lr, weight_decay=args.weight_decay, clips_per_video=args.clips_per_video,
        stride=args.stride, val_fraction=args.val_fraction, flip=args.flip, crop_area=args.crop_area,
        seed=args.seed, precision=args.precision)
    options = RunOptions(device=args.device, workers=args.workers, jobs=args.jobs, stop_after=args.stop_after,
                         progress=progress_enabled(args.progress))
    out = args.out or Path("runs") / f"cnn-lstm-{dataset.name}-split{dataset.split}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder")
    from ..training.trainer import Trainer

    result = Trainer(dataset, settings, out, options, cache=args.cache).run(resume=args.resume)
    best = result.best
    if best:
        print(f"model: {result.model} (epoch {best['epoch']}: validation top-1 {100 * best['val_video_top1']:.1f}% "
              f"per video, {100 * best['val_clip_top1']:.1f}% per clip)")
    else:
        print(f"model: {result.model} (epoch {result.epochs_done}; no validation set)")
    print(f"log: {result.log}  curves: {result.curves}  resume: {result.last}")
    if not result.finished:
        print(f"stopped early; continue with: har-stream train --data {args.data} --out {out} --resume (same options)")
    else:
        print(f"held-out figures: har-stream eval --model {result.model} --data {args.data} --split {dataset.split}")
    return 0
