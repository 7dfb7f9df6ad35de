"""The capacity report: its arithmetic and verdicts with known answers, and the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, demo_camera_file

from edge.runtime.capacity import CapacityRow, verdict

CAMS = {"cam1": 10.0, "cam2": 10.0, "cam3": 10.0}


def test_a_setting_is_bounded_by_the_loop_or_by_the_cpu_budget():
    row = CapacityRow(every=1, frames=200, step_s=10.0, cpu_s=8.0)  # 20 frames/s in the loop, 40 ms CPU a frame
    assert row.loop_fps == 20.0 and row.cpu_per_frame == pytest.approx(0.04)
    assert row.capacity(2.0) == 20.0  # the loop binds
    assert row.capacity(0.5) == pytest.approx(12.5)  # a half-CPU quota binds: 0.5 / 0.04
    assert row.as_dict(0.5) == {
        "detect_every": 1,
        "frames": 200,
        "loop_fps": 20.0,
        "cpu_ms_per_frame": 40.0,
        "capacity_fps": 12.5,
    }


def test_the_verdict_says_what_fits_and_what_the_governor_buys():
    rows = [CapacityRow(1, 200, 10.0, 4.0), CapacityRow(2, 270, 10.0, 4.0), CapacityRow(4, 400, 10.0, 4.0)]
    lines = verdict(rows, CAMS, cpus=4.0)
    assert lines[0] == "your 3 camera(s) ask for 30.0 frames/s (cam1 10, cam2 10, cam3 10)."
    assert lines[1] == "at full quality it takes 20.0 (67%): 2 camera(s) at 10 fps, or all of them at 6.7 fps."
    assert lines[2].startswith("with the detector on every 4th frame (governor.detect_every: 4;") and lines[2].endswith(
        "it takes 40.0: all of them."
    )
    assert (
        verdict(rows, {"cam1": 10.0}, cpus=4.0)[1]
        == "at full quality (detector on every frame) this box takes 20.0: all of them, with 100% to spare."
    )
    short = verdict(rows[:2], {c: 25.0 for c in CAMS}, cpus=4.0)
    assert short[-1].startswith("even with the detector on every 2nd frame it takes 27.0")


@pytest.mark.slow
def test_edge_run_capacity_measures_the_camera_file_and_prints_the_table(tmp_path):
    demo_camera_file(
        tmp_path,
        "{id: c1, source: 'synthetic://demo?camera=cam1', fps: 10}",
        rest=f"outputs: {{mot_dir: {tmp_path / 'mot'}}}\n",
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.run",
            "--cameras",
            str(tmp_path / "cams.yaml"),
            "--capacity",
            "2",
            "--report",
            str(tmp_path / "report.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    table = out.stdout.splitlines()
    assert table[0].startswith("capacity of this box, ") and table[1].startswith("| detector on | loop frames/s")
    assert [line.split("|")[1].strip() for line in table[3:6]] == ["every frame", "every 2nd frame", "every 4th frame"]
    assert table[6] == "your 1 camera(s) ask for 10.0 frames/s (c1 10)."
    data = json.loads((tmp_path / "report.json").read_text())["capacity"]
    assert [r["detect_every"] for r in data["rows"]] == [1, 2, 4] and all(
        r["frames"] > 0 and r["loop_fps"] > 0 for r in data["rows"]
    )
    assert not (tmp_path / "mot").exists()  # a measurement writes no results
