"""CPU runtimes side by side: PyTorch eager (fp32, bf16), torch.compile, ONNX Runtime and OpenVINO (fp32, bf16,
and int8 from post-training static quantisation calibrated on frames of real clips), on the same inputs in one run.

Each row gives the time per call (best of ``repeats``) and how close the outputs stay to PyTorch fp32 on inputs
made from real footage: the largest difference relative to the output's spread, and for the classifiers the
top-1 agreement. The networks carry seeded random weights (speed does not depend on their values); whether a
runtime keeps a *trained* model's labels is what tests/test_runtime.py checks.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch import nn

from ..models.base import IMAGENET_MEAN, IMAGENET_STD

NETWORKS = ("resnet18", "r2plus1d-18", "s3d")
RUNTIMES = ("torch-fp32", "torch-bf16", "torch-compile", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32",
            "openvino-bf16", "openvino-int8")
KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class Network:
    name: str
    describe: str
    net: nn.Module
    example: torch.Tensor  # one call's input, normalised
    classifier: bool  # outputs logits (top-1 is meaningful)
    memory_format: torch.memory_format


@dataclass(frozen=True)
class RuntimeFigure:
    network: str
    runtime: str
    seconds: float | None  # per call
    items_per_s: float | None  # frames/s (encoder) or clips/s
    max_rel_diff: float | None  # max |out - torch fp32| / spread of torch fp32's output
    top1_agreement: float | None
    note: str = ""


def build(name: str, *, batch: int = 16, size: int | None = None) -> Network:
    """The benchmark's networks with seeded random weights; ``size`` shrinks the input (smoke tests)."""
    from torchvision.models import resnet18
    from torchvision.models import video as tvv

    torch.manual_seed(0)
    if name == "resnet18":
        net = resnet18(weights=None)
        net.fc = nn.Identity()
        s = size or 112
        return Network(name, f"ResNet-18 frame encoder, batch {batch} at {s}x{s}", net.eval(),
                       torch.zeros(batch, 3, s, s), False, torch.channels_last)
    builders = {"r2plus1d-18": (tvv.r2plus1d_18, 112), "s3d": (tvv.s3d, 224)}
    if name not in builders:
        raise ValueError(name)
    builder, default = builders[name]
    s = size or default
    return Network(name, f"{name}, 1 clip of 16x{s}x{s}", builder(weights=None).eval(), torch.zeros(1, 3, 16, s, s),
                   True, torch.channels_last_3d)


def real_inputs(network: Network, videos: Sequence[Path], count: int) -> torch.Tensor:
    """``count`` calls' worth of normalised inputs from real clips (synthetic motion where there are none)."""
    from ..synthetic import LABELS, render

    shape = network.example.shape
    h, w = shape[-2:]
    frames: list[np.ndarray] = []
    for path in videos:
        with av.open(str(path)) as container:
            frames += [f.to_ndarray(width=w, height=h, format="rgb24") for f in container.decode(video=0)]
    if not frames:
        rng = np.random.default_rng(0)
        frames = [f for label in LABELS for f in render(label, 64, width=w, height=h, rng=rng)]
    video = network.example.dim() == 5
    mean, std = (KINETICS_MEAN, KINETICS_STD) if video else (IMAGENET_MEAN, IMAGENET_STD)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    per_call = shape[0] * (shape[2] if video else 1)
    x = x[np.arange(count * per_call) % len(x)]  # consecutive frames, wrapping around short footage
    if video:  # (count, B, T, 3, h, w) → (count, B, 3, T, h, w)
        return x.view(count, shape[0], shape[2], 3, h, w).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(count, shape[0], 3, h, w)


def _time(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up (and, for compiled code, compile)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _runner(runtime: str, network: Network, folder: Path, calibration: torch.Tensor) -> Callable[[torch.Tensor], np.ndarray]:
    net, example = network.net, network.example
    if runtime.startswith("torch"):
        model = net.to(memory_format=network.memory_format)
        if runtime == "torch-compile":
            model = torch.compile(model)
        bf16 = runtime == "torch-bf16"

        def run_torch(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x.contiguous(memory_format=network.memory_format)).float().numpy()
        return run_torch
    onnx_path = folder / f"{network.name}.onnx"
    if not onnx_path.exists():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.to(memory_format=torch.contiguous_format), (example,), str(onnx_path),
                              input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
    path = onnx_path
    if runtime.endswith("int8"):
        path = folder / f"{network.name}-int8.onnx"
        if not path.exists():
            _quantise(onnx_path, path, calibration)
    threads = torch.get_num_threads()
    if runtime.startswith("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: np.asarray(session.run(None, {"x": x.numpy()})[0])
    import openvino as ov

    hint = "bf16" if runtime == "openvino-bf16" else "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": str(threads)})
    return lambda x: np.asarray(compiled(x.numpy())[0])


def _quantise(src: Path, dst: Path, calibration: torch.Tensor) -> None:
    """Post-training static int8 (QDQ, per-channel weights), calibrated on the real-clip inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x.numpy()} for x in calibration])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.items, None)

    logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger; the figures say enough
    try:
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def run_runtime_bench(networks: Sequence[str] = NETWORKS, runtimes: Sequence[str] = RUNTIMES, *, repeats: int = 3,
                      videos: Sequence[Path] = (), batch: int = 16, size: int | None = None,
                      inputs: int = 4) -> list[RuntimeFigure]:
    figures: list[RuntimeFigure] = []
    with tempfile.TemporaryDirectory(prefix="har-stream-runtimes-") as tmp:
        for name in networks:
            network = build(name, batch=batch, size=size)
            data = real_inputs(network, videos, inputs)
            items = network.example.shape[0]
            reference: np.ndarray | None = None
            for runtime in runtimes:
                try:
                    run = _runner(runtime, network, Path(tmp), data)
                    seconds = _time(lambda: run(network.example), repeats)
                    outputs = np.stack([run(x) for x in data])
                except Exception as err:  # a runtime that is missing or cannot take this network: say so
                    figures.append(RuntimeFigure(network.describe, runtime, None, None, None, None,
                                                 f"not measured: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                                                 if str(err) else f"not measured: {type(err).__name__}"))
                    continue
                if runtime == "torch-fp32":
                    reference = outputs
                rel = agree = None
                if reference is not None:
                    spread = float(reference.max() - reference.min()) or 1.0
                    rel = float(np.abs(outputs - reference).max() / spread)
                    if network.classifier:
                        agree = float(np.mean(outputs.reshape(-1, outputs.shape[-1]).argmax(1)
                                              == reference.reshape(-1, reference.shape[-1]).argmax(1)))
                figures.append(RuntimeFigure(network.describe, runtime, seconds, items / seconds, rel, agree))
    return figures
