// Rolling figures over the last N samples: the page shows last / p50 / p95 of label latency and round trip.
// A fixed-size ring keeps memory flat however long the camera runs.

export class Rolling {
  /** @param {number} size how many recent samples the percentiles cover */
  constructor(size = 100) {
    this.size = size;
    this.values = [];
    this.next = 0;
    this.last = null;
  }

  /** @param {number} value */
  push(value) {
    if (!Number.isFinite(value)) return;
    if (this.values.length < this.size) this.values.push(value);
    else this.values[this.next] = value;
    this.next = (this.next + 1) % this.size;
    this.last = value;
  }

  get count() {
    return this.values.length;
  }

  /** Nearest-rank percentile (p in 0..100); null before the first sample. */
  percentile(p) {
    if (this.values.length === 0) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    const rank = Math.ceil((p / 100) * sorted.length);
    return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
  }

  clear() {
    this.values = [];
    this.next = 0;
    this.last = null;
  }
}

/** "84 ms" / "1.2 s"; an en dash when there is nothing yet. */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms >= 10000) return `${(ms / 1000).toFixed(0)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms)} ms`;
}

/** A rate with one decimal ("14.9"); an en dash when unknown. */
export function formatRate(value) {
  return Number.isFinite(value) ? value.toFixed(1) : "–";
}

/** An integer count with thousands separators; an en dash when unknown. */
export function formatCount(value) {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "–";
}

/** A probability 0..1 as a whole percentage ("91%"). */
export function formatPercent(p) {
  return Number.isFinite(p) ? `${Math.round(p * 100)}%` : "–";
}

/** The stride windows close at: "8", or "12 (adaptive, asked 8)" while the server has widened it. */
export function formatStride(stats) {
  const now = stats?.stride;
  const asked = stats?.stride_asked;
  if (!Number.isFinite(now)) return "–";
  return Number.isFinite(asked) && now !== asked ? `${now} (adaptive, asked ${asked})` : `${now}`;
}
