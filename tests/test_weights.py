"""The weights store against a real local HTTP server: downloads, hash checks, offline use, imports, pins."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest
import torch

from har_stream.errors import ConfigError, HashMismatchError, ModelError, WeightsError, WeightsMissingError
from har_stream.manifest import Manifest, default_manifest_path
from har_stream.weights import WeightStore, sha256_file
from tests.helpers.http_server import StaticServer


def make_checkpoint(path: Path, seed: int = 0) -> str:
    """A real (small) torch checkpoint; returns its sha256."""
    torch.manual_seed(seed)
    torch.save(torch.nn.Linear(8, 4).state_dict(), path)
    return sha256_file(path)


def write_manifest(path: Path, models: dict) -> Path:
    path.write_text(json.dumps({"version": 1, "models": models}))
    return path


def entry(url: str, name: str, sha: str | None, size: int | None = None, prefix: str | None = None,
          family: str = "test") -> dict:
    file = {"name": name, "url": url, "sha256": sha, "size": size}
    if prefix is not None:
        file["sha256_prefix"] = prefix
    return {"family": family, "description": f"test model {name}", "files": [file]}


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def flip_a_byte_keeping_stat(path: Path) -> None:
    """Corrupt ``path`` in place: same size, the old mtime put back (only ctime and the bytes change)."""
    time.sleep(0.05)  # let the file's ctime move past the verified record's even on coarse-clock filesystems
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def pins(env: dict[str, Path]) -> dict[str, str]:
    index = env["home"] / "weights" / "index.json"
    return json.loads(index.read_text())["pinned"] if index.exists() else {}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """HAR_STREAM_HOME / HAR_STREAM_MANIFEST pointing into tmp_path; online unless a test says otherwise."""
    home, manifest = tmp_path / "home", tmp_path / "manifest.json"
    monkeypatch.setenv("HAR_STREAM_HOME", str(home))
    monkeypatch.setenv("HAR_STREAM_MANIFEST", str(manifest))
    monkeypatch.delenv("HAR_STREAM_OFFLINE", raising=False)
    return {"home": home, "manifest": manifest, "src": tmp_path}


@pytest.fixture
def tiny(env: dict[str, Path], http_server: StaticServer) -> dict:
    """One served checkpoint ``tiny.pt`` and a manifest entry ``tiny`` with its true digest."""
    sha = make_checkpoint(http_server.root / "tiny.pt")
    size = (http_server.root / "tiny.pt").stat().st_size
    write_manifest(env["manifest"], {"tiny": entry(http_server.url("tiny.pt"), "tiny.pt", sha, size)})
    return {"sha": sha, "size": size, "cached": env["home"] / "weights" / "tiny" / "tiny.pt"}


def test_download_lands_verified_and_is_not_fetched_twice(tiny: dict, http_server: StaticServer) -> None:
    seen: list[tuple[int, int | None]] = []
    paths = WeightStore().files("tiny", on_progress=lambda done, total: seen.append((done, total)))

    assert paths == {"tiny.pt": tiny["cached"]}
    assert sha256_file(tiny["cached"]) == tiny["sha"]
    state = torch.load(tiny["cached"], weights_only=True)
    torch.manual_seed(0)
    assert torch.equal(state["weight"], torch.nn.Linear(8, 4).state_dict()["weight"])
    assert seen[-1] == (tiny["size"], tiny["size"])
    assert http_server.count("/tiny.pt") == 1
    assert leftovers(tiny["cached"].parent) == ["tiny.pt"]  # no temp file left beside it

    assert WeightStore().files("tiny") == paths  # same store config, fresh instance (as a new process would)
    assert WeightStore().sha256_of("tiny") == tiny["sha"]
    assert http_server.count("/tiny.pt") == 1


def test_mismatched_download_is_refused_and_nothing_is_kept(tiny: dict, http_server: StaticServer) -> None:
    http_server.serve_bytes("tiny.pt", b"not the published checkpoint" * 100)
    with pytest.raises(HashMismatchError) as info:
        WeightStore().files("tiny")
    message = str(info.value)
    assert tiny["sha"] in message and hashlib.sha256(b"not the published checkpoint" * 100).hexdigest() in message
    assert "not used" in message and "\n" not in message
    assert leftovers(tiny["cached"].parent) == []  # neither the bad file nor a .part remains


def test_file_corrupted_after_download_is_caught_and_pull_repairs_it(tiny: dict, http_server: StaticServer) -> None:
    store = WeightStore()
    store.files("tiny")
    flip_a_byte_keeping_stat(tiny["cached"])

    with pytest.raises(HashMismatchError, match="har-stream weights pull tiny"):
        WeightStore().files("tiny")
    assert [(r.model, r.status) for r in store.verify()] == [("tiny", "mismatch")]

    store.pull("tiny")
    assert http_server.count("/tiny.pt") == 2
    assert sha256_file(tiny["cached"]) == tiny["sha"]
    assert [r.status for r in store.verify()] == ["ok"]
    assert store.files("tiny") == {"tiny.pt": tiny["cached"]}


def test_truncated_cached_file_is_caught(tiny: dict) -> None:
    WeightStore().files("tiny")
    with open(tiny["cached"], "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(HashMismatchError, match="expected " + tiny["sha"]):
        WeightStore().files("tiny")


def test_verify_reports_ok_missing_and_rehashes(env: dict[str, Path], http_server: StaticServer) -> None:
    a = make_checkpoint(http_server.root / "a.pt", seed=1)
    b = make_checkpoint(http_server.root / "b.pt", seed=2)
    write_manifest(env["manifest"], {"a": entry(http_server.url("a.pt"), "a.pt", a),
                                     "b": entry(http_server.url("b.pt"), "b.pt", b)})
    store = WeightStore()
    store.files("a")
    results = {r.model: r for r in store.verify()}
    assert results["a"].status == "ok" and results["a"].actual == a
    assert results["b"].status == "missing" and results["b"].expected == b
    assert [r.status for r in store.verify("a")] == ["ok"]


def test_offline_without_cache_names_the_import_command_and_never_connects(
        tiny: dict, http_server: StaticServer, env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAR_STREAM_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as info:
        WeightStore().files("tiny")
    message = str(info.value)
    assert "har-stream weights import tiny" in message and "har-stream weights pull tiny" in message
    assert "tiny.pt" in message and http_server.url("tiny.pt") in message and "\n" not in message
    assert http_server.count() == 0

    good = env["src"] / "downloaded-elsewhere.pt"
    good.write_bytes((http_server.root / "tiny.pt").read_bytes())  # the published bytes, fetched by other means
    wrong = env["src"] / "wrong.pt"
    make_checkpoint(wrong, seed=5)
    with pytest.raises(HashMismatchError, match="refused"):
        WeightStore().import_file("tiny", wrong)
    assert leftovers(tiny["cached"].parent) == []

    assert WeightStore().import_file("tiny", good) == tiny["cached"]
    assert WeightStore().files("tiny") == {"tiny.pt": tiny["cached"]}
    assert http_server.count() == 0


def test_unreachable_server_behaves_as_offline(env: dict[str, Path]) -> None:
    write_manifest(env["manifest"], {"gone": entry(closed_port_url("gone.pt"), "gone.pt", "0" * 64)})
    started = time.monotonic()
    with pytest.raises(WeightsMissingError, match=r"unreachable.*har-stream weights import gone"):
        WeightStore().files("gone")
    assert time.monotonic() - started < 5
    assert leftovers(env["home"] / "weights" / "gone") == []


def test_http_error_is_reported_as_missing(env: dict[str, Path], http_server: StaticServer) -> None:
    write_manifest(env["manifest"], {"nofile": entry(http_server.url("nofile.pt"), "nofile.pt", "0" * 64)})
    with pytest.raises(WeightsMissingError, match="HTTP 404"):
        WeightStore().files("nofile")


def test_download_false_does_not_fetch(tiny: dict, http_server: StaticServer) -> None:
    with pytest.raises(WeightsMissingError):
        WeightStore().files("tiny", download=False)
    assert http_server.count() == 0


@pytest.fixture
def prefix_only(env: dict[str, Path], http_server: StaticServer) -> dict:
    """A served checkpoint ``pinme.pt`` whose manifest entry has no sha256, only the 8-hex published prefix."""
    sha = make_checkpoint(http_server.root / "pinme.pt", seed=3)
    write_manifest(env["manifest"], {"pinme": entry(http_server.url("pinme.pt"), "pinme.pt", None, prefix=sha[:8])})
    return {"sha": sha, "cached": env["home"] / "weights" / "pinme" / "pinme.pt"}


def test_prefix_only_file_is_pulled_checked_and_pinned_on_first_use(
        prefix_only: dict, env: dict[str, Path], http_server: StaticServer, caplog: pytest.LogCaptureFixture) -> None:
    store = WeightStore()
    assert store.sha256_of("pinme") is None and store.list()[0].pinned is False
    with caplog.at_level(logging.WARNING, logger="har_stream.weights"):
        assert store.pull("pinme") == {"pinme.pt": prefix_only["cached"]}
    assert sha256_file(prefix_only["cached"]) == prefix_only["sha"]
    assert http_server.count("/pinme.pt") == 1
    assert leftovers(prefix_only["cached"].parent) == ["pinme.pt"]
    assert pins(env) == {"pinme/pinme.pt": prefix_only["sha"]}
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"published prefix {prefix_only['sha'][:8]} only" in warning and prefix_only["sha"] in warning

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="har_stream.weights"):
        later = WeightStore()  # a new process: the pin comes from the index
        assert later.files("pinme") == {"pinme.pt": prefix_only["cached"]}
    assert not caplog.records  # pinned already: a full-digest check, no warning
    assert later.sha256_of("pinme") == prefix_only["sha"] and later.list()[0].pinned is True
    assert [r.status for r in later.verify()] == ["ok"]
    assert http_server.count("/pinme.pt") == 1


def test_after_pinning_a_modified_file_is_refused(prefix_only: dict, env: dict[str, Path],
                                                  http_server: StaticServer) -> None:
    WeightStore().files("pinme")
    flip_a_byte_keeping_stat(prefix_only["cached"])
    with pytest.raises(HashMismatchError, match=f"expected {prefix_only['sha']} \\(pinned on first use\\)"):
        WeightStore().files("pinme")
    assert [r.status for r in WeightStore().verify()] == ["mismatch"]

    # The server now hands out other bytes: the repair download is checked against the pin, and refused.
    http_server.serve_bytes("pinme.pt", b"a different checkpoint" * 50)
    with pytest.raises(HashMismatchError, match=r"pinned on first use.*nothing was kept"):
        WeightStore().pull("pinme")
    assert pins(env) == {"pinme/pinme.pt": prefix_only["sha"]}  # the pin stays

    del http_server.overrides["/pinme.pt"]
    WeightStore().pull("pinme")  # the published bytes again: repaired
    assert sha256_file(prefix_only["cached"]) == prefix_only["sha"]
    assert WeightStore().files("pinme") == {"pinme.pt": prefix_only["cached"]}


def test_wrong_prefix_download_is_refused_and_nothing_is_kept_or_pinned(
        env: dict[str, Path], http_server: StaticServer) -> None:
    sha = make_checkpoint(http_server.root / "pinme.pt", seed=3)
    wrong = f"{(int(sha[:8], 16) + 1) % (1 << 32):08x}"
    write_manifest(env["manifest"], {"pinme": entry(http_server.url("pinme.pt"), "pinme.pt", None, prefix=wrong)})
    with pytest.raises(HashMismatchError) as info:
        WeightStore().pull("pinme")
    message = str(info.value)
    assert f"starting with the published prefix {wrong}" in message and sha in message and "\n" not in message
    assert leftovers(env["home"] / "weights" / "pinme") == []
    assert pins(env) == {} and WeightStore().sha256_of("pinme") is None


def test_cached_prefix_only_file_without_a_pin_is_checked_and_pinned(
        prefix_only: dict, env: dict[str, Path], http_server: StaticServer) -> None:
    """A file already in the cache when no pin exists (index deleted, or copied there by hand)."""
    WeightStore().files("pinme")
    (env["home"] / "weights" / "index.json").unlink()
    assert WeightStore(offline=True).files("pinme") == {"pinme.pt": prefix_only["cached"]}
    assert pins(env) == {"pinme/pinme.pt": prefix_only["sha"]}
    assert http_server.count("/pinme.pt") == 1

    (env["home"] / "weights" / "index.json").unlink()
    prefix_only["cached"].write_bytes(b"not it")
    with pytest.raises(HashMismatchError, match="published prefix"):
        WeightStore(offline=True).files("pinme")
    assert [r.status for r in WeightStore().verify()] == ["mismatch"]
    assert pins(env) == {}


def test_import_of_a_prefix_only_file_checks_the_prefix_and_pins(prefix_only: dict, env: dict[str, Path],
                                                                 http_server: StaticServer) -> None:
    store = WeightStore(offline=True)
    other = env["src"] / "other.pt"
    make_checkpoint(other, seed=4)
    with pytest.raises(HashMismatchError, match=f"published prefix {prefix_only['sha'][:8]}"):
        store.import_file("pinme", other)
    assert leftovers(prefix_only["cached"].parent) == [] and pins(env) == {}

    trusted = env["src"] / "pinme.pt"
    make_checkpoint(trusted, seed=3)
    assert store.import_file("pinme", trusted) == prefix_only["cached"]
    assert pins(env) == {"pinme/pinme.pt": prefix_only["sha"]}
    assert store.sha256_of("pinme") == prefix_only["sha"]
    assert WeightStore(offline=True).files("pinme") == {"pinme.pt": prefix_only["cached"]}
    assert http_server.count() == 0


def test_import_pin_replaces_a_pin_only_for_a_file_with_the_published_prefix(
        prefix_only: dict, env: dict[str, Path]) -> None:
    """A pin recorded earlier for other bytes with the same prefix: plain import refuses, ``pin=True`` re-pins."""
    old_pin = prefix_only["sha"][:8] + "0" * 56
    (env["home"] / "weights").mkdir(parents=True)
    (env["home"] / "weights" / "index.json").write_text(json.dumps({"pinned": {"pinme/pinme.pt": old_pin}}))
    trusted = env["src"] / "pinme.pt"
    make_checkpoint(trusted, seed=3)
    store = WeightStore(offline=True)
    with pytest.raises(HashMismatchError, match=r"pinned on first use.*har-stream weights import pinme \S+ --pin"):
        store.import_file("pinme", trusted)
    assert pins(env) == {"pinme/pinme.pt": old_pin}

    other = env["src"] / "other.pt"
    make_checkpoint(other, seed=4)
    with pytest.raises(HashMismatchError, match="refused"):
        store.import_file("pinme", other, pin=True)  # --pin never skips the prefix check
    assert pins(env) == {"pinme/pinme.pt": old_pin}

    assert store.import_file("pinme", trusted, pin=True) == prefix_only["cached"]
    assert pins(env) == {"pinme/pinme.pt": prefix_only["sha"]}
    assert store.files("pinme") == {"pinme.pt": prefix_only["cached"]}


def test_pin_never_overrides_a_published_digest(tiny: dict, env: dict[str, Path]) -> None:
    other = env["src"] / "other.pt"
    make_checkpoint(other, seed=4)
    with pytest.raises(HashMismatchError, match="refused"):
        WeightStore().import_file("tiny", other, pin=True)
    assert leftovers(tiny["cached"].parent) == [] and pins(env) == {}


def test_multi_file_model_imports_a_folder_all_or_nothing(env: dict[str, Path], http_server: StaticServer) -> None:
    src = env["src"] / "snapshot"
    src.mkdir()
    files = {"config.json": b'{"model_type": "clip"}', "vocab.json": b'{"a": 0}', "pytorch_model.bin": b"\x80weights"}
    for name, body in files.items():
        (src / name).write_bytes(body)
    model = {"family": "clip", "description": "multi", "files": [
        {"name": n, "url": http_server.url(n), "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
        for n, b in files.items()]}
    write_manifest(env["manifest"], {"clipish": model})
    store = WeightStore(offline=True)
    target = env["home"] / "weights" / "clipish"

    (src / "vocab.json").write_bytes(b"tampered")
    with pytest.raises(HashMismatchError, match="vocab.json"):
        store.import_file("clipish", src)
    assert leftovers(target) == []  # the two good files were not imported either

    (src / "vocab.json").unlink()
    with pytest.raises(WeightsError, match="lacks vocab.json"):
        store.import_file("clipish", src)

    (src / "vocab.json").write_bytes(files["vocab.json"])
    assert store.import_file("clipish", src) == target
    assert store.directory("clipish") == target
    assert sorted(store.files("clipish")) == sorted(files)
    assert store.sha256_of("clipish") not in {hashlib.sha256(b).hexdigest() for b in files.values()}
    assert len(store.sha256_of("clipish") or "") == 64


def test_local_checkpoint_import_files_verify_and_replace(env: dict[str, Path]) -> None:
    write_manifest(env["manifest"], {})
    first = env["src"] / "ucf101-run1.pt"
    sha1 = make_checkpoint(first, seed=6)
    store = WeightStore(offline=True)
    stored = store.import_file("cnn-lstm", first)
    assert stored == env["home"] / "weights" / "cnn-lstm" / "ucf101-run1.pt"
    assert store.files("cnn-lstm") == {"ucf101-run1.pt": stored}
    assert store.sha256_of("cnn-lstm") == sha1
    assert [(r.name, r.status, r.family) for r in store.list()] == [("cnn-lstm", "cached", "local")]
    with pytest.raises(WeightsError, match="local checkpoint"):
        store.pull("cnn-lstm")

    with open(stored, "ab") as handle:
        handle.write(b"junk")
    assert [r.status for r in store.verify()] == ["mismatch"]
    with pytest.raises(HashMismatchError):
        store.files("cnn-lstm")

    second = env["src"] / "ucf101-run2.pt"
    sha2 = make_checkpoint(second, seed=7)
    stored2 = WeightStore().import_file("cnn-lstm", second)
    assert leftovers(stored2.parent) == ["ucf101-run2.pt"]
    assert WeightStore().files("cnn-lstm") == {"ucf101-run2.pt": stored2}
    assert WeightStore().sha256_of("cnn-lstm") == sha2


def test_unknown_model_is_a_model_error(env: dict[str, Path]) -> None:
    write_manifest(env["manifest"], {})
    with pytest.raises(ModelError, match="unknown weights 'nope'"):
        WeightStore().files("nope")
    assert WeightStore().sha256_of("nope") is None


def test_manifest_names_stay_importable_from_weights() -> None:
    import har_stream.manifest as manifest
    import har_stream.weights as weights

    for name in ("Manifest", "ModelWeights", "WeightsFile", "default_manifest_path"):
        assert getattr(weights, name) is getattr(manifest, name)


@pytest.mark.parametrize("bad", [
    {"version": 2, "models": {}},
    {"version": 1, "models": {"x": entry("https://h/a.pt", "../a.pt", "0" * 64)}},
    {"version": 1, "models": {"x": entry("ftp://h/a.pt", "a.pt", "0" * 64)}},
    {"version": 1, "models": {"x": entry("https://h/a.pt", "a.pt", "ABC")}},
    {"version": 1, "models": {"x": entry("https://h/a.pt", "a.pt", None)}},  # no digest and no prefix
    {"version": 1, "models": {"x": entry("https://h/a.pt", "a.pt", "1" * 64, prefix="00000000")}},
])
def test_malformed_manifest_is_a_config_error(tmp_path: Path, bad: dict) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="manifest"):
        Manifest.load(path)


def test_progress_bar_goes_to_stderr(tiny: dict, capfd: pytest.CaptureFixture[str]) -> None:
    WeightStore().files("tiny", progress=True)
    captured = capfd.readouterr()
    assert "tiny/tiny.pt" in captured.err and "100%" in captured.err
    assert captured.out == ""


# ------------------------------------------------------------------ the real weights/manifest.json

REAL = Manifest.load(Path(__file__).resolve().parents[1] / "weights" / "manifest.json")


def test_default_manifest_is_the_repository_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAR_STREAM_MANIFEST", raising=False)
    assert default_manifest_path() == REAL.path


def test_real_manifest_has_the_expected_models_with_https_urls() -> None:
    assert set(REAL.names()) == {"s3d", "r2plus1d-18", "r3d-18", "mc3-18", "mvit-v2-s", "swin3d-t",
                                 "resnet18-imagenet", "clip"}
    for model in REAL.models:
        for f in model.files:
            assert f.url.startswith("https://"), (model.name, f.url)
            assert f.sha256 is not None or (f.sha256_prefix and re.fullmatch(r"[0-9a-f]{8}", f.sha256_prefix))


def test_real_manifest_entries_offline_name_the_import_command(tmp_path: Path) -> None:
    """Every entry, s3d (prefix only) included, is usable: offline and uncached, each names how to import it."""
    store = WeightStore(home=tmp_path, manifest=REAL, offline=True)
    for model in REAL.models:
        with pytest.raises(WeightsMissingError, match=f"har-stream weights import {model.name} "):
            store.files(model.name)
        prefix_only = any(f.prefix_only for f in model.files)
        assert (store.sha256_of(model.name) is None) is prefix_only, model.name
    assert [m.name for m in REAL.models if any(f.prefix_only for f in m.files)] == ["s3d"]


def test_real_manifest_matches_torchvision_urls_and_filename_prefixes() -> None:
    from torchvision.models import ResNet18_Weights
    from torchvision.models import video as tv

    expected = {"s3d": tv.S3D_Weights.KINETICS400_V1, "r2plus1d-18": tv.R2Plus1D_18_Weights.KINETICS400_V1,
                "r3d-18": tv.R3D_18_Weights.KINETICS400_V1, "mc3-18": tv.MC3_18_Weights.KINETICS400_V1,
                "mvit-v2-s": tv.MViT_V2_S_Weights.KINETICS400_V1, "swin3d-t": tv.Swin3D_T_Weights.KINETICS400_V1,
                "resnet18-imagenet": ResNet18_Weights.IMAGENET1K_V1}
    for name, weights in expected.items():
        model = REAL.get(name)
        assert model is not None and len(model.files) == 1
        f = model.files[0]
        assert f.url == weights.url
        prefix = re.search(r"-([0-9a-f]{8})\.pth$", f.url).group(1)  # torchvision names files <name>-<sha256[:8]>
        assert (f.sha256 or f.sha256_prefix or "").startswith(prefix), name


def test_real_manifest_clip_is_pinned_to_a_revision_with_the_files_transformers_needs() -> None:
    clip = REAL.get("clip")
    assert clip is not None
    names = {f.name for f in clip.files}
    assert {"config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
            "merges.txt", "special_tokens_map.json"} <= names
    assert names & {"pytorch_model.bin", "model.safetensors"}
    for f in clip.files:
        assert re.fullmatch(rf"https://huggingface\.co/openai/clip-vit-base-patch32/resolve/[0-9a-f]{{40}}/{f.name}",
                            f.url), f.url
        assert f.sha256 is not None and f.size

