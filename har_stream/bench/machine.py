"""Describe the machine a figure came from, so numbers are never quoted without it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(device: torch.device) -> str:
    parts = [f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} intra-op threads"]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    else:
        parts.append("no GPU used")
    return "; ".join(parts)


def untrained_cnn_lstm_net():  # -> CnnLstmNet; untyped so this module does not import the model at load
    """The benchmarks' CNN-LSTM: ResNet-18 → BiLSTM over UCF101's 101 labels, seeded random weights.

    Speed does not depend on the weights' values, and no pretrained weights are needed to measure it.
    """
    from ..labels import load_label_set
    from ..models.cnn_lstm import CnnLstmConfig, CnnLstmNet

    torch.manual_seed(0)
    labels = load_label_set("ucf101")
    return CnnLstmNet(CnnLstmConfig(labels=labels.labels, label_set="ucf101"))
