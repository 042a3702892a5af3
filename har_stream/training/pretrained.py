"""ImageNet ResNet-18 weights for the CNN-LSTM's frame encoder, through the weight store (pulled or imported).

The store hands out only sha256-checked bytes; nothing here downloads on its own or asks torch.hub.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from ..models.cnn_lstm import CnnLstmNet
from ..weights import WeightStore

IMAGENET_WEIGHTS = "resnet18-imagenet"


def load_imagenet_encoder(net: CnnLstmNet, store: WeightStore) -> dict[str, str | None]:
    """Load the store's ``resnet18-imagenet`` into ``net.encoder`` (its ``fc`` layer is not used)."""
    if net.cfg.encoder != "resnet18":
        raise ModelError(f"ImageNet weights fit the resnet18 encoder, not {net.cfg.encoder!r}")
    files = store.files(IMAGENET_WEIGHTS)
    path = Path(next(iter(files.values())))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a state dict
        raise ModelError(f"{path} is not a readable PyTorch state dict ({type(err).__name__}); re-import "
                         f"{IMAGENET_WEIGHTS}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds no state dict; re-import {IMAGENET_WEIGHTS}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        net.encoder.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1][:200]
        raise ModelError(f"{path} does not fit torchvision's ResNet-18 ({first}); re-import {IMAGENET_WEIGHTS} "
                         "from torchvision's resnet18-f37072fd.pth") from None
    return {"weights": IMAGENET_WEIGHTS, "sha256": store.sha256_of(IMAGENET_WEIGHTS)}
