"""The cameras page's RTSP camera: the fake webcam's clip (see conftest.py's WEBCAM_*) as raw RGB frames.

The square slides left, then right back to where it started, wholly in frame; looped by the RTSP server it
never jumps, so every window the server labels shows real motion ("moving left" / "moving right", or a
turn, which the tiny model reads as "holding still").
"""

from __future__ import annotations

import numpy as np

from har_stream.synthetic import MOTIONS, make_background, render
from tests.browser.conftest import (WEBCAM_FPS, WEBCAM_LABELS, WEBCAM_LEG_FRAMES, WEBCAM_SIZE, WEBCAM_SPEED,
                                    WEBCAM_START)


def left_right_frames() -> np.ndarray:
    """(n, height, width, 3) uint8 RGB frames of one seamless there-and-back loop at ``WEBCAM_FPS``."""
    rng = np.random.default_rng(11)
    width, height = WEBCAM_SIZE
    background = make_background(width, height, rng)
    x, y = WEBCAM_START
    legs = []
    for label in WEBCAM_LABELS:
        legs.append(render(label, WEBCAM_LEG_FRAMES, width=width, height=height, fps=WEBCAM_FPS,
                           speed=WEBCAM_SPEED, start=(x, y), colour=(150, 220, 240), background=background))
        x += MOTIONS[label][0] * WEBCAM_SPEED * WEBCAM_LEG_FRAMES / WEBCAM_FPS
    assert abs(x - WEBCAM_START[0]) < 1e-9  # back where it started: the loop has no jump
    return np.concatenate(legs)
