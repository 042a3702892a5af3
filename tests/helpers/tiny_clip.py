"""A tiny, randomly initialised CLIP (model + tokenizer + image processor) written to a directory, offline.

It has the same file layout as a hub snapshot of ``openai/clip-vit-base-patch32`` (``config.json``, weights,
``vocab.json`` + ``merges.txt``, ``preprocessor_config.json``), so it exercises the real ``from_pretrained``
loading path without a download. The byte-level BPE vocabulary covers printable ASCII (each character alone
and as a word end ``x</w>``) with no merges, so every prompt tokenises; it is not meant to be meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
IMAGE_SIZE = 32
MAX_TOKENS = 64


def tiny_vocab() -> dict[str, int]:
    """Printable ASCII (GPT-2's byte-level map leaves bytes 33..126 as themselves; spaces split words)."""
    chars = [chr(b) for b in range(33, 127)]
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]  # special tokens last, as in real CLIP
    return {tok: i for i, tok in enumerate(tokens)}


def make_tiny_clip(directory: Path, seed: int = 0, *, image_size: int = IMAGE_SIZE, patch_size: int = 8) -> Path:
    """Write a tiny CLIP into ``directory`` (created if needed) and return it.

    ``image_size=224, patch_size=32`` gives ViT-B/32's input geometry (and its 224-pixel image processor) with
    tiny layers: what the preprocessing parity tests need.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=MAX_TOKENS)

    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=MAX_TOKENS, projection_dim=16,
                bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch_size, projection_dim=16)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)

    processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    processor.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
