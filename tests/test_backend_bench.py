"""``har-stream bench live --backend ray``: one run against the local backend, then Ray Serve (started by the
bench inside its own process, on loopback), with the comparison's figures in the output and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.clips import run_cli


def test_bench_live_compares_the_ray_backend_with_the_local_one(tiny_checkpoint: Path, cli_env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "ray.json"
    proc = run_cli("bench", "live", "--backend", "ray", "--peers", "1", "--seconds", "3", "--torch-threads", "1",
                   "--precision", "fp32", "--model", str(tiny_checkpoint), "--json", str(out), env=cli_env,
                   timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on Ray Serve (local, replicas: 1" in proc.stdout
    assert "ray vs local: added latency per label p50" in proc.stdout, proc.stdout
    report = json.loads(out.read_text())
    assert report["bench"] == "live"
    (run,) = report["figures"]["backends"]
    assert run["peers"] == 1 and run["local"]["labels"] > 0 and run["ray"]["labels"] > 0
    assert run["calls"] > 0 and run["throughput_ratio"] > 0
    # uint8 frames of the model's input went out, much smaller features came back
    assert run["sent_bytes"] > 10 * run["received_bytes"] > 0
    assert 1_000 < run["bytes_per_stream_s"] < 2_000_000
