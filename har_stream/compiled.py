"""``--compile``: the model's heavy network through ``torch.compile``, falling back to eager when that fails.

The heavy network is what another runtime would take over (``runtime.heavy_part``): a Kinetics 3D CNN's whole
network, the CNN-LSTM's frame encoder. Normalisation, the LSTM head and CLIP stay eager. The mode follows the
device: on CUDA ``reduce-overhead`` (CUDA graphs: one launch per batch shape instead of one per kernel, what pays
for the many small kernels of a batched live engine), on a CPU ``default`` (inductor's fused C++ kernels).

CUDA graphs are recorded per input shape, so under ``reduce-overhead`` a batch is padded with zeros to the next
power of two (at most 2× the work, usually far less; the padding's outputs are dropped): a handful of graphs
instead of one per batch size the batcher happens to form. The batch dimension is marked dynamic, so inductor
compiles once for every batch size above 1 rather than once each. ``warm_buckets`` runs every such size once at
load, so no live stream waits for a compile.

``torch.compile`` compiles lazily, at the first call, and can fail there for reasons the user cannot fix (no C
compiler, an unsupported op, a Triton missing for the card). A failure is logged with its reason once and the
model then runs eager for good, so ``--compile`` never costs a label. Off by default: on this project's CPU
``bench runtimes`` measured it 1.1-1.4× faster than eager but slower than OpenVINO, which ``--runtime auto`` picks
there; a model on OpenVINO or ONNX Runtime is left as it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

from .models.base import VideoModel
from .runtime import heavy_part

log = logging.getLogger(__name__)

MODES = {"cuda": "reduce-overhead", "cpu": "default"}


def compile_mode(device: torch.device) -> str:
    return MODES.get(device.type, "default")


class GuardedCompile:
    """``net`` compiled; the first failure of the compiled call switches to eager ``net`` for good."""

    def __init__(self, net: torch.nn.Module, name: str, *, mode: str,
                 backend: str | Callable[..., Any] = "inductor") -> None:
        self.net = net
        self.name = name
        self.mode = mode
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = torch.compile(
            net, mode=mode if backend == "inductor" else None, backend=backend)
        self.failure: str | None = None  # why it runs eager, once it does
        self._lock = threading.Lock()  # the warm-up and the inference thread may both make a first call

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self.compiled
        if compiled is not None:
            try:
                with self._lock:
                    if self.mode != "reduce-overhead":
                        torch._dynamo.maybe_mark_dynamic(x, 0)  # one compile for every batch size, not one each
                        return compiled(x)
                    torch.compiler.cudagraph_mark_step_begin()  # the last batch's outputs were copied out
                    padded = pad_to_bucket(x)
                    torch._dynamo.maybe_mark_dynamic(padded, 0)
                    # CUDA graphs reuse their output memory at the next replay, and features are kept (ring
                    # buffer): copied out, before another call can replay the graph
                    return compiled(padded)[:x.shape[0]].clone()
            except Exception as err:  # dynamo, inductor and the C/Triton toolchains raise many kinds
                self.failure = failure_reason(err)
                self.compiled = None
                log.warning("model %s: torch.compile failed (%s); running eager", self.name, self.failure)
        return self.net(x)


def bucket(n: int) -> int:
    """The batch size a batch of ``n`` is padded to under CUDA graphs: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def pad_to_bucket(x: torch.Tensor) -> torch.Tensor:
    """``x`` with zero rows appended up to ``bucket(len(x))``, in ``x``'s memory layout (channels_last stays)."""
    n = x.shape[0]
    size = bucket(n)
    if size == n:
        return x
    layout = next((f for f, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5))
                   if x.dim() == dims and x.is_contiguous(memory_format=f) and not x.is_contiguous()),
                  torch.contiguous_format)
    padded = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])
    return padded.contiguous(memory_format=layout)


def warm_buckets(model: VideoModel, precision: str, max_batch: int) -> None:
    """Compile (and on CUDA record) the heavy network at every batch size it will meet, before serving: frames
    through ``encode`` and windows through ``classify``, 1, 2, 4 ... up to ``max_batch``. A no-op for a model
    ``with_compile`` left alone."""
    from .worker import autocast_dtype

    if getattr(model, "compile_guard", None) is None:
        return
    dtype = autocast_dtype(precision, model.device)
    h, w = model.info.crop
    sizes = sorted({min(bucket(n), max_batch) for n in range(1, max_batch + 1)})
    with torch.inference_mode(), torch.autocast(model.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        for size in sizes:
            features = model.encode(torch.zeros(size, h, w, 3, dtype=torch.uint8))
            window = features[:1].expand(model.info.frames, *features.shape[1:])
            model.classify(window.unsqueeze(0).expand(size, *window.shape).contiguous())


def failure_reason(err: BaseException) -> str:
    """One line: the backend's own error (dynamo wraps it, and its first line only names the backend)."""
    root = getattr(err, "inner_exception", None) or err.__cause__ or err
    lines = [line.strip() for line in str(root).strip().splitlines() if line.strip()]
    return f"{type(root).__name__}: {lines[0][:300] if lines else 'no message'}"


def with_compile(model: VideoModel, enabled: bool, *, mode: str | None = None,
                 backend: str | Callable[..., Any] = "inductor") -> VideoModel:
    """``model`` with its heavy network compiled when ``enabled`` and it runs on torch; else ``model`` itself.

    ``backend`` is torch.compile's (a test passes one that fails, to prove the fallback)."""
    if not enabled or getattr(model, "compile_guard", None) is not None:  # off, or compiled already
        return model
    runtime = getattr(model, "runtime", "torch")
    part = heavy_part(model) if runtime == "torch" else None
    with_heavy = getattr(model, "with_heavy", None)
    if part is None or with_heavy is None:
        why = f"its network runs on {runtime}" if runtime != "torch" else f"{model.info.family} models run eager"
        log.info("model %s: --compile skipped: %s", model.info.name, why)
        return model
    mode = mode or compile_mode(model.device)
    guarded = GuardedCompile(part[1], model.info.name, mode=mode, backend=backend)
    log.info("model %s: %s compiled with torch.compile (mode %s) at its first call", model.info.name, part[0], mode)
    compiled = with_heavy(guarded)
    compiled.compile_guard = guarded  # type: ignore[attr-defined]  # what ran: compile_guard.failure says
    return compiled
