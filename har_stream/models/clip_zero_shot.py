"""CLIP zero-shot over any label set: frame embeddings vs. prompt embeddings, from a local transformers directory.

``ClipEncoder`` is loaded once (model + tokenizer + image config). Text embeddings are computed once per
label set and prompt, then cached; ``with_labels`` gives a ``VideoModel`` whose ``encode`` is the per-frame
image embedding (the engine caches it per frame) and whose ``classify`` is the mean of a window's frame
embeddings against the label prompts. Everything loads with ``local_files_only=True``: nothing is fetched.

On CUDA the encoder owns a CUDA stream and runs all its work on it (``cuda_stream()``; the worker runs CLIP's
whole batches under it), so CLIP's kernels overlap the primary model's, which run on the default stream, instead
of queueing behind them. On a CPU there is no stream and nothing changes.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import LabelsError, ModelError, WeightsMissingError
from ..labels import DEFAULT_PROMPT, check_prompt, humanize
from .base import ModelInfo, Size, VideoModel
from .resampling import Resampling

TEXT_BATCH = 256  # prompts per text-encoder call: bounds memory for large label sets
TEXT_CACHE_SETS = 8  # label sets whose text embeddings are kept; least recently used is evicted
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _features(out: Any) -> torch.Tensor:
    """transformers 4.x returns the projected features; 5.x returns an output whose pooler_output holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _size_field(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
    return int(value) if value is not None else None


def image_geometry(image_processor: Any, image_size: int) -> tuple[int | Size, Size]:
    """(resize, crop) in ``ModelInfo``'s convention from a CLIP image processor's config."""
    size = image_processor.size
    short = _size_field(size, "shortest_edge")
    resize: int | Size
    if short is not None:
        resize = short
    else:
        h, w = _size_field(size, "height"), _size_field(size, "width")
        resize = (h, w) if h and w else image_size
    cropping = getattr(image_processor, "do_center_crop", False)
    crop_size = getattr(image_processor, "crop_size", None) if cropping else None
    ch, cw = _size_field(crop_size, "height"), _size_field(crop_size, "width")
    if ch and cw:
        return resize, (ch, cw)
    return resize, resize if isinstance(resize, tuple) else (resize, resize)


_PIL_FILTERS = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values CLIP processors are configured with


def image_resampling(image_processor: Any) -> Resampling:
    """How ``image_processor`` resizes and crops, for ``FramePreparer`` to do the same.

    transformers' ``CLIPImageProcessor`` resizes with torchvision.transforms.v2 on uint8 tensors, antialiased,
    and truncates the crop margin; its PIL twin (``CLIPImageProcessorPil``, the original OpenAI recipe) resizes
    with PIL, which the v2 kernel matches to within two grey levels (measured in tests/test_model_parity.py).
    """
    value = int(getattr(image_processor, "resample", 3))
    try:
        filter_ = _PIL_FILTERS[value]
    except KeyError:
        raise ModelError(f"the CLIP image processor resamples with PIL filter {value}; har-stream reproduces "
                         "only bilinear (2) and bicubic (3): fix preprocessor_config.json") from None
    return Resampling(filter_, antialias=True, kernel="uint8", crop_rounding="floor",  # type: ignore[arg-type]
                      reference=f"transformers {type(image_processor).__name__}")


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


class ClipEncoder:
    """A loaded CLIP. Not thread-safe: like any model it is owned by one inference thread."""

    def __init__(self, model: Any, tokenizer: Any, image_info: ModelInfo, device: torch.device,
                 prompt: str = DEFAULT_PROMPT, image_processor: Any = None) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.image_processor = image_processor  # the reference transform the engine's preparer reproduces
        self.image_info = image_info
        self.device = device
        self.prompt = check_prompt(prompt)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        text_cfg = self.model.config.text_config
        self._max_tokens = min(int(tokenizer.model_max_length), int(text_cfg.max_position_embeddings))
        self._text_cache: OrderedDict[tuple[tuple[str, ...], str], torch.Tensor] = OrderedDict()
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def cuda_stream(self) -> contextlib.AbstractContextManager[object]:
        """CLIP's own CUDA stream as the current one (a no-op context on a CPU), for a caller whose whole batch
        runs on it, inputs made and outputs read there too (``ModelWorker``): nothing waits for other streams."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        """CLIP's stream for one call from anywhere: entered from another stream, CLIP's first waits for the
        caller's work (its inputs) and the caller then waits for CLIP's (its outputs), on the GPU."""
        if self.stream is None or torch.cuda.current_stream(self.device) == self.stream:
            yield
            return
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream):
            yield
        caller.wait_stream(self.stream)

    def prompts(self, labels: Sequence[str]) -> list[str]:
        return [self.prompt.format(label=humanize(label)) for label in labels]

    @torch.inference_mode()
    def text_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """(L, D) L2-normalised prompt embeddings, computed once per (labels, prompt) and cached."""
        key = (tuple(labels), self.prompt)
        cached = self._text_cache.get(key)
        if cached is not None:
            self._text_cache.move_to_end(key)
            return cached
        texts = self.prompts(key[0])
        chunks = []
        with self._on_stream():
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.tokenizer(texts[start:start + TEXT_BATCH], padding=True, truncation=True,
                                        max_length=self._max_tokens, return_tensors="pt").to(self.device)
                chunks.append(_features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                                     attention_mask=tokens["attention_mask"])))
            embeddings = F.normalize(torch.cat(chunks).float(), dim=-1)
            if self.stream is not None:
                self.stream.synchronize()  # cached and read later from any stream: finished before it is shared
        self._text_cache[key] = embeddings
        while len(self._text_cache) > TEXT_CACHE_SETS:
            self._text_cache.popitem(last=False)
        return embeddings

    @torch.inference_mode()
    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels → (N, D) L2-normalised image embeddings."""
        caller = torch.cuda.current_stream(self.device) if self.stream is not None else None
        with self._on_stream():
            if caller is not None and caller != self.stream:
                pixels.record_stream(self.stream)  # made on the caller's stream, read on CLIP's
            out = F.normalize(_features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
        if caller is not None and caller != self.stream:
            out.record_stream(caller)  # made on CLIP's stream, read on the caller's
        return out

    def with_labels(self, labels: Sequence[str], label_set: str) -> ClipZeroShotModel:
        """A ``VideoModel`` over ``labels`` that shares this encoder (and its text cache)."""
        return ClipZeroShotModel(self, labels, label_set)


class ClipZeroShotModel(VideoModel):
    """``encode`` = per-frame image embeddings; ``classify`` = mean embedding vs. the label prompts."""

    def __init__(self, encoder: ClipEncoder, labels: Sequence[str], label_set: str) -> None:
        if not labels:
            raise LabelsError(f"label set {label_set!r} is empty; CLIP needs at least one label to choose from")
        self.encoder = encoder
        self.device = encoder.device
        self.info = replace(encoder.image_info, labels=tuple(labels), label_set=label_set)

    def cuda_stream(self) -> contextlib.AbstractContextManager[object]:
        """The encoder's own CUDA stream; ``ModelWorker`` runs this view's whole batches under it."""
        return self.encoder.cuda_stream()

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder.image_embeddings(self.normalise(frames))

    @torch.inference_mode()
    def classify(self, windows: torch.Tensor) -> torch.Tensor:
        text = self.encoder.text_embeddings(self.info.labels)
        clip = F.normalize(windows.to(self.device).float().mean(dim=1), dim=-1)
        return self.encoder.logit_scale * clip @ text.T


def _check_directory(model_dir: Path) -> None:
    """Clear one-line errors for the ways a directory is not a usable CLIP, before transformers tries."""
    hint = "pass a local copy of openai/clip-vit-base-patch32 or run `har-stream weights pull clip`"
    if not model_dir.is_dir():
        raise WeightsMissingError(f"CLIP directory {model_dir} does not exist; {hint}")
    config = model_dir / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise ModelError(f"{model_dir} is not a transformers model directory (no config.json); {hint}") from None
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"{config} is not a readable JSON model config; {hint}") from None
    if model_type != "clip":
        raise ModelError(f"{model_dir} holds a {model_type!r} model, not CLIP; {hint}")
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise WeightsMissingError(f"{model_dir} has a CLIP config but no weights ({' or '.join(WEIGHT_FILES)}); "
                                  f"{hint}")
    has_tokenizer = (model_dir / "tokenizer.json").is_file() or all(
        (model_dir / name).is_file() for name in ("vocab.json", "merges.txt"))
    if not has_tokenizer:
        raise ModelError(f"{model_dir} has no CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt); {hint}")
    if not (model_dir / "preprocessor_config.json").is_file():
        raise ModelError(f"{model_dir} has no preprocessor_config.json (CLIP's image settings); {hint}")


def load_clip(model_dir: Path, device: torch.device, prompt: str = DEFAULT_PROMPT, sha256: str | None = None,
              *, frames: int = 16, fps: float = 15.0, name: str = "clip") -> ClipEncoder:
    """Load CLIP from ``model_dir`` (never the network). ``sha256`` names the verified weights, if known."""
    from transformers import CLIPModel, CLIPProcessor

    model_dir = Path(model_dir)
    check_prompt(prompt)
    _check_directory(model_dir)
    try:
        model = CLIPModel.from_pretrained(model_dir, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
    except Exception as err:  # transformers/safetensors raise many kinds for damaged files
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"CLIP in {model_dir} could not be loaded ({type(err).__name__}: {first}); "
                         "replace the directory with an intact copy") from None
    image = processor.image_processor
    image_size = int(model.config.vision_config.image_size)
    resize, crop = image_geometry(image, image_size)
    if crop != (image_size, image_size):
        raise ModelError(f"{model_dir}: image processor crops to {crop} but the vision model takes "
                         f"{image_size}x{image_size}; fix preprocessor_config.json")
    info = ModelInfo(
        name=name, family="clip", labels=(), frames=frames, fps=fps, resize=resize, crop=crop,
        mean=_triple(image.image_mean), std=_triple(image.image_std),
        label_set="", weights_sha256=sha256, caches_features=True, resampling=image_resampling(image),
    )
    return ClipEncoder(model, processor.tokenizer, info, device, prompt, image_processor=image)
