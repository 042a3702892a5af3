"""Other inference runtimes for a model's heavy network: OpenVINO (adopted) and ONNX Runtime (optional).

Measured on this project's 2-core CPU (``har-stream bench runtimes``, docs/benchmarks.md), OpenVINO runs the
ResNet-18 frame encoder and the 3D CNNs several times faster than PyTorch eager, and keeps their labels. The
engine keeps its ``VideoModel`` interface: ``RuntimeModel`` wraps a loaded PyTorch model and runs only its
heavy part elsewhere — a torchvision clip model's whole network (``classify``), the CNN-LSTM's frame encoder
(``encode``); normalisation, the LSTM head and everything else stay in PyTorch. CLIP stays on PyTorch.

Precision follows the worker's autocast, so ``--precision`` (and ``auto``'s agreement probe) work unchanged:
under bf16 autocast OpenVINO runs with ``INFERENCE_PRECISION_HINT=bf16``, otherwise ``f32``. ONNX Runtime's CPU
provider has no bf16, so it always runs fp32.

Conversion is automatic and cached next to the weights, keyed by their sha256 and the input shape
(``$HAR_STREAM_HOME/weights/exports/``): a model is converted once per machine, not once per start.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .fileutil import publish
from .models.base import VideoModel

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
INSTALL = {"openvino": "pip install openvino", "onnxruntime": "pip install onnxruntime onnx"}


class RuntimeMissingError(ConfigError):
    """An optional runtime was asked for but is not installed."""


def available(runtime: str) -> bool:
    module = {"openvino": "openvino", "onnxruntime": "onnxruntime"}.get(runtime)
    if module is None:
        return runtime == "torch"
    try:
        __import__(module)
    except ImportError:
        return False
    return runtime != "onnxruntime" or _has_onnx()


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
    except ImportError:
        return False
    return True


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown --runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime in INSTALL and not available(runtime):
        raise RuntimeMissingError(f"--runtime {runtime} needs the {runtime} package, which is not installed; "
                                  f"install it with `{INSTALL[runtime]}` (or `pip install -e '.[runtimes]'`), or "
                                  "use --runtime torch")


# What ``auto`` moves to OpenVINO: the networks ``har-stream bench runtimes`` measured faster there with the
# same labels (S3D, R(2+1)D-18, the ResNet-18 encoder; docs/benchmarks.md), and R3D-18/MC3-18, the same 3D-ResNet
# family, not measured apart. The tiny test encoder and the transformers (MViT, Swin3D) stay on torch.
AUTO_OPENVINO = frozenset({"s3d", "r2plus1d-18", "r3d-18", "mc3-18", "cnn-lstm/resnet18"})


def _auto_key(model: VideoModel) -> str:
    if model.info.family == "cnn-lstm":
        return f"cnn-lstm/{model.net.cfg.encoder}"  # type: ignore[attr-defined]
    return model.info.name


def pick_runtime(requested: str, model: VideoModel) -> str:
    """``auto``: OpenVINO for the models measured faster on it, on a CPU, where it is installed; else torch."""
    check_runtime(requested)
    if requested != "auto":
        return requested
    if model.device.type != "cpu" or _auto_key(model) not in AUTO_OPENVINO or not available("openvino"):
        return "torch"
    return "openvino"


def heavy_part(model: VideoModel) -> tuple[str, nn.Module] | None:
    """Which call of ``model`` another runtime takes over, and the network behind it."""
    family = model.info.family
    if family == "torchvision":
        return "classify", model.net  # type: ignore[attr-defined]
    if family == "cnn-lstm":
        return "encode", model.net.encoder  # type: ignore[attr-defined]
    return None


def _example(model: VideoModel, part: str, batch: int = 1) -> torch.Tensor:
    h, w = model.info.crop
    if part == "classify":
        return torch.zeros(batch, 3, model.info.frames, h, w)
    return torch.zeros(batch, 3, h, w)


class _Compiled:
    """A converted network: ``run(x: float32 ndarray, bf16: bool) -> ndarray``."""

    def run(self, x: np.ndarray, bf16: bool) -> np.ndarray:
        raise NotImplementedError


class _OpenVino(_Compiled):
    def __init__(self, xml: Path | None, net: nn.Module, example: torch.Tensor, threads: int) -> None:
        import openvino as ov

        self.core = ov.Core()
        model = None
        if xml is not None and xml.is_file():
            try:
                model = self.core.read_model(str(xml))
            except Exception as err:  # a damaged cache entry: convert again rather than fail
                log.warning("the OpenVINO export %s is unreadable (%s); converting again", xml, err)
        if model is None:
            dynamic = ov.PartialShape([-1, *example.shape[1:]])
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing's deprecation notices are not the user's concern
                model = ov.convert_model(net.eval(), example_input=example, input=[dynamic])
            if xml is not None:
                _save_atomically(xml, lambda path: ov.save_model(model, str(path)), ("xml", "bin"))
        self.model = model
        self.threads = threads
        self._compiled: dict[bool, Any] = {}

    def _get(self, bf16: bool) -> Any:
        compiled = self._compiled.get(bf16)
        if compiled is None:
            config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
            compiled = self._compiled[bf16] = self.core.compile_model(self.model, "CPU", config)
        return compiled

    def run(self, x: np.ndarray, bf16: bool) -> np.ndarray:
        return np.asarray(self._get(bf16)(x)[0])


class _OnnxRuntime(_Compiled):
    def __init__(self, path: Path | None, net: nn.Module, example: torch.Tensor, threads: int) -> None:
        import onnxruntime as ort

        def export(target: Path) -> None:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(net.eval(), (example,), str(target), input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
                                  opset_version=17)

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if path is not None:
            if not path.is_file():
                _save_atomically(path, export, ("onnx",))
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        else:
            with tempfile.TemporaryDirectory(prefix="har-stream-onnx-") as tmp:
                target = Path(tmp) / "model.onnx"
                export(target)
                self.session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray, bf16: bool) -> np.ndarray:  # the CPU provider has no bf16
        return np.asarray(self.session.run(None, {"x": x})[0])


def _save_atomically(path: Path, write: Callable[[Path], None], suffixes: tuple[str, ...]) -> None:
    """Write the export into a temp folder, then move each file into place (the main file last)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.stem}."))
    try:
        write(tmp / path.name)
        for suffix in sorted(suffixes, key=lambda s: s == path.suffix.lstrip(".")):  # the file that marks "done" last
            src = (tmp / path.name).with_suffix(f".{suffix}")
            if src.exists():
                publish(src, path.with_suffix(f".{suffix}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_path(home: Path, model: VideoModel, part: str, runtime: str) -> Path | None:
    sha = model.info.weights_sha256
    if not sha:
        return None  # nothing names these weights (e.g. a benchmark's random ones): convert in memory
    h, w = model.info.crop
    shape = f"{model.info.frames}x{h}x{w}" if part == "classify" else f"{h}x{w}"
    suffix = "xml" if runtime == "openvino" else "onnx"
    return Path(home) / "weights" / "exports" / f"{model.info.name}-{sha[:16]}-{part}-{shape}" / f"model.{suffix}"


class RuntimeModel(VideoModel):
    """``inner`` with its heavy part run by ``runtime``; the rest stays on ``inner``."""

    def __init__(self, inner: VideoModel, runtime: str, *, home: Path | None = None, threads: int | None = None) -> None:
        check_runtime(runtime)
        part = heavy_part(inner)
        if part is None or runtime not in INSTALL:
            raise ConfigError(f"{inner.info.name} ({inner.info.family}) runs on torch only; use --runtime torch")
        if inner.device.type != "cpu":
            raise ConfigError(f"--runtime {runtime} runs on the CPU; use --runtime torch with --device cuda")
        from .weights import default_home

        self.inner, self.runtime, self.part = inner, runtime, part[0]
        self.info, self.device = inner.info, inner.device
        path = export_path(home or default_home(), inner, self.part, runtime)
        threads = threads if threads is not None else torch.get_num_threads()
        cached = path is not None and path.is_file()
        kind = _OpenVino if runtime == "openvino" else _OnnxRuntime
        self.compiled: _Compiled = kind(path, part[1], _example(inner, self.part), threads)
        log.info("model %s: %s runs on %s (%s)", inner.info.name, self.part, runtime,
                 f"export cached in {path.parent}" if cached else
                 f"converted{f' and cached in {path.parent}' if path is not None else ''}")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        out = self.compiled.run(np.ascontiguousarray(x.detach().float().cpu().numpy()), bf16)
        return torch.from_numpy(out)

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if self.part != "encode":
            return self.inner.encode(frames)
        return self._run(self.inner.normalise(frames))

    @torch.inference_mode()
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        if self.part != "classify":
            return self.inner.classify(windows)
        return self._run(windows.permute(0, 2, 1, 3, 4))  # (B, T, 3, H, W) → (B, 3, T, H, W)

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inner.normalise(frames)


def with_runtime(model: VideoModel, requested: str, *, home: Path | None = None) -> VideoModel:
    """``model`` on the runtime asked for. ``auto`` falls back to torch (with a warning) if conversion fails;
    a runtime asked for by name fails loudly instead."""
    runtime = pick_runtime(requested, model)
    if runtime == "torch":
        return model
    try:
        return RuntimeModel(model, runtime, home=home)
    except ConfigError:
        raise
    except Exception as err:  # a converter can raise anything for a network it does not support
        if requested != "auto":
            raise ConfigError(f"{model.info.name} could not be converted for {runtime} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else ''}); use --runtime torch") from None
        log.warning("model %s stays on torch: %s conversion failed (%s)", model.info.name, runtime, err)
        return model
