"""``har-stream serve`` as a real subprocess whose model can be made to hang: for tests of what a stuck model
call does to health and to a stop.

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

_SCRIPT = """
import os, sys, time
from har_stream.cli import main
from har_stream.models.cnn_lstm import CnnLstmModel
flag = sys.argv.pop(1)
real_classify = CnnLstmModel.classify
def classify(self, windows):
    if os.path.exists(flag):
        time.sleep({hang})
    return real_classify(self, windows)
CnnLstmModel.classify = classify
raise SystemExit(main(sys.argv[1:]))
"""


class StallingServe(ServeProcess):
    """``ServeProcess`` whose model hangs in ``classify`` once ``hang()`` is called."""

    def __init__(self, env: dict[str, str], args: list[str], hang_flag: Path) -> None:
        super().__init__(env, args)
        self.hang_flag = hang_flag

    def command(self) -> list[str]:
        return [sys.executable, "-c", _SCRIPT.format(hang=HANG_S), str(self.hang_flag)]

    def hang(self) -> None:
        self.hang_flag.touch()
