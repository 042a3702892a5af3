"""``har-stream serve`` as the soak test starts it: the real entry point, plus two signals for its measurements.

- SIGUSR1 writes one ``soak-threads: [names]`` line (every Python thread's name) and every thread's Python stack
  to stderr: which threads there are, and what a leaked one is doing.
- SIGUSR2 runs a full garbage collection: what is unreachable but not yet collected is not a leak.

Nothing else differs from ``python -m har_stream.cli serve ...``. Run from the repository root:
``python -m tests.helpers.soak_launcher serve ...``.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import runpy
import signal
import sys
import threading
from types import FrameType

THREADS_MARK = "soak-threads: "


def _threads(signum: int, frame: FrameType | None) -> None:
    names = sorted(t.name for t in threading.enumerate())
    sys.stderr.write(THREADS_MARK + json.dumps(names) + "\n")
    sys.stderr.flush()
    faulthandler.dump_traceback(all_threads=True)


def _collect(signum: int, frame: FrameType | None) -> None:
    gc.collect()


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _threads)
    signal.signal(signal.SIGUSR2, _collect)
    sys.argv = ["har-stream", *sys.argv[1:]]
    runpy.run_module("har_stream.cli", run_name="__main__", alter_sys=True)
