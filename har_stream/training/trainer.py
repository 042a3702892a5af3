"""Train the CNN-LSTM in two stages, as the original design did, and keep everything needed to resume.

Stage 1 (``epochs``): the encoder is frozen, so each frame's feature is computed once and cached; the LSTM
head trains on windows of cached features, which is fast even on a CPU. Stage 2 (``fine_tune_epochs``): the
whole network trains on augmented frame windows (one random crop and flip per clip), with mixed precision on
a GPU. Each epoch ends with a validation on held-out training groups using the engine's own windows, a row in
``log.csv``, a redrawn ``curves.png``, ``last.pt`` (weights + optimiser state, for ``--resume``) and, when
validation improved, ``model.pt``: the checkpoint ``serve``, ``analyse`` and ``eval`` take.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..datasets.base import Clip, Dataset, class_counts
from ..datasets.decode import FrameSpec
from ..errors import ConfigError, InputError
from ..fileutil import publish
from ..models.base import pick_device
from ..models.cnn_lstm import CnnLstmConfig, CnnLstmNet, read_checkpoint, save_checkpoint
from ..weights import WeightStore, default_home
from ..worker import autocast_dtype
from .augment import ClipAugment
from .cache import Failure, FeatureCache, FrameCache, module_digest
from .data import FrameWindows, batches, epoch_rng, epoch_samples, feature_batch, split_validation
from .metrics import VideoPrediction, score
from .plots import plot_curves
from .pretrained import load_imagenet_encoder
from .settings import RunOptions, TrainSettings
from .windows import engine_windows

LOG_FIELDS = ("epoch", "stage", "lr", "train_loss", "train_top1", "val_loss", "val_clip_top1", "val_video_top1",
              "seconds", "clips_per_s")
ENCODE_BATCH = 256
WARMUP_SHARE = 0.05  # of each stage's steps
CLIP_GRAD_NORM = 5.0  # LSTMs train steadier with clipped gradients
Say = Callable[[str], None]


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 on a GPU that has it (fp16 with loss scaling otherwise), fp32 on a CPU."""
    if precision == "auto" and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return autocast_dtype(precision, device)


def dtype_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype is not None else "fp32"


def default_cache() -> Path:
    return default_home() / "cache" / "train"


@dataclass(frozen=True)
class TrainResult:
    out: Path
    model: Path
    last: Path
    log: Path
    curves: Path
    epochs_done: int
    finished: bool
    best: dict[str, Any]
    skipped: tuple[Failure, ...]
    train_videos: int
    val_videos: int


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Trainer:
    """One training run into ``out``. ``run()`` trains until done or ``stop_after``; errors are HarStreamErrors."""

    def __init__(self, dataset: Dataset, settings: TrainSettings, out: Path, options: RunOptions = RunOptions(),
                 *, store: WeightStore | None = None, cache: Path | None = None, say: Say = _stderr) -> None:
        self.dataset = dataset
        self.settings = settings
        self.out = Path(out)
        self.options = options
        self.store = store
        self.cache_root = Path(cache) if cache is not None else default_cache()
        self.say = say
        self.device = pick_device(options.device)
        self.dtype = training_dtype(settings.precision, self.device)
        self.workers = options.workers if options.workers is not None else default_workers(self.device)
        size = (settings.size, settings.size)
        self.frames = FrameCache(self.cache_root, FrameSpec(settings.fps, size, size, settings.resampling))
        self.last_path = self.out / "last.pt"
        self.model_path = self.out / "model.pt"
        self.log_path = self.out / "log.csv"
        self.curves_path = self.out / "curves.png"

    # ------------------------------------------------------------------------------------------ public
    def run(self, resume: bool = False) -> TrainResult:
        s = self.settings
        resumed = self._read_resume() if resume else None
        if resumed is None and self.last_path.exists():
            raise ConfigError(f"{self.out} already holds a training run (last.pt); pass --resume to continue it, "
                              "or choose another --out")
        self.dataset.require_every_class("train")
        torch.manual_seed(s.seed)
        cfg = CnnLstmConfig(labels=self.dataset.classes, label_set=self.dataset.name, encoder=s.encoder,
                            hidden=s.hidden, layers=s.layers, frames=s.frames, size=(s.size, s.size), fps=s.fps,
                            dropout=s.dropout, resampling=s.resampling)
        net = CnnLstmNet(cfg)
        if resumed is not None:
            net.load_state_dict(resumed["state_dict"])
            init = resumed["training"].get("encoder_init")
        else:
            init = load_imagenet_encoder(net, self.store or WeightStore()) if s.pretrained else None
        net.to(self.device)
        train, val, skipped = self._prepare_clips()
        self.out.mkdir(parents=True, exist_ok=True)
        state = _RunState.start(resumed)
        self.say(f"training on {len(train)} videos ({len(val)} held out for validation) of {self.dataset.describe()}; "
                 f"device {self.device}, precision {dtype_name(self.dtype)}")
        loop = _Loop(self, net, train, val, init, state)
        if state.epoch >= s.total_epochs:
            self.say(f"the run in {self.out} has already finished its {s.total_epochs} epochs; nothing to do")
        finished = loop.run()
        return TrainResult(self.out, self.model_path, self.last_path, self.log_path, self.curves_path,
                           state.epoch, finished, dict(state.best), tuple(skipped), len(train), len(val))

    # ------------------------------------------------------------------------------------------ helpers
    def _read_resume(self) -> dict[str, Any]:
        if not self.last_path.is_file():
            raise ConfigError(f"nothing to resume in {self.out}: it has no last.pt; start a new run without --resume")
        payload = read_checkpoint(self.last_path)
        training, resume = payload.get("training"), payload.get("resume")
        if not isinstance(training, dict) or not isinstance(resume, dict):
            raise ConfigError(f"{self.last_path} holds no training state to resume from")
        before = TrainSettings.from_dict(training.get("settings", {}))
        changed = before.differences(self.settings)
        if changed:
            raise ConfigError(f"--resume with different settings than the run in {self.out} "
                              f"({'; '.join(changed)}); resume with the same options, or start a new --out")
        if training.get("dataset", {}).get("train_sha256") != self.dataset.train_sha256():
            raise ConfigError(f"the training data changed since the run in {self.out} began (its hash differs); "
                              "resume on the same data, or start a new --out")
        return payload

    def _prepare_clips(self) -> tuple[list[Clip], list[Clip], list[Failure]]:
        s = self.settings
        train, val = split_validation(self.dataset.train, s.val_fraction, s.seed)
        with _bar(self.options.progress, len(train) + len(val), "decoding", "video") as tick:
            failures = self.frames.fill(train + val, jobs=self.options.jobs, tick=tick)
        if failures:
            self.say(f"note: {len(failures)} video(s) could not be decoded and are left out "
                     f"(e.g. {failures[0].name}: {failures[0].reason})")
        bad = {f.name for f in failures}
        train = [c for c in train if c.name not in bad]
        val = [c for c in val if c.name not in bad]
        counts = class_counts(train, len(self.dataset.classes))
        empty = [self.dataset.classes[i] for i, n in enumerate(counts) if n == 0]
        if empty:
            raise InputError(f"class {empty[0]!r} has no decodable training video; fix or replace its files")
        return train, val, failures


@dataclass
class _RunState:
    epoch: int
    history: list[dict[str, Any]]
    best: dict[str, Any]
    optimizer: dict[str, Any] | None
    scaler: dict[str, Any] | None

    @classmethod
    def start(cls, resumed: dict[str, Any] | None) -> _RunState:
        if resumed is None:
            return cls(0, [], {}, None, None)
        r = resumed["resume"]
        return cls(int(r["epoch"]), list(resumed["training"].get("history", [])), dict(r.get("best") or {}),
                   r.get("optimizer"), r.get("scaler"))


class _Loop:
    """The epochs of one run (both stages), holding the network, optimiser and caches between them."""

    def __init__(self, trainer: Trainer, net: CnnLstmNet, train: list[Clip], val: list[Clip],
                 init: dict[str, Any] | None, state: _RunState) -> None:
        self.t = trainer
        self.s = trainer.settings
        self.net = net
        self.train = train
        self.val = val
        self.init = init
        self.state = state
        self.device = trainer.device
        self.lengths = [len(trainer.frames.load(c)) for c in train]
        cfg = net.cfg
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 1, 3, 1, 1)
        self.augment = ClipAugment(min_area=self.s.crop_area, flip=self.s.flip)
        # ResNet convolutions run faster on channels-last tensors (CPU and GPU), as the engine runs them.
        self.memory_format = torch.channels_last if cfg.encoder == "resnet18" else torch.contiguous_format
        net.encoder.to(memory_format=self.memory_format)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.features: FeatureCache | None = None
        self._train_features: list[np.ndarray] = []
        self.stage = 0

    # -- epochs ----------------------------------------------------------------------------------------
    def run(self) -> bool:
        s, opts = self.s, self.t.options
        for epoch in range(self.state.epoch + 1, s.total_epochs + 1):
            self._enter_stage(s.stage(epoch), resuming=epoch == self.state.epoch + 1)
            torch.manual_seed(s.seed * 1_000_003 + epoch)
            started = time.monotonic()
            loss, top1, clips = self._train_epoch(epoch)
            seconds = time.monotonic() - started
            val = self._validate()
            row = {"epoch": epoch, "stage": self.stage, "lr": self._lr(epoch, 0), "train_loss": loss,
                   "train_top1": top1, **val, "seconds": round(seconds, 3),
                   "clips_per_s": round(clips / seconds, 2) if seconds > 0 else None}
            self.state.history.append(row)
            self.state.epoch = epoch
            self._record(row)
            if opts.stop_after is not None and epoch >= opts.stop_after and epoch < s.total_epochs:
                self.t.say(f"stopped after epoch {epoch} of {s.total_epochs} (--stop-after); continue with --resume")
                return False
        return True

    def _enter_stage(self, stage: int, resuming: bool) -> None:
        if stage == self.stage:
            return
        s = self.s
        self.stage = stage
        frozen = stage == 1
        self.net.encoder.requires_grad_(not frozen)
        params = self.net.head.parameters() if frozen else self.net.parameters()
        self.optimizer = torch.optim.AdamW(params, lr=s.lr if frozen else s.fine_tune_lr, weight_decay=s.weight_decay)
        use_scaler = self.t.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler) if use_scaler else None
        saved_stage = s.stage(self.state.epoch) if self.state.epoch else 0
        if resuming and saved_stage == stage and self.state.optimizer is not None:
            self.optimizer.load_state_dict(self.state.optimizer)
            if self.scaler is not None and self.state.scaler:
                self.scaler.load_state_dict(self.state.scaler)
        if frozen:
            self._fill_features()
        self.t.say("stage 1: frozen encoder, LSTM head on cached features" if frozen
                   else "stage 2: fine-tuning the whole network on augmented frames")

    def _steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.train) * self.s.clips_per_video / self.s.batch_size))

    def _lr(self, epoch: int, step: int) -> float:
        """Each stage: a linear warm-up over its first steps, then cosine decay from its base rate towards zero."""
        s = self.s
        first, count, base = (1, s.epochs, s.lr) if s.stage(epoch) == 1 else (s.epochs + 1, s.fine_tune_epochs,
                                                                               s.fine_tune_lr)
        per = self._steps_per_epoch()
        total = max(1, count * per)
        done = (epoch - first) * per + step
        warmup = max(1, round(WARMUP_SHARE * total))
        if done < warmup:
            return base * (done + 1) / warmup
        return base * 0.5 * (1.0 + math.cos(math.pi * (done - warmup) / max(1, total - warmup)))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1: ``x`` are cached features. Stage 2: frames, encoded in mixed precision. The LSTM head runs
        in fp32 either way: it is cheap, and the recurrence stays numerically steady."""
        if self.stage == 2:
            b, t = x.shape[:2]
            with self._autocast():
                x = self.net.encoder(x.flatten(0, 1).contiguous(memory_format=self.memory_format)).view(b, t, -1)
        return self.net.head(x.float())

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.t.dtype or torch.float32, enabled=self.t.dtype is not None)

    def _step(self, logits: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[float, int]:
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, CLIP_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP_GRAD_NORM)
            self.optimizer.step()
        return float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum())

    def _train_epoch(self, epoch: int) -> tuple[float, float, int]:
        s = self.s
        rng = epoch_rng(s.seed, epoch)
        samples = epoch_samples(self.lengths, s.frames, s.clips_per_video, rng)
        self.net.train()
        if self.stage == 1:
            self.net.encoder.eval()
        total_loss, correct = 0.0, 0
        desc = f"epoch {epoch}/{s.total_epochs}"
        with _bar(self.t.options.progress, len(samples), desc, "clip") as tick:
            for step, (x, y) in enumerate(self._batches(samples, epoch)):
                loss, hits = self._step(self._logits(x), y, self._lr(epoch, step))
                total_loss += loss
                correct += hits
                tick(len(y))
        n = max(1, len(samples))
        return total_loss / n, correct / n, len(samples)

    def _batches(self, samples: Sequence[Any], epoch: int):
        dev = self.device
        if self.stage == 1:
            feats = self._train_features
            labels = [c.label for c in self.train]
            for batch in batches(samples, self.s.batch_size):
                x, y = feature_batch(feats, labels, batch, self.s.frames)
                yield x.to(dev), y.to(dev)
            return
        workers = self.t.workers
        loader = torch.utils.data.DataLoader(
            FrameWindows(self.t.frames, self.train, self.lengths, samples, self.s.frames),
            batch_size=self.s.batch_size, shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda",
            persistent_workers=False)
        gen = torch.Generator().manual_seed(self.s.seed * 1_000_003 + epoch)
        for frames, y in loader:
            x = frames.to(dev, non_blocking=True).permute(0, 1, 4, 2, 3).float().div_(255.0)
            x = self.augment(x, gen)
            yield (x - self.mean) / self.std, y.to(dev, non_blocking=True)

    # -- features and validation -------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, D) float32 features of the encoder in eval mode."""
        was_training = self.net.encoder.training
        self.net.encoder.eval()
        out = []
        for start in range(0, len(frames), ENCODE_BATCH):
            x = torch.from_numpy(np.array(frames[start:start + ENCODE_BATCH])).to(self.device)  # a writable copy
            x = (x.permute(0, 3, 1, 2).float().div_(255.0) - self.mean[0]) / self.std[0]
            with self._autocast():
                out.append(self.net.encoder(x.contiguous(memory_format=self.memory_format)).float().cpu().numpy())
        self.net.encoder.train(was_training)
        return np.concatenate(out)

    def _fill_features(self) -> None:
        self.features = FeatureCache(self.t.cache_root, self.t.frames, module_digest(self.net.encoder))
        clips = self.train + self.val
        with _bar(self.t.options.progress, len(clips), "encoding frames", "video") as tick:
            self.features.fill(clips, self._encode, tick=tick)
        self._train_features = [self.features.load(c) for c in self.train]

    @torch.no_grad()
    def _validate(self) -> dict[str, float | None]:
        if not self.val:
            return {"val_loss": None, "val_clip_top1": None, "val_video_top1": None}
        self.net.eval()
        predictions, losses = [], []
        for clip in self.val:
            if self.stage == 1:
                assert self.features is not None
                feats = self.features.load(clip).astype(np.float32)
            else:
                feats = self._encode(np.asarray(self.t.frames.load(clip)))
            windows = engine_windows(len(feats), self.s.frames, self.s.stride)
            x = torch.from_numpy(np.stack([feats[list(w)] for w in windows])).to(self.device)
            logits = self.net.head(x.float())
            y = torch.full((len(windows),), clip.label, device=self.device)
            losses.append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
            predictions.append(VideoPrediction(clip.name, clip.label, torch.softmax(logits, 1).cpu().numpy()))
        report = score(predictions, self.net.cfg.labels, self.net.cfg.labels, range(len(self.net.cfg.labels)))
        self.net.train()
        return {"val_loss": float(np.concatenate(losses).mean()), "val_clip_top1": report.clip.top1,
                "val_video_top1": report.video.top1}

    # -- outputs ---------------------------------------------------------------------------------------
    def _record(self, row: dict[str, Any]) -> None:
        epoch, s = row["epoch"], self.s
        improved = self._improves(row)
        if improved:
            self.state.best = {k: row[k] for k in ("epoch", "val_loss", "val_clip_top1", "val_video_top1")}
        self.save(self.t.last_path, with_resume=True)
        if improved or not self.val:  # without a validation set the newest epoch is the model
            self.save(self.t.model_path, with_resume=False)
        _write_log(self.t.log_path, self.state.history)
        plot_curves(self.state.history, self.t.curves_path,
                    title=f"CNN-LSTM on {self.t.dataset.name} split {self.t.dataset.split}")
        val = "" if row["val_video_top1"] is None else (
            f", val top-1 {100 * row['val_clip_top1']:.1f}% per clip, {100 * row['val_video_top1']:.1f}% per video")
        self.t.say(f"epoch {epoch}/{s.total_epochs} (stage {row['stage']}): loss {row['train_loss']:.4f}, "
                   f"train top-1 {100 * row['train_top1']:.1f}%{val}; {row['seconds']:.1f} s, "
                   f"{row['clips_per_s']} clips/s{'  *best*' if improved and self.val else ''}")

    def _improves(self, row: dict[str, Any]) -> bool:
        if row["val_video_top1"] is None:
            return False
        best = self.state.best
        if not best:
            return True
        key = (row["val_video_top1"], row["val_clip_top1"], -row["val_loss"])
        return key > (best["val_video_top1"], best["val_clip_top1"], -best["val_loss"])

    def save(self, path: Path, *, with_resume: bool) -> None:
        ds, s = self.t.dataset, self.s
        training = {
            "dataset": {"name": ds.name, "layout": ds.layout, "split": ds.split, "root": str(ds.root),
                        "classes": list(ds.classes), "train_sha256": ds.train_sha256(),
                        "train_videos": sorted(c.name for c in self.train),
                        "val_videos": sorted(c.name for c in self.val), "test_videos": len(ds.test)},
            "settings": s.to_dict(),
            "encoder_init": self.init,
            "epoch": self.state.epoch,
            "history": list(self.state.history),
            "device": str(self.device),
            "precision": dtype_name(self.t.dtype),
            "versions": {"har_stream": __version__, "torch": str(torch.__version__)},
        }
        last = self.state.history[-1] if self.state.history else {}
        metrics = {k: last.get(k) for k in LOG_FIELDS if k in last}
        extra: dict[str, Any] = {"training": training}
        if with_resume:
            assert self.optimizer is not None
            extra["resume"] = {"epoch": self.state.epoch, "optimizer": self.optimizer.state_dict(),
                               "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                               "best": dict(self.state.best)}
        save_checkpoint(self.net, path, metrics=metrics, extra=extra)


def _write_log(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOG_FIELDS})
    publish(tmp, path)


class _bar:
    """A tqdm bar on stderr when enabled; a context whose value is ``tick(n)``."""

    def __init__(self, enabled: bool, total: int, desc: str, unit: str) -> None:
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)

    def __enter__(self) -> Callable[[int], None]:
        bar = self.bar
        return (lambda n: bar.update(n)) if bar is not None else (lambda n: None)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def default_workers(device: torch.device) -> int:
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)
