"""The demo live on a box that can't keep up, end to end: a real cgroup CPU quota (what
``docker run --cpus`` sets), the cameras decoded from video in real time, ``edge.run`` in its own
process. It must say within 10 s that the cameras run below their rate, and identities must not
fragment: at most 2x as many global ids as people (the goal, 1.5x, is not met at this share yet),
scored against the world's ground truth.

Where no cgroup can be written, the same run on one core shared with two busy loops (the issue's
fallback); it skips only when neither is possible.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest

from edge.evaluate import evaluate
from sim.scene import World, resolve_scene
from sim.writers import write_mot_ground_truth

REPO = Path(__file__).resolve().parents[1]
SEED, SECONDS, QUOTA = 101, 20.0, 0.2
WARNING = re.compile(r"^(\d\d:\d\d:\d\d) WARNING edge\.runtime\.rate_watch: (\w+) is processed at ([\d.]+) of the")
# the pipeline is built (models loaded: seconds under a small quota) and frames start to flow
STARTED = re.compile(r"^(\d\d:\d\d:\d\d) INFO edge\.runtime\.pipeline: matching:")


def bench_live():
    """scripts/bench_live.py's cgroup and camera-file helpers (it imports its sibling bench_mtmc)."""
    if str(REPO / "scripts") not in sys.path:
        sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("bench_live", REPO / "scripts" / "bench_live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def can_make_a_cgroup() -> bool:
    return os.access("/sys/fs/cgroup/cpu", os.W_OK) or os.access("/sys/fs/cgroup/cgroup.procs", os.W_OK)


@pytest.mark.slow
@pytest.mark.skipif(not (can_make_a_cgroup() or shutil.which("taskset")), reason="no cgroup, no taskset")
def test_the_demo_under_a_small_cpu_share_warns_and_keeps_identities_whole(tmp_path):
    live = bench_live()
    videos = tmp_path / "world"
    write_mot_ground_truth(
        World(resolve_scene("demo", seed=SEED, duration_s=SECONDS)), videos, video=True, progress=False
    )
    camera_file = live.seed_camera_file(
        REPO / "configs" / "cams.demo.yaml", SEED, tmp_path / "run", 56871, None, videos
    )
    setting = f"quota:{QUOTA}" if can_make_a_cgroup() else "busy:2"
    log = tmp_path / "run" / "edge.log"
    assert live.run_setting(setting, camera_file, tmp_path / "run" / "report.json", log) == 0, log.read_text()[-3000:]

    lines = log.read_text().splitlines()
    started = next(datetime.strptime(m.group(1), "%H:%M:%S") for x in lines if (m := STARTED.match(x)))
    warned = [(datetime.strptime(m.group(1), "%H:%M:%S"), m.group(2)) for x in lines if (m := WARNING.match(x))]
    assert warned, "no camera was said to run below its rate:\n" + "\n".join(lines[-20:])
    assert (warned[0][0] - started).total_seconds() <= 10, (warned[0], started)
    cross = evaluate(videos, tmp_path / "run" / "mot")["cross_camera"]
    # the goal is 1.5x the people; at a quarter CPU the 5 report seeds average 1.65x
    # (33 for 20, docs/edge.md), so this guards against the collapse before the governor (4-6x)
    assert cross["num_global_ids_pred"] <= 2.0 * cross["num_global_ids_gt"], cross
