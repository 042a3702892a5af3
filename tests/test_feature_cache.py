"""The per-frame feature cache: through the real offline engine, every sampled frame is encoded once.

A CNN-LSTM (tiny encoder, random weights: this test compares two code paths, it does not judge labels) runs
``analyse`` on a real H.264 clip at stride 1, where each frame sits in up to 16 windows. A forward hook on
the encoder sees every frame it is given. The cached engine must (1) encode each sampled frame exactly once
and (2) give, window by window, the same label and probabilities as the naive way that re-encodes all 16
frames of every window.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from har_stream.analyse import analyse
from har_stream.models.cnn_lstm import CnnLstmConfig, CnnLstmModel, CnnLstmNet
from har_stream.pipeline import StreamSettings
from har_stream.preprocess import FramePreparer
from har_stream.sources import AvSource
from har_stream.synthetic import LABELS, write_motion_clip
from har_stream.worker import BatchSettings, ModelWorker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
WINDOW = 16
SCRIPT = [("moving right", 1.6), ("moving up", 1.4)]  # 24 + 21 = 45 frames at 15 fps, all distinct
FRAMES = 45




@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_motion_clip(tmp_path_factory.mktemp("cache") / "motion.mp4", SCRIPT, fps=15.0, seed=3)


def _model() -> CnnLstmModel:
    torch.manual_seed(7)
    cfg = CnnLstmConfig(labels=LABELS, label_set="synthetic", encoder="tiny", hidden=32, layers=2,
                        frames=WINDOW, size=(64, 64), fps=15.0)
    return CnnLstmModel(CnnLstmNet(cfg), CPU)  # the wrapper puts the net in eval mode


def _frame_key(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().contiguous().numpy().tobytes()).hexdigest()


async def _prepared_frames(clip: Path, model: CnnLstmModel) -> np.ndarray:
    """The same sampled, prepared frames the engine sees (same source, same preparer)."""
    async with AvSource(clip, sample_fps=model.info.fps, prepare=FramePreparer.for_model(model.info)) as src:
        return np.stack([f.image async for f in src.frames()])


async def test_stride_1_encodes_each_frame_once_and_matches_the_naive_re_encode(clip: Path) -> None:
    model = _model()
    assert not model.net.training  # BatchNorm on running statistics: a frame's feature ignores its batch
    seen: list[str] = []  # one key per frame the encoder was given
    batches: list[int] = []

    def count(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        batches.append(inputs[0].shape[0])
        seen.extend(_frame_key(x) for x in inputs[0])

    hook = model.net.encoder.register_forward_hook(count)
    try:
        async with ModelWorker(model, BatchSettings(max_batch=8, max_wait_ms=2.0)) as worker:
            result = await analyse(str(clip), worker, settings=StreamSettings(window=WINDOW, stride=1))
    finally:
        hook.remove()

    assert result.frames_sampled == FRAMES
    windows = FRAMES - WINDOW + 1  # stride 1: a window ends at every frame from the 16th on; no flush
    assert len(result.segments) == windows
    assert len(seen) == FRAMES, f"encoder saw {len(seen)} frames for {FRAMES} sampled ({windows} windows)"
    assert len(set(seen)) == FRAMES  # each frame once: none skipped, none encoded twice
    assert all(n <= 8 for n in batches)

    frames = await _prepared_frames(clip, model)
    assert len(frames) == FRAMES
    naive_encoded: list[str] = []
    for i, segment in enumerate(result.segments):
        window = torch.from_numpy(frames[i:i + WINDOW])
        features = model.encode(window)
        naive_encoded.extend(_frame_key(x) for x in model.normalise(window))
        expected = torch.softmax(model.classify(features.unsqueeze(0)).float(), dim=-1)[0].numpy()
        got = dict(segment.prediction.top5)
        assert len(got) == len(LABELS)  # 4 labels: top-5 holds the whole distribution
        probs = np.array([got[label] for label in LABELS])
        np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5, err_msg=f"window {i}")
        top2 = np.sort(expected)[-2:]
        if top2[1] - top2[0] > 1e-4:  # labels must agree wherever the naive run has a clear winner
            assert segment.prediction.label == LABELS[int(np.argmax(expected))], f"window {i}"
        assert segment.prediction.source == "model"
    # The naive path needed 16 encoder passes per window; the engine needed one per frame, and on the same
    # pixels: every frame the engine encoded is one the naive run encoded too.
    assert len(naive_encoded) == WINDOW * windows
    assert set(seen) == set(naive_encoded)
