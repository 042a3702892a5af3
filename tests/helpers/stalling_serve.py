"""``har-stream serve`` as a real subprocess with a patch applied first (``PatchedServe``), e.g. one whose model
can be made to hang (``StallingServe``): for tests of what a stuck model call does to health and to a stop.

The process runs the real CLI after one patch: once the file ``hang_flag`` exists, every ``classify`` call of
the CNN-LSTM model (the ``tiny_checkpoint``) sleeps ``HANG_S`` (far past any bound) in ``time.sleep``, which,
like a native call, holds its thread and cannot be interrupted. The warm-up at load runs before the flag is
made, so the server gets ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers.serve_process import ServeProcess

HANG_S = 600.0

_PATCH = """
import os, time
from har_stream.models.cnn_lstm import CnnLstmModel
real_classify = CnnLstmModel.classify
def classify(self, windows):
    if os.path.exists({flag!r}):
        time.sleep({hang})
    return real_classify(self, windows)
CnnLstmModel.classify = classify
"""


class PatchedServe(ServeProcess):
    """``ServeProcess`` running ``patch`` (Python source) in the server's process before the CLI starts."""

    def __init__(self, env: dict[str, str], args: list[str], patch: str) -> None:
        super().__init__(env, args)
        self.patch = patch

    def command(self) -> list[str]:
        return [sys.executable, "-c", f"{self.patch}\nimport sys\nfrom har_stream.cli import main\n"
                "raise SystemExit(main(sys.argv[1:]))\n"]


class StallingServe(PatchedServe):
    """``ServeProcess`` whose model hangs in ``classify`` once ``hang()`` is called."""

    def __init__(self, env: dict[str, str], args: list[str], hang_flag: Path) -> None:
        super().__init__(env, args, _PATCH.format(flag=str(hang_flag), hang=HANG_S))
        self.hang_flag = hang_flag

    def hang(self) -> None:
        self.hang_flag.touch()
