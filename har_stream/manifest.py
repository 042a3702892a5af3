"""The weights manifest: which files each model needs, where they are published, and what their sha256 is.

Kept apart from the cache (``weights.py``) because it is pure data: loading and validating it touches no
network and no cache, so the real ``weights/manifest.json`` can be checked anywhere. A malformed manifest
is a ``ConfigError`` at load time, never a surprise at download time.

Each file has a full ``sha256`` where one is published. Where only torchvision's 8-hex file-name prefix is
known, ``sha256`` is null and ``sha256_prefix`` holds it; the store checks that prefix on first use and
pins the full digest then (see ``WeightStore``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX8 = re.compile(r"^[0-9a-f]{8}$")
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_manifest_path() -> Path:
    """``$HAR_STREAM_MANIFEST`` or the repository's ``weights/manifest.json``."""
    env = os.environ.get("HAR_STREAM_MANIFEST")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "weights" / "manifest.json"


def is_model_name(name: str) -> bool:
    """Lower-case letters, digits, ``.``, ``_``, ``-``: safe as a cache folder and a CLI argument."""
    return bool(_MODEL_NAME.match(name))


def is_file_name(name: str) -> bool:
    """A plain file name (no path, no leading dot), so a manifest entry cannot write outside its folder."""
    return bool(_FILE_NAME.match(name))


@dataclass(frozen=True)
class WeightsFile:
    """One published file. ``sha256`` is None only where no full digest is published (see ``sha256_prefix``)."""

    name: str
    url: str
    sha256: str | None
    size: int | None
    sha256_prefix: str | None = None

    @property
    def prefix_only(self) -> bool:
        """True when only the published 8-hex prefix is known: the store pins the full digest on first use."""
        return self.sha256 is None


@dataclass(frozen=True)
class ModelWeights:
    name: str
    family: str
    description: str
    files: tuple[WeightsFile, ...]
    source: str | None = None  # where the entry comes from (torchvision enum, HF repo@revision, "local")

    def file(self, name: str) -> WeightsFile | None:
        return next((f for f in self.files if f.name == name), None)


@dataclass(frozen=True)
class Manifest:
    path: Path
    models: tuple[ModelWeights, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> Manifest:
        path = path or default_manifest_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"weights manifest {path} does not exist; fix HAR_STREAM_MANIFEST or restore "
                              f"weights/manifest.json") from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"weights manifest {path} is not readable JSON ({err}); restore it from the "
                              f"repository") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Manifest:
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("models"), dict):
            raise _malformed(path, 'expected {"version": 1, "models": {...}}')
        models = []
        for name, entry in data["models"].items():
            if not isinstance(name, str) or not is_model_name(name) or not isinstance(entry, dict):
                raise _malformed(path, f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
            files = tuple(_parse_file(path, name, raw) for raw in entry.get("files") or [])
            if not files or len({f.name for f in files}) != len(files):
                raise _malformed(path, f"{name}: needs a non-empty list of files with distinct names")
            models.append(ModelWeights(name, str(entry.get("family", "")), str(entry.get("description", "")),
                                       files, entry.get("source")))
        return cls(path, tuple(models))

    def get(self, name: str) -> ModelWeights | None:
        return next((m for m in self.models if m.name == name), None)

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


def _malformed(path: Path, why: str) -> ConfigError:
    return ConfigError(f"weights manifest {path} is malformed: {why}; fix the entry or restore the file")


def _parse_file(path: Path, model: str, raw: Any) -> WeightsFile:
    """One ``files`` entry, validated: a digest (or at least its published prefix) is mandatory."""
    if not isinstance(raw, dict):
        raise _malformed(path, f"{model}: each file must be an object with name, url, sha256 and size")
    fname, url, sha, size, prefix = (raw.get(k) for k in ("name", "url", "sha256", "size", "sha256_prefix"))
    if not isinstance(fname, str) or not is_file_name(fname):
        raise _malformed(path, f"{model}: file name {fname!r} must be a plain file name")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _malformed(path, f"{model}/{fname}: url must be http(s)")
    if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
        raise _malformed(path, f"{model}/{fname}: sha256 must be 64 lower-case hex digits or null")
    if prefix is not None and not (isinstance(prefix, str) and _HEX8.match(prefix)):
        raise _malformed(path, f"{model}/{fname}: sha256_prefix must be 8 lower-case hex digits")
    if sha is None and prefix is None:
        raise _malformed(path, f"{model}/{fname}: a file without sha256 needs a sha256_prefix")
    if sha is not None and prefix is not None and not sha.startswith(prefix):
        raise _malformed(path, f"{model}/{fname}: sha256 does not start with its sha256_prefix {prefix}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise _malformed(path, f"{model}/{fname}: size must be a byte count or null")
    return WeightsFile(fname, url, sha, size, prefix)
