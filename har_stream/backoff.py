"""Exponential backoff, capped: camera reconnects, webhook retries and MQTT reconnects all wait this way."""

from __future__ import annotations


def capped_delay(failures: int, initial: float, cap: float, factor: float = 2.0) -> float:
    """``min(cap, initial * factor ** (failures - 1))`` for the ``failures``-th failure in a row (≥ 1).

    Safe for any count: a peer that stays down for days makes the power overflow a float, which is then
    simply the cap."""
    try:
        return min(cap, initial * factor ** max(0, failures - 1))
    except OverflowError:
        return cap
