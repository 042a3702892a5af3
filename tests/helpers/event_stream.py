"""A synthetic two-action clip run through the real engine into an ``ActionEventDetector``.

The clip moves a square left for 2 s, then holds it still for 2.4 s (the square stays inside the frame: the
tiny test model was trained on motion that does not wrap around). A real ``StreamPipeline`` with the tiny
CNN-LSTM trained in the test run labels it, and the detector turns the smoothed labels into action events.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from har_stream.events import ActionEvent, ActionEventDetector, DetectorSettings
from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.pipeline import StreamPipeline, StreamSettings
from har_stream.preprocess import FramePreparer
from har_stream.snapshot import RecentFrames
from har_stream.sources.tap import TapSource
from har_stream.sources import open_source
from har_stream.synthetic import write_motion_clip
from har_stream.worker import ModelWorker

SCRIPT = (("moving left", 2.0), ("holding still", 2.4))
CHANGE_AT = 2.0
DURATION = 4.4
FPS = 15.0
WINDOW = 16
STRIDE = 4
# A boundary lands within half a window (the window straddling the change is labelled by its majority) plus
# one stride (the live smoother switches a window or so late).
TOLERANCE = WINDOW / FPS / 2 + STRIDE / FPS


def write_two_action_clip(path: Path) -> Path:
    return write_motion_clip(path, SCRIPT, seed=11, speed=0.35, start=(0.78, 0.3), fps=FPS)


async def run_clip(checkpoint: Path, clip: Path, emit: Callable[[ActionEvent], None], *,
                   settings: DetectorSettings = DetectorSettings(min_duration_s=1.0, update_every_s=1.0),
                   stream: str = "cam") -> None:
    """Run ``clip`` through the engine and the detector; every action event goes to ``emit``, the last
    ``end`` (reason ``stopped``) included."""
    model = load_cnn_lstm(checkpoint, torch.device("cpu"))
    recent = RecentFrames(capacity=1000, every_s=0.0)  # offline: the source may run far ahead of the labels
    detector = ActionEventDetector(stream, model.info.labels, settings, snapshot=recent, emit=emit)
    async with ModelWorker(model) as worker:
        source = TapSource(open_source(clip, sample_fps=FPS, prepare=FramePreparer.for_model(model.info),
                                       policy="block"), recent.keep)
        async with source:
            info = await source.open()
            pipeline = StreamPipeline(stream, source, worker, StreamSettings(window=WINDOW, stride=STRIDE), detector)
            await pipeline.run(source_fps=info.fps)
    for action in detector.close():
        emit(action)
