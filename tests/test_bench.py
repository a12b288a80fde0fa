"""scripts/bench still runs: every workload on the raw floor, raw + models and the fork, against
its loopback server (tiny runs; the numbers are not checked, a benchmark is not a timed test).

It guards the benchmark's own code, the side that uses the SDK's model classes by name above all:
an upstream release that renames them breaks this test, not the next person measuring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_every_workload_on_the_floor_the_models_and_the_fork() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--sides", "raw,models,fork", "--seconds", "0.05",
         "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert set(report) == {"raw", "models", "fork"}
    for side, figures in report.items():
        assert set(figures["runs"]) == {"seq-3", "seq-300", "c32", "complete"}, side
        for workload, runs in figures["runs"].items():
            assert len(runs) == 1 and runs[0]["calls"] >= 3, (side, workload, runs)
        assert figures["peak_rss_mib"] > 0
