"""channels_last_3d for the Kinetics 3D CNNs (every device now, CUDA included) and channels_last for the
CNN-LSTM's frame encoder: a layout change only, so the logits equal the contiguous layout's on this CPU within
float rounding. What it is worth on a card is measured by scripts/gpu_check.sh (tests/test_cuda.py checks the
labels there).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from har_stream.models.cnn_lstm import load_cnn_lstm
from har_stream.models.torchvision_video import TorchvisionVideoModel, memory_format, model_info, spec_of

CPU = torch.device("cpu")


def test_the_conv_nets_use_channels_last_3d_and_the_transformers_do_not() -> None:
    for name in ("s3d", "r2plus1d-18", "r3d-18", "mc3-18"):
        assert memory_format(spec_of(name).channels_last_3d) == torch.channels_last_3d
    for name in ("mvit-v2-s", "swin3d-t"):
        assert memory_format(spec_of(name).channels_last_3d) == torch.contiguous_format


def test_a_3d_cnn_in_channels_last_3d_gives_the_contiguous_logits() -> None:
    spec = spec_of("r3d-18")
    torch.manual_seed(0)
    net = spec.builder(weights=None)
    info = model_info("r3d-18")
    last = TorchvisionVideoModel(copy.deepcopy(net), info, CPU, channels_last_3d=True)
    plain = TorchvisionVideoModel(net, info, CPU, channels_last_3d=False)
    assert last.net.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    frames = torch.randint(0, 256, (info.frames, *info.crop, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    windows = last.encode(frames).unsqueeze(0)
    a, b = last.classify(windows), plain.classify(windows)
    spread = float(b.max() - b.min())
    assert float((a - b).abs().max()) <= 1e-4 * spread
    assert torch.equal(a.argmax(dim=1), b.argmax(dim=1))


def test_the_cnn_lstm_encoder_in_channels_last_gives_the_contiguous_features(tiny_checkpoint: Path) -> None:
    model = load_cnn_lstm(tiny_checkpoint, CPU)  # the tiny encoder stays contiguous on a CPU ...
    assert not model.net.encoder.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    last = load_cnn_lstm(tiny_checkpoint, CPU)
    last.net.encoder.to(memory_format=torch.channels_last)  # ... and is channels_last on CUDA, as here
    frames = torch.randint(0, 256, (16, *model.info.crop, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(last.encode(frames), model.encode(frames), rtol=1e-5, atol=1e-5)
