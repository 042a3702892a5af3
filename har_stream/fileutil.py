"""Atomic publishing of output files.

Outputs are written to a temp file beside the destination and renamed into place, so a reader never sees a
half-written file. ``mkstemp`` creates files 0600; a user's outputs should get the usual permissions
(0666 less the umask), as if opened normally — they are often read by other users or from containers.
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
