"""The view's benchmark scripts run and write what README quotes (tiny settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def run_script(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_view_cost_measures_both_sides(tmp_path):
    out = tmp_path / "cost.json"
    proc = run_script(
        "scripts/bench_view_cost.py",
        "--config",
        "configs/cams.demo.yaml",
        "--steps",
        "8",
        "--block",
        "2",
        "--endpoint",
        "tcp://127.0.0.1:56461",
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    assert result["off"]["steps"] == result["on"]["steps"] == 4
    assert result["on"]["wall_ms_mean"] > 0 and "cost_cpu_pct" in result
    assert "| on | 4 |" in proc.stdout


def test_bench_view_load_samples_memory_and_the_page(tmp_path):
    out = tmp_path / "load.json"
    run_script("scripts/bench_view.py", "load", "--rate", "20", "--duration", "3", "--port", "56462", "--out", str(out))
    result = json.loads(out.read_text())
    assert len(result["samples"]) >= 2 and result["view_rss_mb"]["max"] > 10
    assert 0 < result["cards_max"] <= 120 and result["dom_nodes_max"] > 0
    assert result["counters"]["malformed"] == 0 and result["published"]["identity"] > 0
