"""How the API writes wall-clock times: ISO 8601, UTC, whole seconds, ``Z`` (``2026-11-26T13:00:00Z``)."""

from __future__ import annotations

from datetime import datetime, timezone


def iso_seconds(t: float | None) -> str | None:
    """``time.time()`` seconds as the API shows them; None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
