"""A cumulative histogram of label latencies, kept by each model's worker for the metrics endpoint.

Why here and not in the server's Prometheus registry: the engine must not depend on a metrics library, and a
label's latency is known in one place only (``StreamPipeline._emit``). The worker lives as long as its model is
served, so its counts only grow; the server's collector reads them at scrape time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# Seconds. A live label takes one answer time (tens of ms on a GPU, ~0.1-1 s on a CPU) plus queueing.
LATENCY_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Counts per upper bound (not cumulative; the last is +Inf), their sum and total."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class LatencyHistogram:
    """``observe(seconds)``; ``snapshot()``. Used from the event loop only, so no lock."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bounds must be increasing and not empty")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._sum)
