"""edge.run's command line as an operator sees it: a start line at once, a final line with each
camera's frames and fps over the time it ran, and its own errors as one line with exit code 2."""

import subprocess
import sys

import zmq
from conftest import REPO
from test_edge_run import cams_yaml

from edge.runtime.stats import PipelineStats


def run_cli(cfg_path, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "edge.run", "--cameras", str(cfg_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_fps_of_a_camera_that_ended_early_is_over_its_own_running_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("edge.runtime.stats.time.monotonic", lambda: now[0])
    stats = PipelineStats()
    for t in range(10):  # "long" runs 9 s at 1 fps; "short" sends 3 frames at 1 fps, then ends
        now[0] = float(t)
        stats.frame("long", 0.0)
        if t < 3:
            stats.frame("short", 0.0)
        if t == 5:
            stats.report()  # a stats window in between changes nothing
    assert stats.per_camera(["dead", "long"]) == {
        "dead": {"frames": 0, "fps": 0.0, "running_s": 0.0},  # never delivered
        "long": {"frames": 10, "fps": 1.0, "running_s": 9.0},
        "short": {"frames": 3, "fps": 1.0, "running_s": 2.0},
    }


def test_start_line_then_done_line_with_frames_and_fps_per_camera(tmp_path):
    cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2)]
    proc = run_cli(cams_yaml(tmp_path, cams, 56844, run={"max_frames": 12}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert (
        "starting: 2 camera(s) [cam1, cam2], detector " in lines[0]
        and "publishing on tcp://127.0.0.1:56844" in lines[0]
    )
    assert lines[0].endswith("until 12 frames per camera")
    done = next(line for line in lines if " done: " in line)
    assert '"cam1": {"frames": 12, "fps": ' in done and '"cam2": {"frames": 12, "fps": ' in done


def test_publisher_port_in_use_is_one_line_and_exit_code_2(tmp_path):
    taken = zmq.Context.instance().socket(zmq.PUB)
    taken.bind("tcp://127.0.0.1:56845")
    try:
        cams = [{"id": "cam1", "source": "synthetic://tiny?camera=cam1", "realtime": False}]
        proc = run_cli(cams_yaml(tmp_path, cams, 56845, run={"max_frames": 2}))
    finally:
        taken.close(0)
    assert proc.returncode == 2
    assert "error: cannot bind the event publisher to tcp://127.0.0.1:56845: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
