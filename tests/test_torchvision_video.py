"""torchvision Kinetics-400 clip models: metadata, loading from local files, and numerics against torchvision.

No pretrained weights exist on these machines, so each test saves a randomly initialised state dict and loads
it through the real loader; equality with torchvision's own preprocessing + model shows that the engine's
split (per-frame ``encode``, per-window ``classify``) and the ModelInfo input contract are right.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as F
from torchvision.models import video as tvv

from har_stream.errors import ModelError
from har_stream.labels import load_label_set
from har_stream.models.torchvision_video import (
    TORCHVISION_MODELS,
    TorchvisionVideoModel,
    load_torchvision_video,
    model_info,
    spec_of,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    """name → (weights file, the random-initialised torchvision net it holds)."""
    root = tmp_path_factory.mktemp("tv-weights")
    out: dict[str, tuple[Path, torch.nn.Module]] = {}

    def get(name: str) -> tuple[Path, torch.nn.Module]:
        if name not in out:
            torch.manual_seed(0)
            net = spec_of(name).builder(weights=None).eval()
            path = root / f"{name}.pth"
            torch.save(net.state_dict(), path)
            out[name] = (path, net)
        return out[name]

    return get


def _crop_like_engine(raw: torch.Tensor, info) -> torch.Tensor:
    """uint8 (T, 3, H, W) → uint8 (T, crop_h, crop_w, 3), resized/cropped as ModelInfo says (torchvision ops)."""
    size = [info.resize] if isinstance(info.resize, int) else list(info.resize)
    x = F.resize(raw, size, antialias=False)
    x = F.center_crop(x, list(info.crop))
    return x.permute(0, 2, 3, 1).contiguous()


def _run_engine_way(model: TorchvisionVideoModel, raws: list[torch.Tensor]) -> torch.Tensor:
    """Frames encoded one window at a time (as the ring buffer would), windows batched in classify."""
    windows = [model.encode(_crop_like_engine(raw, model.info)) for raw in raws]
    return model.classify(torch.stack(windows))


@pytest.mark.parametrize("name", list(TORCHVISION_MODELS))
def test_info_comes_from_torchvision_metadata(name: str) -> None:
    weights = spec_of(name).weights
    preset = weights.transforms()
    info = model_info(name)
    assert info.labels == tuple(weights.meta["categories"]) and info.num_classes == 400
    assert info.labels == load_label_set("kinetics400").labels  # the repo's label file is the same order
    assert list(info.crop) == preset.crop_size
    assert list(info.mean) == pytest.approx(preset.mean) and list(info.std) == pytest.approx(preset.std)
    if len(preset.resize_size) == 1:
        assert info.resize == preset.resize_size[0]
    else:
        assert list(info.resize) == preset.resize_size
    assert (info.family, info.label_set, info.caches_features) == ("torchvision", "kinetics400", False)
    # the window follows torchvision's documented evaluation settings
    docs = weights.meta["_docs"]
    assert info.fps == float(re.search(r"frame_rate=([\d.]+)", docs).group(1))
    clip_len = int(re.search(r"clip_len=(\d+)", docs).group(1))
    assert info.frames == (16 if name == "s3d" else clip_len)
    assert info.frames >= weights.meta.get("min_temporal_size", 1)
    # the builder is the architecture these weights belong to
    net = spec_of(name).builder(weights=None)
    assert sum(p.numel() for p in net.parameters()) == weights.meta["num_params"]


def test_r3d_matches_torchvision_pipeline(saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    path, reference = saved("r3d-18")
    model = load_torchvision_video("r3d-18", path, CPU, sha256="ab" * 32)
    assert not (tmp_path / "torch-home").exists()  # nothing was downloaded or cached by torchvision
    assert model.info.weights_sha256 == "ab" * 32
    assert not model.net.training

    gen = torch.Generator().manual_seed(1)
    raws = [torch.randint(0, 256, (8, 3, 120, 160), dtype=torch.uint8, generator=gen) for _ in range(2)]
    ours = _run_engine_way(model, raws)

    with torch.inference_mode():
        expected = reference(tvv.R3D_18_Weights.KINETICS400_V1.transforms()(torch.stack(raws)))
    assert ours.shape == (2, 400)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours[0], ours[1])  # the two clips stay apart: batch layout is right


def test_s3d_matches_torchvision_pipeline(saved) -> None:
    path, reference = saved("s3d")
    model = load_torchvision_video("s3d", path, CPU)
    assert model.info.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    raw = torch.randint(0, 256, (16, 3, 240, 320), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    encoded = model.encode(_crop_like_engine(raw, model.info))
    assert encoded.shape == (16, 3, 224, 224) and encoded.dtype == torch.float32
    ours = model.classify(encoded.unsqueeze(0))

    with torch.inference_mode():
        expected = reference(tvv.S3D_Weights.KINETICS400_V1.transforms()(raw.unsqueeze(0)))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_encode_is_per_frame(saved) -> None:
    """The ring buffer caches encode() per frame, so encoding frames in any grouping must agree."""
    path, _ = saved("r3d-18")
    model = load_torchvision_video("r3d-18", path, CPU, sha256="0" * 64)
    frames = torch.randint(0, 256, (6, 112, 112, 3), dtype=torch.uint8)
    whole = model.encode(frames)
    parts = torch.cat([model.encode(frames[:2]), model.encode(frames[2:])])
    torch.testing.assert_close(whole, parts)
    mean = torch.tensor(model.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.info.std).view(1, 3, 1, 1)
    torch.testing.assert_close(whole, (frames.permute(0, 3, 1, 2).float() / 255 - mean) / std)


def test_checkpoint_of_another_model_is_refused(saved) -> None:
    path, _ = saved("s3d")
    with pytest.raises(ModelError) as err:
        load_torchvision_video("r3d-18", path, CPU, sha256="0" * 64)
    message = str(err.value)
    assert "do not fit r3d-18" in message and "missing" in message and "\n" not in message


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    net = tvv.mc3_18(weights=None, num_classes=10)
    path = tmp_path / "mc3-10-classes.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelError, match=r"'fc.weight' has shape \(10, 512\), expected \(400, 512\)"):
        load_torchvision_video("mc3-18", path, CPU, sha256="0" * 64)


def test_unreadable_or_missing_files_and_unknown_names(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable PyTorch weights file"):
        load_torchvision_video("r3d-18", junk, CPU)
    not_state = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(ModelError, match="no plain state dict"):
        load_torchvision_video("r3d-18", not_state, CPU)
    with pytest.raises(ModelError, match="no such weights file"):
        load_torchvision_video("r3d-18", tmp_path / "absent.pth", CPU)
    with pytest.raises(ModelError) as err:
        load_torchvision_video("r3d_18", junk, CPU)
    assert all(name in str(err.value) for name in TORCHVISION_MODELS)
