"""Model weights cache: only ever hands out bytes whose sha256 was checked (the manifest lives in ``manifest.py``).

Why so strict: a model file is code-adjacent (pickles) and silently wrong weights produce silently wrong
labels, so nothing is returned unless its sha256 matches the manifest, or a digest pinned here. Downloads
stream to a temp file beside the target, hashing as they go, and are renamed into place only when the
digest matches; a partial or bad file never sits under the real name. Hashing a 600 MB file on every
start would be slow, so a small JSON index remembers which (size, mtime, ctime, inode) was already
verified; ``verify`` ignores that memory and re-hashes everything.

Files published with only torchvision's 8-hex prefix (s3d) follow torchvision's own rule plus trust on
first use: the first file seen (downloaded, imported or found in the cache) must start with the prefix,
else it is refused and nothing is kept; its full digest is then pinned in the index and every later load
checks the full digest. A warning says the file was checked against the prefix only.

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
import socket
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
from .errors import HashMismatchError, ModelError, WeightsError, WeightsMissingError
from .manifest import Manifest, ModelWeights, WeightsFile, default_manifest_path, is_file_name, is_model_name
from .threads import CancelToken

__all__ = [
    "CHUNK_BYTES", "DEFAULT_TIMEOUT_S", "Expected", "Manifest", "ModelWeights", "ProgressCallback", "VerifyResult",
    "VerifyStatus", "WeightStore", "WeightsFile", "WeightsRow", "default_home", "default_manifest_path",
    "env_offline", "sha256_file",
]

ProgressCallback = Callable[[int, int | None], None]
VerifyStatus = Literal["ok", "mismatch", "missing", "unpinned"]

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 20.0  # connect and per-read socket timeout; a stalled server fails, a slow one does not
log = logging.getLogger(__name__)


def default_home() -> Path:
    """``$HAR_STREAM_HOME`` or ``~/.cache/har-stream``."""
    env = os.environ.get("HAR_STREAM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "har-stream"


def env_offline() -> bool:
    return os.environ.get("HAR_STREAM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _cancellable_opener(cancel: CancelToken, stack: contextlib.ExitStack) -> urllib.request.OpenerDirector:
    """``urlopen``'s opener, but setting ``cancel`` shuts every connection it makes down: a read blocked in
    ``recv`` (a server that never answers, or trickles) returns at once instead of at the socket timeout, so a
    stopping server need not wait for a download. The hooks live until ``stack`` closes."""

    def watched(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        class Watched(base):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                sock = self.sock  # closed by its response; a shutdown after that fails harmlessly (EBADF)
                stack.enter_context(cancel.on_cancel(lambda: sock.shutdown(socket.SHUT_RDWR)))

        return Watched

    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(watched(http_class), req, **kwargs)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(watched(http_class), req, **kwargs)

    return urllib.request.build_opener(Http(), Https())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Expected:
    """What a file's sha256 must be: a full digest (published, pinned or local), or only a published prefix."""

    digest: str | None
    prefix: str | None = None
    pinned: bool = False  # ``digest`` was pinned here on first use, not published

    def accepts(self, actual: str) -> bool:
        if self.digest is not None:
            return actual == self.digest
        return self.prefix is not None and actual.startswith(self.prefix)

    def describe(self) -> str:
        if self.digest is None:
            return f"a digest starting with the published prefix {self.prefix}"
        return f"{self.digest} (pinned on first use)" if self.pinned else self.digest


@dataclass(frozen=True)
class VerifyResult:
    model: str
    file: str
    path: Path
    status: VerifyStatus  # "unpinned": present, matches its published prefix, full digest not pinned yet
    expected: str | None  # the full digest, or the published prefix of an unpinned file
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
    pinned: bool  # every file has a full digest to check against (published, or pinned on first use)


def _combined_digest(pairs: list[tuple[str, str]]) -> str:
    """Identity of a multi-file model: sha256 over sorted ``name sha256`` lines."""
    text = "".join(f"{name} {sha}\n" for name, sha in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()


def _stat_record(st: os.stat_result, digest: str) -> dict[str, Any]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "sha256": digest}


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
        """The index, under an inter-process lock; with ``write`` it is saved (atomically) unless the body raises.

        Never nest a write inside another ``_index`` of the same store: ``flock`` on a second descriptor of
        the lock file would wait on this process's own lock.
        """
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
                                           f"local checkpoints") from None
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
                idx["verified"][key] = _stat_record(st, digest)
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

    def _pin(self, model: ModelWeights, f: WeightsFile, final: Path, actual: str, *, staged: Path | None = None,
             replace: bool = False) -> None:
        """Pin the full digest of a prefix-only file (trust on first use), moving ``staged`` into place first.

        Done in one index transaction, so of two processes pinning different bytes the second is refused
        (unless ``replace``: an explicit ``import --pin``) and its file never lands under the real name.
        """
        key = f"{model.name}/{f.name}"
        with self._index(write=True) as idx:
            pinned = idx["pinned"].get(key)
            if pinned is not None and pinned != actual and not replace:
                raise HashMismatchError(
                    f"{key} has sha256 {actual}, but {pinned} was pinned for it meanwhile; it was not used: run "
                    f"`har-stream weights verify {model.name}` and compare the digests with a trusted source")
            if staged is not None:
                os.replace(staged, final)
            idx["pinned"][key] = actual
            idx["verified"][key] = _stat_record(final.stat(), actual)
        if pinned != actual:
            log.warning("%s: no full sha256 is published, so it was checked against the published prefix %s only; "
                        "its sha256 %s is now pinned in %s and every later load checks it", key,
                        f.sha256_prefix, actual, self.root / "index.json")

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

    def _expected(self, model: ModelWeights, f: WeightsFile) -> Expected:
        if f.sha256:
            return Expected(f.sha256, f.sha256_prefix)
        with self._index() as idx:
            pinned = idx["pinned"].get(f"{model.name}/{f.name}")
        return Expected(pinned, f.sha256_prefix, pinned=pinned is not None)

    def path(self, name: str, file: str) -> Path:
        """Where a file lives in the cache (it may not exist yet)."""
        return self.root / name / file

    def _import_hint(self, model: ModelWeights, pin: bool = False) -> str:
        target = f"/path/to/{model.files[0].name}" if len(model.files) == 1 else f"/path/to/{model.name}-dir"
        return f"`har-stream weights import {model.name} {target}{' --pin' if pin else ''}`"

    # ---------------------------------------------------------------- public API
    def files(self, name: str, *, download: bool = True, progress: bool | None = None,
              on_progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> dict[str, Path]:
        """Verified paths of a model's files, downloading missing ones unless offline.

        ``on_progress(done_bytes, total_bytes)`` is called while a file downloads (total None if unknown).
        Setting ``cancel`` stops a download at once (its socket is shut down): ``Cancelled`` is raised and the
        partial file removed, so a stopping server need not wait for a slow download.
        """
        return self._fetch(name, download=download, repair=False, progress=progress, on_progress=on_progress,
                           cancel=cancel)

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
               on_progress: ProgressCallback | None, cancel: CancelToken | None = None) -> dict[str, Path]:
        model = self._model(name)
        out: dict[str, Path] = {}
        for f in model.files:
            path = self.path(model.name, f.name)
            want = self._expected(model, f)
            if path.is_file():
                actual = self._digest(f"{model.name}/{f.name}", path)
                if want.accepts(actual):
                    if want.digest is None:  # found in the cache before any pin (index lost, copied by hand)
                        self._pin(model, f, path, actual)
                    out[f.name] = path
                    continue
                if not repair:
                    raise HashMismatchError(
                        f"cached {model.name}/{f.name} ({path}) has sha256 {actual}, expected {want.describe()}; "
                        f"it was not used: run `har-stream weights pull {model.name}` to replace it or "
                        f"{self._import_hint(model)}")
            if model.source == "local":
                raise WeightsMissingError(f"local checkpoint {model.name}/{f.name} is missing from {path.parent}; "
                                          f"import it again with {self._import_hint(model)}")
            if not download or self.offline:
                why = "offline mode is on (HAR_STREAM_OFFLINE)" if self.offline else "downloads are disabled here"
                raise self._missing_error(model, f, why)
            self._download(model, f, path, want, progress, on_progress, cancel)
            out[f.name] = path
        return out

    def _missing_error(self, model: ModelWeights, f: WeightsFile, why: str) -> WeightsMissingError:
        return WeightsMissingError(
            f"weights {model.name}/{f.name} are not cached in {self.root / model.name} and cannot be downloaded "
            f"from {f.url}: {why}; on a machine with internet run `har-stream weights pull {model.name}`, copy "
            f"them to this machine and run {self._import_hint(model)}")

    def _download(self, model: ModelWeights, f: WeightsFile, path: Path, want: Expected,
                  progress: bool | None, on_progress: ProgressCallback | None,
                  cancel: CancelToken | None = None) -> None:
        cancel = cancel or CancelToken()
        cancel.raise_if_set()
        request = urllib.request.Request(f.url, headers={"User-Agent": f"har-stream/{__version__}"})
        stack = contextlib.ExitStack()  # the connections' cancel hooks, removed when the download ends
        try:
            response = _cancellable_opener(cancel, stack).open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            stack.close()
            raise self._missing_error(model, f, f"the server answered HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            stack.close()
            cancel.raise_if_set()  # the failure was our own shutdown of the connection
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
                        cancel.raise_if_set()
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if bar is not None:
                            bar.update(len(block))
                        if on_progress is not None:
                            on_progress(done, total)
                except (OSError, http.client.HTTPException) as err:
                    cancel.raise_if_set()  # the broken read was our own shutdown of the socket
                    raise self._missing_error(model, f, f"the download broke off after {done} bytes ({err})") from None
                cancel.raise_if_set()  # a shut-down socket reads as the end of the file
                out.flush()
                os.fsync(out.fileno())
            if length and length.isdigit() and done != int(length):
                raise self._missing_error(model, f, f"the download ended after {done} of {length} bytes")
            actual = digest.hexdigest()
            if not want.accepts(actual):
                raise HashMismatchError(
                    f"download of {model.name}/{f.name} from {f.url} has sha256 {actual}, expected "
                    f"{want.describe()}; the file was not used and nothing was kept in the cache")
            if want.digest is None:
                self._pin(model, f, path, actual, staged=tmp)
            else:
                os.replace(tmp, path)
                self._remember(f"{model.name}/{f.name}", path, actual)
        finally:
            stack.close()
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
                want = self._expected(model, f)
                expected = want.digest or want.prefix
                if not path.is_file():
                    results.append(VerifyResult(model.name, f.name, path, "missing", expected, None))
                    continue
                actual = self._digest(f"{model.name}/{f.name}", path, trust_memory=False)
                status: VerifyStatus = ("mismatch" if not want.accepts(actual)
                                        else "unpinned" if want.digest is None else "ok")
                results.append(VerifyResult(model.name, f.name, path, status, expected, actual))
        return results

    def import_file(self, name: str, source: Path, *, pin: bool = False) -> Path:
        """Copy a trusted local file (or, for multi-file models like ``clip``, a folder) into the cache.

        Manifest models are hash-checked and refused on mismatch. A file published with only a prefix must
        start with it and has its full digest pinned (trust on first use); once pinned, a different file is
        refused unless ``pin=True``, which replaces the pin (the prefix is still checked). Any other name
        stores a local checkpoint and records its digest.
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
        staged: list[tuple[WeightsFile, Path, str]] = []
        try:
            for f, src in pairs:
                staged.append((f, *self._stage(src, self.root / name)))
            for f, _, actual in staged:
                self._check_import(model, f, actual, pin)
            for f, tmp, actual in staged:
                final = self.path(name, f.name)
                if f.prefix_only:
                    self._pin(model, f, final, actual, staged=tmp, replace=pin)
                else:
                    os.replace(tmp, final)
                    self._remember(f"{name}/{f.name}", final, actual)
        finally:
            for _, tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        return self.path(name, model.files[0].name) if len(model.files) == 1 else self.root / name

    def _check_import(self, model: ModelWeights, f: WeightsFile, actual: str, pin: bool) -> None:
        want = self._expected(model, f)
        if want.accepts(actual):
            return
        prefix_ok = f.sha256_prefix is not None and actual.startswith(f.sha256_prefix)
        if pin and f.prefix_only and prefix_ok:
            return  # an explicit re-pin of a prefix-only file
        hint = (f"; if you trust this file instead, replace the pin with {self._import_hint(model, pin=True)}"
                if want.pinned and prefix_ok else f": get the file from {f.url}")
        raise HashMismatchError(f"{model.name}/{f.name} to import has sha256 {actual}, expected {want.describe()}; "
                                f"refused, nothing was imported{hint}")

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
        if not is_model_name(name):
            raise ModelError(f"{name!r} is not a usable weights name; use lower-case letters, digits, '.', '_' or '-'")
        if not source.is_file():
            raise WeightsError(f"{source} is not a file; a local checkpoint ({name}) is imported from one file")
        fname = source.name if is_file_name(source.name) else "checkpoint" + "".join(source.suffixes[-1:])
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
                                   all(self._expected(model, f).digest is not None for f in model.files)))
        return rows

    def sha256_of(self, name: str) -> str | None:
        """Identity of a model's weights for results: the file's digest, or a combined digest for several files.

        None when some file has no full digest yet (published with a prefix only, not pinned) or the name
        is unknown.
        """
        try:
            model = self._model(name)
        except ModelError:
            return None
        pairs = [(f.name, self._expected(model, f).digest) for f in model.files]
        if any(sha is None for _, sha in pairs):
            return None
        if len(pairs) == 1:
            return pairs[0][1]
        return _combined_digest([(n, s) for n, s in pairs if s is not None])
