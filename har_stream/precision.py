"""``--precision auto``: bf16 on a CPU that computes it natively, when the model's labels do not change.

bf16 roughly doubles CPU throughput on CPUs with AVX512-BF16 or AMX, but it rounds every activation to 8
mantissa bits, and some models' labels move with that. So ``auto`` measures it per model: a probe of synthetic
motion windows runs in fp32 and in bf16, and bf16 is chosen only when the top-1 labels agree on at least 99 %
of them. The decision and its reason are logged, kept on the model object, and remembered per machine in
``$HAR_STREAM_HOME/precision.json`` (keyed by the weights' sha256, the runtime, the CPU model and torch's
version), so a server restart does not probe again. On CUDA ``auto`` is fp16; on other CPUs it is fp32.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .bench.machine import cpu_model
from .fileutil import publish
from .models.base import VideoModel
from .synthetic import LABELS, make_background, render

log = logging.getLogger(__name__)

AGREEMENT_MIN = 0.99  # of the probe windows whose bf16 top-1 must equal fp32's
# Probe windows per synthetic motion: sliding windows over one sequence share its frames, so a frame-level model
# (CNN-LSTM, CLIP) encodes few frames; a clip model runs its whole network per window, so it gets fewer.
WINDOWS_PER_MOTION = {True: 3, False: 1}  # keyed by ``ModelInfo.caches_features``
PROBE_CHUNK = 4  # windows per classify call: a clip model at 224² would need gigabytes for all at once
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CACHE_FILE = "precision.json"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32, bf16 or fp16
    reason: str
    agreement: float | None = None  # bf16 vs fp32 top-1 agreement on the probe, when it was measured


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def probe_sequences(frames: int, crop: tuple[int, int], windows_per_motion: int) -> np.ndarray:
    """(motions, frames + windows_per_motion - 1, h, w, 3) uint8: a square moving each synthetic way."""
    h, w = crop
    length = frames + windows_per_motion - 1
    rng = np.random.default_rng(0)
    return np.stack([render(label, length, width=w, height=h, rng=rng, background=make_background(w, h, rng))
                     for label in LABELS])


@torch.inference_mode()
def _top1(model: VideoModel, sequences: np.ndarray, frames: int, dtype: torch.dtype | None) -> np.ndarray:
    """Top-1 of every sliding window (stride 1) of ``frames`` over each sequence, each frame encoded once."""
    tops = []
    with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for sequence in sequences:
            feats = model.encode(torch.from_numpy(sequence))
            windows = feats.unfold(0, frames, 1).movedim(-1, 1)  # (k, frames, ...)
            for start in range(0, len(windows), PROBE_CHUNK):
                logits = model.classify(windows[start:start + PROBE_CHUNK].contiguous())
                tops.append(logits.float().argmax(dim=1).cpu().numpy())
    return np.concatenate(tops)


def bf16_agreement(model: VideoModel, sequences: np.ndarray) -> float:
    """Share of the probe windows whose bf16 top-1 label is the fp32 one."""
    frames = model.info.frames
    return float(np.mean(_top1(model, sequences, frames, None) == _top1(model, sequences, frames, torch.bfloat16)))


class DecisionCache:
    """``precision.json``: one decision per (weights, CPU, torch). Unreadable or unwritable is never an error."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / CACHE_FILE

    @staticmethod
    def key(model: VideoModel) -> str | None:
        sha = model.info.weights_sha256
        runtime = getattr(model, "runtime", "torch")  # OpenVINO's bf16 is not PyTorch's: decided apart
        return f"{model.info.name}|{sha}|{runtime}|{cpu_model()}|{torch.__version__}" if sha else None

    def get(self, key: str) -> PrecisionChoice | None:
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8")).get(key)
            return PrecisionChoice(**entry) if isinstance(entry, dict) else None
        except (OSError, ValueError, TypeError):
            return None

    def put(self, key: str, choice: PrecisionChoice) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
            if not isinstance(data, dict):
                data = {}
            data[key] = asdict(choice)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{CACHE_FILE}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
            publish(tmp, self.path)
        except (OSError, ValueError) as err:
            log.debug("could not remember the precision decision in %s: %s", self.path, err)


def choose_auto(model: VideoModel, *, flags: frozenset[str] | None = None,
                cache: DecisionCache | None = None) -> PrecisionChoice:
    """What ``auto`` means for ``model`` on this machine (see the module docstring)."""
    if model.device.type == "cuda":
        return PrecisionChoice("fp16", "auto on a CUDA device")
    flags = cpu_flags() if flags is None else flags
    native = [f for f in BF16_FLAGS if f in flags]
    if not native:
        return PrecisionChoice("fp32", "this CPU has no native bf16 (neither AVX512-BF16 nor AMX)")
    key = DecisionCache.key(model) if cache is not None else None
    if cache is not None and key is not None and (known := cache.get(key)) is not None:
        return known
    info = model.info
    per_motion = WINDOWS_PER_MOTION[info.caches_features]
    agreement = bf16_agreement(model, probe_sequences(info.frames, info.crop, per_motion))
    shown = f"{agreement:.0%} of {per_motion * len(LABELS)} synthetic probe windows"
    if agreement >= AGREEMENT_MIN:
        choice = PrecisionChoice("bf16", f"the CPU has {'/'.join(native)} and bf16 kept fp32's top-1 label on "
                                         f"{shown}", agreement)
    else:
        choice = PrecisionChoice("fp32", f"bf16 kept fp32's top-1 label on only {shown} (needs "
                                         f"{AGREEMENT_MIN:.0%})", agreement)
    if cache is not None and key is not None:
        cache.put(key, choice)
    return choice


def resolve_precision(model: VideoModel, requested: str, *, home: Path | None = None) -> PrecisionChoice:
    """``requested`` as given, or what ``auto`` means for ``model``; decided once per model object and logged.

    Blocking (``auto`` may run the model): call it where the model was loaded, off the event loop.
    """
    if requested != "auto":
        return PrecisionChoice(requested, "asked for")
    known = getattr(model, "_auto_precision", None)
    if isinstance(known, PrecisionChoice):
        return known
    from .weights import default_home

    choice = choose_auto(model, cache=DecisionCache(home or default_home()))
    model._auto_precision = choice  # type: ignore[attr-defined]  # one probe per loaded model
    log.info("model %s: precision %s (%s)", model.info.name, choice.precision, choice.reason)
    return choice
