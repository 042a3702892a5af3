"""``har-stream weights list|pull|verify|import``: look after the verified weights cache.

Thin over ``WeightStore``: every failure is a ``WeightsError``/``ModelError`` that ``cli.py`` prints as one
line; ``verify`` prints its table and exits non-zero when any cached file fails its hash. A file published
with only a sha256 prefix is pinned on first use; the store logs that warning, which ``cli.py`` shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import HashMismatchError
from ..weights import WeightStore


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "weights", help="list, download, verify or import model weights",
        description="Model weights live in $HAR_STREAM_HOME/weights (default ~/.cache/har-stream/weights); "
                    "every file is sha256-checked before use.")
    parser.add_argument("--home", type=Path, default=None,
                        help="cache folder (default: $HAR_STREAM_HOME or ~/.cache/har-stream)")
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="show the models the manifest knows and what is cached")
    p.set_defaults(func=_list)

    p = sub.add_parser("pull", help="download a model's files (replacing corrupt ones)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_pull)

    p = sub.add_parser("verify", help="re-hash every cached file; exit non-zero on a mismatch")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=_verify)

    p = sub.add_parser("import", help="copy a local file (or, for clip, a folder) into the cache after hash-checking it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("source", type=Path, metavar="FILE")
    p.add_argument("--pin", action="store_true",
                   help="replace the digest pinned for a file published with only a sha256 prefix "
                        "(the prefix is still checked; files with a published sha256 ignore this)")
    p.set_defaults(func=_import)


def _store(args: argparse.Namespace) -> WeightStore:
    return WeightStore(home=args.home)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = [(r.name, r.family, r.status if r.pinned else f"{r.status} (sha256 prefix only)", _size(r.size),
             r.description)
            for r in store.list()]
    print(_table(("NAME", "FAMILY", "STATUS", "SIZE", "DESCRIPTION"), rows))
    print(f"\ncache: {store.root}", file=sys.stderr)
    return 0


def _pull(args: argparse.Namespace) -> int:
    store = _store(args)
    for name in args.names:
        paths = store.pull(name)
        for file, path in paths.items():
            print(f"{name}/{file}: ok  {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    store = _store(args)
    results = [r for name in args.names for r in store.verify(name)] if args.names else store.verify()
    rows = [(r.model, r.file, r.status, (r.actual or "")[:16]) for r in results]
    print(_table(("NAME", "FILE", "STATUS", "SHA256"), rows))
    bad = [r for r in results if r.status == "mismatch"]
    for r in bad:
        print(f"har-stream: {r.model}/{r.file} ({r.path}) has sha256 {r.actual}, expected {r.expected}; "
              f"run `har-stream weights pull {r.model}` or re-import it", file=sys.stderr)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "mismatch", "missing", "unpinned")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return HashMismatchError.exit_code if bad else 0


def _import(args: argparse.Namespace) -> int:
    store = _store(args)
    model = store.manifest.get(args.name)
    path = store.import_file(args.name, args.source, pin=args.pin)
    digest = store.sha256_of(args.name)
    if model is None:
        kind = "stored as a local checkpoint (not in the manifest)"
    elif any(f.prefix_only for f in model.files):
        kind = "checked against the published sha256 prefix only, full digest pinned"
    else:
        kind = "verified against the manifest"
    print(f"{args.name}: imported to {path}; {kind}; sha256 {digest}")
    return 0
