"""CLIP zero-shot: loading from a local directory, the label-set contract, text caching, and numerics.

A tiny random CLIP (tests/helpers/tiny_clip.py) goes through the real ``from_pretrained`` path; its logits
are checked against transformers' own ``CLIPProcessor`` + ``CLIPModel`` forward, so the image contract
(mean/std/crop), the prompt template, the humanized labels and the window pooling are all pinned down.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPProcessor

from har_stream.errors import ConfigError, LabelsError, ModelError, WeightsMissingError
from har_stream.models.clip_zero_shot import DEFAULT_PROMPT, TEXT_CACHE_SETS, load_clip
from tests.helpers.tiny_clip import IMAGE_SIZE, make_tiny_clip

CPU = torch.device("cpu")
LABELS = ("ApplyEyeMakeup", "Basketball", "jumping jack", "YoYo")
PROMPTS = ["a photo of someone apply eye makeup", "a photo of someone basketball",
           "a photo of someone jumping jack", "a photo of someone yo yo"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def reference(clip_dir: Path) -> tuple[CLIPModel, CLIPProcessor]:
    return (CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval(),
            CLIPProcessor.from_pretrained(clip_dir, local_files_only=True))


def _frames(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8, generator=gen)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_image_info_comes_from_the_processor_config(clip_dir: Path, reference) -> None:
    encoder = load_clip(clip_dir, CPU, sha256="cd" * 32)
    image = reference[1].image_processor
    info = encoder.image_info
    assert (info.family, info.frames, info.fps, info.caches_features) == ("clip", 16, 15.0, True)
    assert info.resize == IMAGE_SIZE and info.crop == (IMAGE_SIZE, IMAGE_SIZE)
    assert info.mean == pytest.approx(tuple(image.image_mean)) and info.std == pytest.approx(tuple(image.image_std))
    assert info.weights_sha256 == "cd" * 32
    model = encoder.with_labels(LABELS, "mini")
    assert model.info.labels == LABELS and model.info.label_set == "mini" and model.info.num_classes == 4
    assert encoder.prompts(LABELS) == PROMPTS  # UCF101 CamelCase is humanized into the default template


def test_logits_equal_transformers_clip_forward(clip_dir: Path, reference) -> None:
    """One-frame windows must give exactly CLIPModel's logits_per_image for the same images and prompts."""
    ref_model, processor = reference
    frames = _frames(5, seed=1)
    model = load_clip(clip_dir, CPU).with_labels(LABELS, "mini")
    features = model.encode(frames)
    assert features.shape == (5, 16)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5))
    ours = model.classify(features.unsqueeze(1))

    inputs = processor(text=PROMPTS, images=list(frames.numpy()), return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = ref_model(**inputs).logits_per_image
    assert ours.shape == (5, len(LABELS))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_window_is_the_mean_of_its_frame_embeddings(clip_dir: Path, reference) -> None:
    ref_model, processor = reference
    frames = _frames(8, seed=2)
    model = load_clip(clip_dir, CPU).with_labels(LABELS, "mini")
    ours = model.classify(model.encode(frames).view(2, 4, -1))

    with torch.inference_mode():
        pixels = processor(images=list(frames.numpy()), return_tensors="pt")["pixel_values"]
        img = ref_model.get_image_features(pixel_values=pixels)
        img = img if isinstance(img, torch.Tensor) else img.pooler_output
        tokens = processor.tokenizer(PROMPTS, padding=True, return_tensors="pt")
        txt = ref_model.get_text_features(**tokens)
        txt = F.normalize(txt if isinstance(txt, torch.Tensor) else txt.pooler_output, dim=-1)
        window = F.normalize(F.normalize(img, dim=-1).view(2, 4, -1).mean(1), dim=-1)
        expected = ref_model.logit_scale.exp() * window @ txt.T
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert ours.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_logits_follow_the_label_order(clip_dir: Path) -> None:
    """Logit i is label i's score: reordering the label set reorders the logits the same way."""
    encoder = load_clip(clip_dir, CPU)
    features = encoder.with_labels(LABELS, "mini").encode(_frames(4, seed=3)).view(1, 4, -1)
    forward = encoder.with_labels(LABELS, "mini").classify(features)
    backward = encoder.with_labels(LABELS[::-1], "mini-reversed").classify(features)
    torch.testing.assert_close(backward, forward.flip(-1))
    subset = encoder.with_labels(LABELS[1:3], "two").classify(features)
    torch.testing.assert_close(subset, forward[:, 1:3])
    assert LABELS[1:3][int(subset.argmax())] in LABELS[1:3]


def test_text_embeddings_are_computed_once_per_label_set(clip_dir: Path) -> None:
    encoder = load_clip(clip_dir, CPU)
    calls = _count_calls(encoder.model.text_model)
    windows = encoder.with_labels(LABELS, "mini").encode(_frames(4, seed=4)).view(2, 2, -1)

    model = encoder.with_labels(LABELS, "mini")
    first = model.classify(windows)
    second = model.classify(windows)
    assert calls[0] == 1 and torch.equal(first, second)
    encoder.with_labels(list(LABELS), "same labels, new model").classify(windows)
    assert calls[0] == 1  # the cache is the encoder's, keyed by the labels, shared by its models

    encoder.with_labels(("walking", "running"), "other").classify(windows)
    assert calls[0] == 2
    for i in range(TEXT_CACHE_SETS):  # fill the bounded cache with other sets: the first is evicted
        encoder.text_embeddings((f"label{i}",))
    calls[0] = 0
    model.classify(windows)
    assert calls[0] == 1


def test_large_label_sets_are_encoded_in_chunks(clip_dir: Path) -> None:
    encoder = load_clip(clip_dir, CPU)
    calls = _count_calls(encoder.model.text_model)
    labels = tuple(f"action{i}" for i in range(300))
    text = encoder.text_embeddings(labels)
    assert text.shape == (300, 16) and calls[0] == 2  # 256 + 44 prompts
    torch.testing.assert_close(text[257], encoder.text_embeddings(("action257",))[0], rtol=1e-5, atol=1e-5)


def test_prompt_template_is_configurable(clip_dir: Path) -> None:
    encoder = load_clip(clip_dir, CPU, prompt="a video of {label}")
    assert encoder.prompts(["PlayingDaf"]) == ["a video of playing daf"]
    default = load_clip(clip_dir, CPU)
    assert not torch.allclose(encoder.text_embeddings(LABELS), default.text_embeddings(LABELS))
    for bad in ("no placeholder", "{label} and {other}", "{0} {label}"):
        with pytest.raises(ConfigError, match="must contain"):
            load_clip(clip_dir, CPU, prompt=bad)
    with pytest.raises(LabelsError):
        default.with_labels((), "empty")
    assert DEFAULT_PROMPT == "a photo of someone {label}"


def _copy_without(src: Path, dst: Path, *names: str) -> Path:
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


def test_directories_that_are_not_clip_give_clear_errors(clip_dir: Path, tmp_path: Path) -> None:
    def message(exc: type[Exception], directory: Path) -> str:
        with pytest.raises(exc) as err:
            load_clip(directory, CPU)
        text = str(err.value)
        assert "\n" not in text and str(directory) in text
        return text

    assert "does not exist" in message(WeightsMissingError, tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in message(ModelError, tmp_path / "empty")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "'bert' model, not CLIP" in message(ModelError, bert)
    assert "no weights" in message(WeightsMissingError, _copy_without(clip_dir, tmp_path / "w", "model.safetensors"))
    no_tok = _copy_without(clip_dir, tmp_path / "t", "tokenizer.json", "vocab.json", "merges.txt")
    assert "no CLIP tokenizer" in message(ModelError, no_tok)
    no_proc = _copy_without(clip_dir, tmp_path / "p", "preprocessor_config.json")
    assert "preprocessor_config.json" in message(ModelError, no_proc)
    broken = _copy_without(clip_dir, tmp_path / "b")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert "could not be loaded" in message(ModelError, broken)
