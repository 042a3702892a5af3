"""docs/operations.md stays true to the code: its configuration table is the generated one, and every metric
the collector defines is described there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_configuration_table_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_metric_is_documented() -> None:
    source = (REPO / "server" / "metrics.py").read_text(encoding="utf-8")
    defined = set(re.findall(r'"(har_[a-z_]+)"', source))
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    counters = set(re.findall(r'CounterMetricFamily\(\s*"(har_[a-z_]+)"', source))
    assert len(defined) > 20
    missing = [name for name in sorted(defined)
               if f"`{name}{'_total' if name in counters else ''}`" not in doc and f"`{name}`" not in doc]
    assert not missing, f"describe these in docs/operations.md's Metrics section: {missing}"
