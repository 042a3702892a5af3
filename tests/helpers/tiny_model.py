"""Train a tiny CNN-LSTM on synthetic motion clips, inside the test run, and save it as a real checkpoint.

Label-correctness tests use this instead of random weights: a model that labels held-out clips right
has learnt the motion, so a wrong label means the engine broke something (sampling, order, windows...).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from torch import nn

from har_stream.models.cnn_lstm import CnnLstmConfig, CnnLstmNet, save_checkpoint
from har_stream.preprocess import FramePreparer
from har_stream.synthetic import LABELS, MOTIONS, make_background, render

SIZE = (64, 64)
FRAMES = 16
FPS = 15.0


def prepare_clip(frames: np.ndarray, preparer: FramePreparer) -> np.ndarray:
    """Resize exactly as the engine does (same swscale path), so training and serving see the same pixels."""
    return np.stack([preparer(av.VideoFrame.from_ndarray(f, format="rgb24")) for f in frames])


def start_inside(label: str, speed: float, seconds: float, rng: np.random.Generator) -> tuple[float, float]:
    """A start position from which the square stays wholly in frame (no wrap-around) for ``seconds``."""
    dx, dy = MOTIONS[label]
    margin = 0.25 + 0.02  # the square's side is a quarter of the frame's short side, plus a little room
    travel = speed * seconds

    def axis(d: float) -> float:
        room = 1.0 - margin - abs(d) * travel
        lo = abs(d) * travel if d < 0 else 0.0
        return lo + float(rng.uniform(0.0, max(room, 1e-3)))

    return axis(dx), axis(dy)


def mixed_clip(main: str, other: str, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A window that straddles a change of action: ``main`` holds the clear majority of its frames.

    Live and offline windows straddle changes all the time; training on them teaches the majority label.
    """
    speed = float(rng.uniform(0.35, 0.6))
    n_main = int(rng.integers(frames * 5 // 8, frames - 2))
    first_is_main = bool(rng.integers(0, 2))
    order = [(main, n_main), (other, frames - n_main)] if first_is_main else \
        [(other, frames - n_main), (main, n_main)]
    bg = make_background(160, 120, rng)
    colour = tuple(int(c) for c in rng.integers(150, 256, 3))
    for _ in range(50):  # rejection-sample a start that keeps the square in frame throughout
        pos = (float(rng.uniform(0.0, 0.73)), float(rng.uniform(0.0, 0.73)))
        end = pos
        for label, n in order:
            dx, dy = MOTIONS[label]
            end = (end[0] + dx * speed * n / FPS, end[1] + dy * speed * n / FPS)
        if 0.0 <= end[0] <= 0.73 and 0.0 <= end[1] <= 0.73:
            break
    parts = []
    for label, n in order:
        parts.append(render(label, n, fps=FPS, speed=speed, rng=rng, background=bg, start=pos, colour=colour))
        dx, dy = MOTIONS[label]
        pos = (pos[0] + dx * speed * n / FPS, pos[1] + dy * speed * n / FPS)
    return np.concatenate(parts)


def make_dataset(n_per_class: int, seed: int, frames: int = FRAMES,
                 mixed_fraction: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    preparer = FramePreparer(SIZE, SIZE)
    clips, targets = [], []
    for label_index, label in enumerate(LABELS):
        for _ in range(n_per_class):
            if rng.random() < mixed_fraction:
                other = LABELS[(label_index + int(rng.integers(1, len(LABELS)))) % len(LABELS)]
                raw = mixed_clip(label, other, frames, rng)
            else:
                bg = make_background(160, 120, rng)
                speed = float(rng.uniform(0.35, 0.6))
                raw = render(label, frames, fps=FPS, speed=speed, rng=rng, background=bg,
                             start=start_inside(label, speed, frames / FPS, rng))
            clips.append(prepare_clip(raw, preparer))
            targets.append(label_index)
    return torch.from_numpy(np.stack(clips)), torch.tensor(targets)


def normalise(clips: torch.Tensor, cfg: CnnLstmConfig) -> torch.Tensor:
    x = clips.permute(0, 1, 4, 2, 3).float() / 255.0
    mean = torch.tensor(cfg.mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def train_tiny_cnn_lstm(path: Path, *, seed: int = 0, n_per_class: int = 160, epochs: int = 16) -> Path:
    torch.manual_seed(seed)
    cfg = CnnLstmConfig(labels=LABELS, label_set="synthetic-motion", encoder="tiny", hidden=48, layers=2,
                        frames=FRAMES, size=SIZE, fps=FPS, dropout=0.0)
    net = CnnLstmNet(cfg)
    clips, targets = make_dataset(n_per_class, seed)
    x = normalise(clips, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * ((len(x) + 15) // 16)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 16):
            idx = order[start:start + 16]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), targets[idx])
            loss.backward()
            opt.step()
            schedule.step()
    net.eval()
    val_x, val_y = make_dataset(25, seed + 1000)
    with torch.no_grad():
        acc = (net(normalise(val_x, cfg)).argmax(1) == val_y).float().mean().item()
    return save_checkpoint(net, path, metrics={"val_accuracy": acc})
