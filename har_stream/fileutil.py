"""Atomic publishing of output files.

Outputs are written to a temp file beside the destination and renamed into place, so a reader never sees a
half-written file (a kill at any moment leaves the old file or the new one, plus at worst a temp file the
owner sweeps); ``sync_files`` makes them durable before they are recorded. ``mkstemp`` creates files 0600; a
user's outputs should get the usual permissions (0666 less the umask), as if opened normally — they are often
read by other users or from containers.
"""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: Path | str, dest: Path | str) -> None:
    """Give ``tmp`` normal file permissions and rename it onto ``dest`` atomically."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)


def sync_files(paths: list[Path]) -> None:
    """fsync each file, then each folder holding them (so their names are on disk too). Call before recording
    that the files exist: a record that survives a power cut must not name a file that did not."""
    for path in paths:
        _fsync(path)
    for folder in {Path(path).parent for path in paths}:
        _fsync(folder)


def _fsync(path: Path | str) -> None:
    """fsync a file or a folder (opened read-only: a folder cannot be opened for writing)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
