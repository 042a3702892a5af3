"""Model weights: a manifest of published files, and a local cache that only ever hands out verified bytes.

Why so strict: a model file is code-adjacent (pickles) and silently wrong weights produce silently wrong
labels, so nothing is returned unless its sha256 matches the manifest (or a digest the user pinned for a
file they trust). Downloads stream to a temp file beside the target, hashing as they go, and are renamed
into place only when the digest matches; a partial or bad file never sits under the real name. Hashing a
600 MB file on every start would be slow, so a small JSON index remembers which (size, mtime, ctime,
inode) was already verified; ``verify`` ignores that memory and re-hashes everything.

Layout: ``<home>/weights/<model>/<file>`` plus ``<home>/weights/index.json`` (verification memory, pinned
digests, local checkpoints such as a user-trained CNN-LSTM that no manifest can describe).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .errors import ConfigError, HashMismatchError, ModelError, WeightsError, WeightsMissingError

ProgressCallback = Callable[[int, int | None], None]
VerifyStatus = Literal["ok", "mismatch", "missing", "unpinned"]

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 20.0  # connect and per-read socket timeout; a stalled server fails, a slow one does not
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX8 = re.compile(r"^[0-9a-f]{8}$")
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
log = logging.getLogger(__name__)


def default_manifest_path() -> Path:
    """``$HAR_STREAM_MANIFEST`` or the repository's ``weights/manifest.json``."""
    env = os.environ.get("HAR_STREAM_MANIFEST")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "weights" / "manifest.json"


def default_home() -> Path:
    """``$HAR_STREAM_HOME`` or ``~/.cache/har-stream``."""
    env = os.environ.get("HAR_STREAM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "har-stream"


def env_offline() -> bool:
    return os.environ.get("HAR_STREAM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightsFile:
    """One published file. ``sha256`` is None only where no full digest is published (see ``sha256_prefix``)."""

    name: str
    url: str
    sha256: str | None
    size: int | None
    sha256_prefix: str | None = None


@dataclass(frozen=True)
class ModelWeights:
    name: str
    family: str
    description: str
    files: tuple[WeightsFile, ...]
    source: str | None = None  # where the entry comes from (torchvision enum, HF repo@revision)

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
            raise ConfigError(f"weights manifest {path} does not exist; fix HAR_STREAM_MANIFEST or restore weights/manifest.json") from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"weights manifest {path} is not readable JSON ({err}); restore it from the repository") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Manifest:
        def bad(why: str) -> ConfigError:
            return ConfigError(f"weights manifest {path} is malformed: {why}; fix the entry or restore the file")

        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("models"), dict):
            raise bad('expected {"version": 1, "models": {...}}')
        models = []
        for name, entry in data["models"].items():
            if not _MODEL_NAME.match(name) or not isinstance(entry, dict):
                raise bad(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
            files = []
            for raw in entry.get("files") or []:
                if not isinstance(raw, dict):
                    raise bad(f"{name}: each file must be an object with name, url, sha256 and size")
                fname, url, sha, size, prefix = (raw.get(k) for k in ("name", "url", "sha256", "size", "sha256_prefix"))
                if not isinstance(fname, str) or not _FILE_NAME.match(fname):
                    raise bad(f"{name}: file name {fname!r} must be a plain file name")
                if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                    raise bad(f"{name}/{fname}: url must be http(s)")
                if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
                    raise bad(f"{name}/{fname}: sha256 must be 64 lower-case hex digits or null")
                if prefix is not None and not (isinstance(prefix, str) and _HEX8.match(prefix)):
                    raise bad(f"{name}/{fname}: sha256_prefix must be 8 lower-case hex digits")
                if sha is None and prefix is None:
                    raise bad(f"{name}/{fname}: a file without sha256 needs a sha256_prefix")
                if sha is not None and prefix is not None and not sha.startswith(prefix):
                    raise bad(f"{name}/{fname}: sha256 does not start with its sha256_prefix {prefix}")
                if size is not None and (not isinstance(size, int) or size < 0):
                    raise bad(f"{name}/{fname}: size must be a byte count or null")
                files.append(WeightsFile(fname, url, sha, size, prefix))
            if not files or len({f.name for f in files}) != len(files):
                raise bad(f"{name}: needs a non-empty list of files with distinct names")
            models.append(ModelWeights(name, str(entry.get("family", "")), str(entry.get("description", "")),
                                       tuple(files), entry.get("source")))
        return cls(path, tuple(models))

    def get(self, name: str) -> ModelWeights | None:
        return next((m for m in self.models if m.name == name), None)

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


@dataclass(frozen=True)
class VerifyResult:
    model: str
    file: str
    path: Path
    status: VerifyStatus
    expected: str | None
    actual: str | None


@dataclass(frozen=True)
class WeightsRow:
    """One line of ``list()``: ``cached`` means every file is present (present files are verified on use)."""

    name: str
    family: str
    cached: bool
    size: int | None
    description: str
    status: Literal["cached", "partial", "missing"]
    pinned: bool  # every file has a digest to check against


def _combined_digest(pairs: list[tuple[str, str]]) -> str:
    """Identity of a multi-file model: sha256 over sorted ``name sha256`` lines."""
    text = "".join(f"{name} {sha}\n" for name, sha in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()


class WeightStore:
    """The verified weights cache. Thread-safe; safe to share one ``home`` between processes."""

    def __init__(self, home: Path | None = None, manifest: Manifest | None = None, offline: bool | None = None,
                 *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.root = self.home / "weights"
        self.manifest = manifest if manifest is not None else Manifest.load()
        self.offline = env_offline() if offline is None else offline
        self.timeout_s = timeout_s
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- index (verification memory, pins, local)
    @contextlib.contextmanager
    def _index(self, write: bool = False) -> Iterator[dict[str, Any]]:
        path = self.root / "index.json"
        with self._lock:
            if not write and not path.exists():
                yield {"version": 1, "verified": {}, "pinned": {}, "local": {}}
                return
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / ".index.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
                data = {"version": 1, "verified": {}, "pinned": {}, "local": {}}
                if path.exists():
                    try:
                        data.update(json.loads(path.read_text(encoding="utf-8")))
                    except (OSError, ValueError) as err:
                        raise WeightsError(f"weights index {path} is unreadable ({err}); delete it, then re-import "
                                           f"local checkpoints and re-pin files") from None
                yield data
                if write:
                    fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index.", suffix=".tmp")
                    try:
                        with os.fdopen(fd, "w", encoding="utf-8") as out:
                            json.dump(data, out, indent=1, sort_keys=True)
                        os.replace(tmp, path)
                    finally:
                        Path(tmp).unlink(missing_ok=True)

    def _remember(self, key: str, path: Path, digest: str, stat: os.stat_result | None = None) -> None:
        """Record a hash result; best effort, since it only saves re-hashing (a read-only cache still works)."""
        st = stat or path.stat()
        try:
            with self._index(write=True) as idx:
                idx["verified"][key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                        "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "sha256": digest}
        except OSError as err:
            log.debug("could not record the verification of %s: %s", path, err)

    def _digest(self, key: str, path: Path, *, trust_memory: bool = True) -> str:
        """The file's sha256, from memory when its stat is unchanged since it was last hashed."""
        st = path.stat()
        if trust_memory:
            with self._index() as idx:
                rec = idx["verified"].get(key)
            if rec and (rec["size"], rec["mtime_ns"], rec["ctime_ns"], rec["ino"]) == (
                    st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
                return str(rec["sha256"])
        digest = sha256_file(path)
        self._remember(key, path, digest, st)  # stat from before hashing: a concurrent edit forces a re-hash
        return digest

    # ---------------------------------------------------------------- models
    def _model(self, name: str) -> ModelWeights:
        model = self.manifest.get(name)
        if model is not None:
            return model
        with self._index() as idx:
            local = idx["local"].get(name)
        if local is None:
            known = ", ".join(self.manifest.names() + self._local_names())
            raise ModelError(f"unknown weights {name!r}; known: {known}; a local checkpoint is added with "
                             f"`har-stream weights import {name} FILE`")
        return ModelWeights(name, str(local.get("family", "local")), f"local checkpoint imported from {local['source']}",
                            (WeightsFile(local["file"], "", local["sha256"], local["size"]),), source="local")

    def _local_names(self) -> tuple[str, ...]:
        with self._index() as idx:
            return tuple(sorted(idx["local"]))

    def _expected(self, model: ModelWeights, f: WeightsFile) -> str | None:
        if f.sha256:
            return f.sha256
        with self._index() as idx:
            return idx["pinned"].get(f"{model.name}/{f.name}")

    def path(self, name: str, file: str) -> Path:
        """Where a file lives in the cache (it may not exist yet)."""
        return self.root / name / file

    def _import_hint(self, model: ModelWeights, pin: bool = False) -> str:
        target = f"/path/to/{model.files[0].name}" if len(model.files) == 1 else f"/path/to/{model.name}-dir"
        return f"`har-stream weights import {model.name} {target}{' --pin' if pin else ''}`"

    def _unpinned_error(self, model: ModelWeights, f: WeightsFile) -> WeightsError:
        return WeightsError(
            f"weights {model.name}/{f.name} have no published full sha256 (only the prefix {f.sha256_prefix} from "
            f"{f.url}), so they are not loaded until pinned: get the file from that URL, and if you trust it run "
            f"{self._import_hint(model, pin=True)} to record its digest")

    # ---------------------------------------------------------------- public API
    def files(self, name: str, *, download: bool = True, progress: bool | None = None,
              on_progress: ProgressCallback | None = None) -> dict[str, Path]:
        """Verified paths of a model's files, downloading missing ones unless offline.

        ``on_progress(done_bytes, total_bytes)`` is called while a file downloads (total None if unknown).
        """
        return self._fetch(name, download=download, repair=False, progress=progress, on_progress=on_progress)

    def directory(self, name: str, *, download: bool = True, progress: bool | None = None) -> Path:
        """The folder holding a model's verified files (what ``from_pretrained`` wants for CLIP)."""
        self.files(name, download=download, progress=progress)
        return self.root / name

    def pull(self, name: str, *, progress: bool | None = None,
             on_progress: ProgressCallback | None = None) -> dict[str, Path]:
        """Download whatever is missing or corrupt (a bad cached file is replaced only by a verified one)."""
        model = self._model(name)
        if model.source == "local":
            raise WeightsError(f"{name!r} is a local checkpoint with no download URL; re-import it with "
                               f"{self._import_hint(model)}")
        return self._fetch(name, download=True, repair=True, progress=progress, on_progress=on_progress)

    def _fetch(self, name: str, *, download: bool, repair: bool, progress: bool | None,
               on_progress: ProgressCallback | None) -> dict[str, Path]:
        model = self._model(name)
        expected = {}
        for f in model.files:  # refuse before fetching anything, so no half-pulled model is left behind
            digest = self._expected(model, f)
            if digest is None:
                raise self._unpinned_error(model, f)
            expected[f.name] = digest
        out: dict[str, Path] = {}
        for f in model.files:
            path = self.path(model.name, f.name)
            if path.is_file():
                actual = self._digest(f"{model.name}/{f.name}", path)
                if actual == expected[f.name]:
                    out[f.name] = path
                    continue
                if not repair:
                    raise HashMismatchError(
                        f"cached {model.name}/{f.name} ({path}) has sha256 {actual}, expected {expected[f.name]}; "
                        f"it was not used: run `har-stream weights pull {model.name}` to replace it or "
                        f"{self._import_hint(model)}")
            if model.source == "local":
                raise WeightsMissingError(f"local checkpoint {model.name}/{f.name} is missing from {path.parent}; "
                                          f"import it again with {self._import_hint(model)}")
            if not download or self.offline:
                why = "offline mode is on (HAR_STREAM_OFFLINE)" if self.offline else "downloads are disabled here"
                raise self._missing_error(model, f, why)
            self._download(model, f, path, expected[f.name], progress, on_progress)
            out[f.name] = path
        return out

    def _missing_error(self, model: ModelWeights, f: WeightsFile, why: str) -> WeightsMissingError:
        return WeightsMissingError(
            f"weights {model.name}/{f.name} are not cached in {self.root / model.name} and cannot be downloaded "
            f"from {f.url}: {why}; on a machine with internet run `har-stream weights pull {model.name}`, copy "
            f"them to this machine and run {self._import_hint(model)}")

    def _download(self, model: ModelWeights, f: WeightsFile, path: Path, expected: str,
                  progress: bool | None, on_progress: ProgressCallback | None) -> None:
        request = urllib.request.Request(f.url, headers={"User-Agent": f"har-stream/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            raise self._missing_error(model, f, f"the server answered HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise self._missing_error(model, f, f"the server is unreachable ({reason})") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{f.name}.", suffix=".part")
        tmp = Path(tmp_name)
        bar = None
        try:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else f.size
            if progress if progress is not None else sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                           desc=f"{model.name}/{f.name}")
            digest, done = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                try:
                    while block := response.read(CHUNK_BYTES):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if bar is not None:
                            bar.update(len(block))
                        if on_progress is not None:
                            on_progress(done, total)
                except (OSError, http.client.HTTPException) as err:
                    raise self._missing_error(model, f, f"the download broke off after {done} bytes ({err})") from None
                out.flush()
                os.fsync(out.fileno())
            if length and length.isdigit() and done != int(length):
                raise self._missing_error(model, f, f"the download ended after {done} of {length} bytes")
            actual = digest.hexdigest()
            if actual != expected:
                raise HashMismatchError(
                    f"download of {model.name}/{f.name} from {f.url} has sha256 {actual}, expected {expected}; "
                    f"the file was not used and nothing was kept in the cache")
            os.replace(tmp, path)
            self._remember(f"{model.name}/{f.name}", path, actual)
        finally:
            response.close()
            if bar is not None:
                bar.close()
            tmp.unlink(missing_ok=True)

    def verify(self, name: str | None = None) -> list[VerifyResult]:
        """Re-hash every cached file (ignoring the verification memory): ok / mismatch / missing / unpinned."""
        names = [name] if name is not None else list(self.manifest.names() + self._local_names())
        results = []
        for model in (self._model(n) for n in names):
            for f in model.files:
                path = self.path(model.name, f.name)
                expected = self._expected(model, f)
                if not path.is_file():
                    results.append(VerifyResult(model.name, f.name, path, "missing", expected, None))
                    continue
                actual = self._digest(f"{model.name}/{f.name}", path, trust_memory=False)
                status: VerifyStatus = "unpinned" if expected is None else "ok" if actual == expected else "mismatch"
                results.append(VerifyResult(model.name, f.name, path, status, expected, actual))
        return results

    def import_file(self, name: str, source: Path, *, pin: bool = False) -> Path:
        """Copy a trusted local file (or, for multi-file models like ``clip``, a folder) into the cache.

        Manifest models are hash-checked against the manifest and refused on mismatch; files without a
        published digest need ``pin=True``, which records the digest (it must match the published prefix).
        Any other name stores a local checkpoint and records its digest.
        """
        source = Path(source).expanduser()
        if not source.exists():
            raise WeightsError(f"{source} does not exist; pass the path of the weights file (or folder) to import")
        model = self.manifest.get(name)
        if model is None:
            return self._import_local(name, source)
        if source.is_dir():
            pairs = [(f, source / f.name) for f in model.files]
            absent = [f.name for f, p in pairs if not p.is_file()]
            if absent:
                raise WeightsError(f"{source} lacks {', '.join(absent)}; the folder must hold every file of "
                                   f"{name}: {', '.join(f.name for f in model.files)}")
        elif len(model.files) == 1:
            pairs = [(model.files[0], source)]
        else:
            match = model.file(source.name)
            if match is None:
                raise WeightsError(f"{source.name} is not one of the files of {name} "
                                   f"({', '.join(f.name for f in model.files)}); pass the folder that holds them")
            pairs = [(match, source)]
        expected = {f.name: self._expected(model, f) for f, _ in pairs}
        for f, _ in pairs:
            if expected[f.name] is None and not pin:
                raise self._unpinned_error(model, f)
        staged: list[tuple[WeightsFile, Path, str]] = []
        try:
            for f, src in pairs:
                staged.append((f, *self._stage(src, self.root / name)))
            for f, _, actual in staged:
                want = expected[f.name]
                if want is not None and actual != want:
                    raise HashMismatchError(f"{name}/{f.name} to import has sha256 {actual}, expected {want}; "
                                            f"refused, nothing was imported: get the file from {f.url}")
                if want is None and f.sha256_prefix and not actual.startswith(f.sha256_prefix):
                    raise HashMismatchError(f"{name}/{f.name} to pin has sha256 {actual}, but its published name "
                                            f"says it starts with {f.sha256_prefix}; refused, nothing was imported")
            for f, tmp, actual in staged:
                final = self.path(name, f.name)
                os.replace(tmp, final)
                self._remember(f"{name}/{f.name}", final, actual)
                if expected[f.name] is None:
                    with self._index(write=True) as idx:
                        idx["pinned"][f"{name}/{f.name}"] = actual
        finally:
            for _, tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        return self.path(name, model.files[0].name) if len(model.files) == 1 else self.root / name

    def _stage(self, source: Path, folder: Path) -> tuple[Path, str]:
        """Copy ``source`` into a temp file in ``folder``, hashing the bytes actually copied."""
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{source.name}.", suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while block := src.read(CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return Path(tmp_name), digest.hexdigest()

    def _import_local(self, name: str, source: Path) -> Path:
        if not _MODEL_NAME.match(name):
            raise ModelError(f"{name!r} is not a usable weights name; use lower-case letters, digits, '.', '_' or '-'")
        if not source.is_file():
            raise WeightsError(f"{source} is not a file; a local checkpoint ({name}) is imported from one file")
        fname = source.name if _FILE_NAME.match(source.name) else "checkpoint" + "".join(source.suffixes[-1:])
        tmp, digest = self._stage(source, self.root / name)
        try:
            final = self.path(name, fname)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._remember(f"{name}/{fname}", final, digest)
        with self._index(write=True) as idx:
            old = idx["local"].get(name)
            idx["local"][name] = {"file": fname, "sha256": digest, "size": final.stat().st_size,
                                  "source": str(source.resolve()), "family": "local"}
            if old and old["file"] != fname:
                self.path(name, old["file"]).unlink(missing_ok=True)
                idx["verified"].pop(f"{name}/{old['file']}", None)
        return final

    def list(self) -> list[WeightsRow]:
        rows = []
        for model in [*self.manifest.models, *(self._model(n) for n in self._local_names())]:
            present = [self.path(model.name, f.name).is_file() for f in model.files]
            sizes = [self.path(model.name, f.name).stat().st_size if here else f.size
                     for f, here in zip(model.files, present)]
            status: Literal["cached", "partial", "missing"] = (
                "cached" if all(present) else "partial" if any(present) else "missing")
            rows.append(WeightsRow(model.name, model.family, all(present),
                                   None if None in sizes else sum(s for s in sizes if s is not None),
                                   model.description, status,
                                   all(self._expected(model, f) is not None for f in model.files)))
        return rows

    def sha256_of(self, name: str) -> str | None:
        """Identity of a model's weights for results: the file's digest, or a combined digest for several files.

        None when some file has no digest yet (unpinned) or the name is unknown.
        """
        try:
            model = self._model(name)
        except ModelError:
            return None
        pairs = [(f.name, self._expected(model, f)) for f in model.files]
        if any(sha is None for _, sha in pairs):
            return None
        if len(pairs) == 1:
            return pairs[0][1]
        return _combined_digest([(n, s) for n, s in pairs if s is not None])
