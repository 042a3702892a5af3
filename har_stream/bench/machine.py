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
