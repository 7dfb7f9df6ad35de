"""The topology learned from sightings with a known answer: 40 people walk from camera A to camera
B in 6-10 s, leaving A through its right edge and coming into B at its left; camera C sees what A
sees. The learner finds the A -> B link, a window that holds every walk, doors around where people
left and came in (and not elsewhere), C overlapping A, and writes a camera file the loader takes;
too little evidence gives no link."""

import numpy as np
import yaml

from core.embeddings import Embeddings
from edge.identity import EngineSettings, TrackletSummary
from edge.identity.config import TransitionWindow
from edge.identity.topology import inside
from edge.topology.evidence import sightings
from edge.topology.links import learn_topology
from edge.topology.site_file import write_site_file


def tracklet(cam, local, look, first, last, first_box, last_box):
    return TrackletSummary(
        cam, local, first, last, Embeddings.normalized(look[None].copy()), 6, 6.0,
        np.array(first_box, float), np.array(last_box, float), None, True,
    )  # fmt: skip


def walks(n=40, seed=0):
    rng = np.random.default_rng(seed)
    out, gaps = [], []
    for p in range(n):
        look = rng.normal(size=64)
        t0 = 20.0 * p
        seen = lambda look=look: look + rng.normal(scale=0.05, size=64)  # noqa: E731
        ex, ey = rng.uniform(560, 620), rng.uniform(280, 320)  # A's right edge
        out.append(tracklet("A", p, seen(), t0, t0 + 5, (100, 100, 140, 200), (ex - 20, ey - 100, ex + 20, ey)))
        out.append(tracklet("C", p, seen(), t0 + 0.5, t0 + 4, (300, 100, 340, 200), (320, 120, 360, 220)))
        gap = rng.uniform(6, 10)
        gaps.append(gap)
        nx, ny = rng.uniform(20, 60), rng.uniform(330, 370)  # B's left edge
        out.append(
            tracklet(
                "B", p, seen(), t0 + 5 + gap, t0 + 12 + gap, (nx - 20, ny - 100, nx + 20, ny), (300, 100, 340, 200)
            )
        )
    return out, np.array(gaps)


def test_a_known_walk_gives_its_link_window_doors_and_overlap(tmp_path):
    tracklets, gaps = walks()
    topology = learn_topology(sightings(tracklets, EngineSettings(threshold=0.5, scale=0.1)))
    assert [(k.src, k.dst) for k in topology.links] == [("A", "B")]
    link = topology.links[0]
    assert link.walks == 40 and set(topology.overlaps) == {("A", "C")}
    assert link.min_s <= gaps.min() and link.max_s >= gaps.max() and link.min_s >= 2.0 and link.max_s <= 20.0
    assert abs(link.transit_s[1] - np.median(gaps)) < 0.5
    assert link.exit is not None and link.entry is not None
    assert inside(link.exit.astype(np.float32), np.array([590.0, 300.0]))
    assert not inside(link.exit.astype(np.float32), np.array([100.0, 300.0]))
    assert inside(link.entry.astype(np.float32), np.array([40.0, 350.0]))
    assert not inside(link.entry.astype(np.float32), np.array([400.0, 350.0]))

    out = write_site_file(topology, tmp_path / "site.yaml", None, "a test")
    text = out.read_text()
    assert "A -> B: 40 walks" in text and "A ~ C: overlapping views" in text
    windows = [TransitionWindow(**t) for t in yaml.safe_load(text)["matching"]["transitions"]]
    assert [(w.src, w.dst) for w in windows] == [("A", "B")] and windows[0].exit is not None


def test_too_few_walks_or_unsure_looks_give_no_link():
    tracklets, _ = walks(n=4)
    topology = learn_topology(sightings(tracklets, EngineSettings(threshold=0.5, scale=0.1)))
    assert topology.links == [] and topology.untrusted == {("A", "B"): 4}
    # the same walks, but a threshold the looks are not far above: nothing is confident enough
    tracklets, _ = walks()
    assert sightings(tracklets, EngineSettings(threshold=0.9, scale=0.1)) == []


def test_the_command_learns_from_a_run_s_log_and_writes_a_camera_file_and_picture(tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    from test_edge_run import cams_yaml

    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config

    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    log = tmp_path / "day.jsonl.gz"
    path = cams_yaml(
        tmp_path, cams, 56803, publisher={"enabled": False}, run={"max_frames": 60},
        outputs={"tracklet_log": str(log)}, matching={"threshold": None},
    )  # fmt: skip
    run_pipeline(load_edge_config(path))
    out = tmp_path / "site" / "site.yaml"
    command = [sys.executable, "-m", "edge.topology", "learn", "--log", str(log), "--cameras", str(path)]
    done = subprocess.run(
        [*command, "--out", str(out), "--min-evidence", "1"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "confident sightings" in done.stdout and out.with_suffix(".png").stat().st_size > 20000
    cfg = load_edge_config(out)  # the base's models and cameras, found from the learned file's folder
    assert [c.id for c in cfg.cameras] == ["cam1", "cam2", "cam3"]
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("cam3", "door"))
    bad = subprocess.run([*command[:-1], str(other), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "cameras ['cam3'] are not in" in bad.stderr.strip().splitlines()[-1]


def test_a_known_cross_view_homography_and_ground_plane_are_recovered():
    """Camera B sees camera A's floor through a known homography; people seen by both at once give
    their foot points in both images (B's with 1 px of noise, two matched to the wrong instant):
    the mapping comes back within a few pixels. Boxes of a level pinhole camera (people 1.7 m tall,
    camera 3 m up, focal length from a 60 degree view) give a plane on which lateral distances are
    metres and depth is as good as the focal-length guess (here exact)."""
    import math

    from edge.topology.overlap import PERSON_HEIGHT_M, ground_plane, same_time_points, view_mapping

    rng = np.random.default_rng(0)
    H_ab = np.array([[0.9, 0.1, 40.0], [-0.05, 1.1, 10.0], [1e-4, 2e-4, 1.0]])  # A's image -> B's image
    t = np.arange(0, 20, 0.1)
    a_track = np.column_stack([t, 200 + 8 * t, 300 + 40 * np.sin(t / 2), np.full_like(t, 80)])  # a wandering walk
    b_feet = np.c_[a_track[:, 1:3], np.ones(len(t))] @ H_ab.T
    b_feet = b_feet[:, :2] / b_feet[:, 2:] + rng.normal(scale=1.0, size=(len(t), 2))
    b_feet[[5, 50]] += 60  # two wrong matches: RANSAC leaves them out
    b_track = np.column_stack([t + 0.01, b_feet, np.full_like(t, 80)])
    pa, pb = same_time_points(a_track, b_track)
    assert len(pa) == len(t)
    H = view_mapping(pa, pb)
    probe = np.array([[250.0, 320.0], [350.0, 360.0]])
    got = np.c_[probe, np.ones(2)] @ H.T
    want = np.c_[probe, np.ones(2)] @ H_ab.T
    assert np.abs(got[:, :2] / got[:, 2:] - want[:, :2] / want[:, 2:]).max() < 3.0
    assert view_mapping(pa[:5], pb[:5]) is None  # too few to trust

    width, cam_h = 640.0, 3.0
    f = (width / 2) / math.tan(math.radians(30))
    X, Z = rng.uniform(-4, 4, 300), rng.uniform(4, 20, 300)  # people on the floor, metres
    u, v, h = width / 2 + f * X / Z, 240 + f * cam_h / Z, f * PERSON_HEIGHT_M / Z
    G = ground_plane(np.column_stack([np.zeros(300), u, v, h]), width)
    assert G is not None
    floor = np.c_[u, v, np.ones(300)] @ G.T
    floor = floor[:, :2] / floor[:, 2:]
    assert np.allclose(floor[:, 0], X, atol=0.05) and np.allclose(floor[:, 1], Z, rtol=0.01)
    assert ground_plane(np.column_stack([np.zeros(300), u, v, 200 - 0.1 * v]), width) is None  # taller up: no plane


def test_while_running_the_link_is_learned_said_written_and_used_and_a_moved_window_said(tmp_path, caplog):
    """Tracklets end one by one in scene time; the watch learns every 60 s. The A -> B link comes
    once five walks are in, a line says so, the camera file is written and the engine decides with
    it; walks that later take 20-30 s move the window, and that is said too."""
    import logging

    from edge.identity import IdentityEngine
    from edge.identity.settings import transitions_from
    from edge.topology.watch import TopologyWatch

    settings = EngineSettings(threshold=0.5, scale=0.1)
    early, _ = walks(n=20)
    late, _ = walks(n=30, seed=1)
    for s in late:  # the same walks 400 s later, taking 14 s longer to B
        shift = 400.0 + (14.0 if s.camera == "B" else 0.0)
        s.first_seen += shift
        s.last_seen += shift
    watch = TopologyWatch(every_s=60.0, out=tmp_path / "site.learned.yaml")
    engine = IdentityEngine(settings)
    caplog.set_level(logging.INFO, logger="edge.topology")
    learned_at = []
    for s in sorted(early + late, key=lambda s: s.last_seen):
        watch.add([s])
        topology = watch.step(s.last_seen, settings)
        if topology is not None:
            learned_at.append(s.last_seen)
            engine.use_transitions(transitions_from(TransitionWindow(**t) for t in topology.transitions()))
    assert "A -> B linked" in caplog.text and "A ~ C overlap" in caplog.text
    assert "A -> B window now" in caplog.text, watch.said
    assert learned_at[0] < 400 and len(learned_at) >= 2  # learned from the first walks, then changed
    window = engine.cfg.transitions[("A", "B")]  # the engine decides with the latest: 20-24 s walks fit
    assert window.min_s <= 20.0 and window.max_s >= 24.0 and engine.rules.cfg is engine.cfg
    written = yaml.safe_load((tmp_path / "site.learned.yaml").read_text())
    assert [t["from"] + t["to"] for t in written["matching"]["transitions"]] == ["AB"]
    assert watch.report()["links"][0]["max_s"] == written["matching"]["transitions"][0]["max_s"]


def test_a_site_node_learns_no_topology_said_in_one_line(tmp_path):
    import pytest
    from test_edge_run import cams_yaml

    from core.configio import ConfigError
    from edge.runtime.config import load_edge_config

    cams = [{"id": "cam1", "source": "synthetic://demo?camera=cam1", "realtime": False}]
    path = cams_yaml(tmp_path, cams, 56811, site={"node": "n1", "hub": "tcp://127.0.0.1:56812"})
    with pytest.raises(ConfigError, match="a site node does not match; learn the topology on the hub"):
        load_edge_config(path, ["matching.learn_topology.enabled=true"])


def test_a_demo_run_learns_its_topology_while_running_and_reports_it(tmp_path):
    """The pipeline's wiring: ended tracklets reach the watch, it learns every ``every_s`` of scene
    time (in the step: a lockstep run), the report carries what it learned and the camera file is
    written when a link comes."""
    from test_edge_run import cams_yaml

    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config

    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    path = cams_yaml(tmp_path, cams, 56813, publisher={"enabled": False}, run={"max_frames": 300})
    learned = tmp_path / "site.learned.yaml"
    overrides = ["matching.threshold=null", "matching.learn_topology.enabled=true", "matching.learn_topology.every_s=5"]
    overrides += ["matching.learn_topology.min_evidence=1", f"matching.learn_topology.out={learned}"]
    cfg = load_edge_config(path, overrides)
    report = run_pipeline(cfg)
    topology = report["topology"]
    assert topology["learnings"] >= 4  # 30 s of scene, every 5 s
    assert "cam1 ~ cam2 overlap" in " ".join(topology["changes"])  # the demo's two overlapping cameras
    written = yaml.safe_load(learned.read_text())
    assert {(t["from"], t["to"]) for t in written["matching"]["transitions"]} == {
        (k["from"], k["to"]) for k in topology["links"]
    }
    assert written["_BASE_"] == "cams.yaml" and "cam1 ~ cam2: overlapping views" in learned.read_text()
