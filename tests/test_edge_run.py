"""The edge runtime end to end on CPU: synthetic cameras, the committed demo models, a real
ZeroMQ subscriber, a scripted cross-camera case, a camera that drops, a stalled subscriber."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
import zmq
from conftest import REPO

from edge.evaluate import evaluate
from edge.listen import decode
from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config
from sim.scene import World, WorldSpec, register_scene, resolve_scene, three_camera_rig
from sim.writers import write_mot_ground_truth

DEMO = REPO / "edge" / "demo_models"


def cams_yaml(tmp_path, cameras, port, **sections):
    cfg = {
        "cameras": cameras,
        "detector": {"weights": str(DEMO / "detector.onnx"), "imgsz": 320, "conf": 0.4},
        "tracker": {"kind": "bytetrack", "high_score": 0.6, "low_score": 0.4, "new_track_score": 0.7, "lost_s": 2.0},
        "reid": {"backend": "onnxruntime", "model": str(DEMO / "reid.onnx"), "embed_every": 3, "min_box_height": 16},
        "matching": {"threshold": 0.9, "min_embeddings": 2},
        "publisher": {"endpoint": f"tcp://127.0.0.1:{port}", "snapshot_interval_s": 0.5},
        "outputs": {"mot_dir": str(tmp_path / "mot")},
        "run": {"stats_interval_s": 0.5},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Subscriber(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.sock.setsockopt_string(zmq.SUBSCRIBE, "")
        self.messages, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            if self.sock.poll(50):
                self.messages.append(decode(self.sock.recv_multipart()))
        self.sock.close(0)


def run_with_subscriber(cfg_path, port):
    sub = Subscriber(port)
    sub.start()
    time.sleep(0.3)
    report = run_pipeline(load_edge_config(cfg_path))
    time.sleep(0.3)
    sub.stop.set()
    sub.join(2)
    return report, sub.messages


def ids_the_events_tell(messages) -> dict:
    """(camera, local id) -> global id, replaying identity events as a subscriber would."""
    ids = {}
    for topic, h, _ in messages:
        if not topic.startswith("identity/"):
            continue
        if h["event"] in ("new", "assigned", "reassigned"):
            ids[(h["camera"], h["local_id"])] = h["global_id"]
        elif h["event"] == "merged":
            ids = {k: (h["into"] if g == h["from"] else g) for k, g in ids.items()}
    return ids


def ids_the_files_hold(mot, cameras) -> dict:
    """(camera, local id) -> global id from the run's local and global MOT files (same frame and box)."""
    ids = {}
    for cam in cameras:
        local = np.loadtxt(mot / f"{cam}.txt", delimiter=",", ndmin=2)
        glob = {
            (int(r[0]), *np.round(r[2:6], 2)): int(r[1])
            for r in np.loadtxt(mot / f"{cam}.global.txt", delimiter=",", ndmin=2)
        }
        for r in local:
            gid = glob.get((int(r[0]), *np.round(r[2:6], 2)))
            if gid is not None:
                ids[(cam, int(r[1]))] = gid
    return ids


def test_two_camera_run_publishes_well_formed_events_and_scores(tmp_path):
    cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2)]
    report, messages = run_with_subscriber(cams_yaml(tmp_path, cams, 56790), 56790)
    assert report["processed"] == {"cam1": 60, "cam2": 60} and not report["errors"]
    topics = {t.split("/")[0] for t, _, _ in messages}
    assert {"track", "identity", "stats", "snapshot"} <= topics
    seqs = [h["seq"] for _, h, _ in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for topic, header, _ in messages:
        assert header["schema"] == "clipreid-edge.events" and header["version"] == 2 and "publish_ts" in header
        if topic.startswith("track/"):
            assert topic == f"track/{header['camera']}" and len(header["bbox"]) == 4 and header["local_id"] >= 1
            assert header["event"] in ("new", "update", "lost", "found", "ended")
        if topic.startswith("identity/"):
            assert topic == f"identity/{header['global_id']}" and header["event"] in (
                "new",
                "assigned",
                "reassigned",
                "merged",
                "expired",
            )
    # a subscriber that follows the events ends with the ids the MOT files hold (the end-of-run
    # revision publishes what it decides)
    told = ids_the_events_tell(messages)
    written = ids_the_files_hold(tmp_path / "mot", ("cam1", "cam2"))
    assert written and told == written
    # predictions in the MOT layout edge.evaluate reads, scored against the world's ground truth
    gt = write_mot_ground_truth(World(resolve_scene("tiny")), tmp_path / "gt", progress=False)
    result = evaluate(gt, tmp_path / "mot", sequences=["cam1", "cam2"])
    assert result["combined"]["HOTA"] > 30 and "cross_camera" in result


def test_what_the_end_of_run_revision_decides_is_published(tmp_path):
    """``close`` publishes the decisions of the engine's last revision (``flush(now)``): here the
    engine is wrapped so that its flush also decides one identity's expiry, which must arrive."""
    from edge.identity import Decision
    from edge.runtime.pipeline import EdgePipeline

    cams = [{"id": "cam1", "source": "synthetic://tiny?camera=cam1", "realtime": False}]
    cfg = load_edge_config(cams_yaml(tmp_path, cams, 56797))
    pipeline = EdgePipeline(cfg, {"cam1": 10.0})
    flush, seen = pipeline.engine.flush, []

    def flush_and_expire(now=None):
        out = flush(now)
        gid = min(pipeline.engine.identities)
        seen.append((now, gid))
        return out + [Decision("expired", gid, cameras=("cam1",))]

    pipeline.engine.flush = flush_and_expire
    sub = Subscriber(56797)
    sub.start()
    time.sleep(0.3)
    run_pipeline(cfg, pipeline=pipeline)
    time.sleep(0.3)
    sub.stop.set()
    sub.join(2)
    ((now, gid),) = seen
    assert now is not None and now > 0  # flushed with the scene time: the last revision runs
    last = [h for t, h, _ in sub.messages if t == f"identity/{gid}"][-1]
    assert last["event"] == "expired"


def test_scripted_person_gets_the_same_global_id_in_both_overlapping_cameras(tmp_path):
    walk = tuple((t, 3.0 + 0.8 * t, 3.0 + 0.2 * t) for t in np.arange(0.0, 10.01, 0.5))
    register_scene(
        WorldSpec(
            "scripted_pair",
            seed=4,
            num_identities=1,
            duration_s=10.0,
            fps=5.0,
            cameras=three_camera_rig(),
            scripted=(walk,),
        )
    )
    cams = [{"id": f"cam{i}", "source": f"synthetic://scripted_pair?camera=cam{i}", "realtime": False} for i in (1, 2)]
    report, messages = run_with_subscriber(cams_yaml(tmp_path, cams, 56791), 56791)
    ids = {
        cam: set(np.loadtxt(tmp_path / "mot" / f"{cam}.global.txt", delimiter=",", ndmin=2)[:, 1].astype(int))
        for cam in ("cam1", "cam2")
    }
    assert ids["cam1"] == ids["cam2"] and len(ids["cam1"]) == 1
    assigned = [h for t, h, _ in messages if t.startswith("identity/") and h["event"] == "assigned"]
    assert assigned and set(assigned[-1]["cameras"]) == {"cam1", "cam2"}


def test_camera_that_drops_and_comes_back_at_another_size_does_not_stop_the_others(tmp_path):
    cams = [
        {
            "id": "flaky",
            "source": "synthetic://tiny?camera=cam1&fail_after=10&fail_for_s=1.0&reopen_size=320x180",
            "fps": 10,
        },
        {"id": "steady", "source": "synthetic://tiny?camera=cam2", "realtime": False},
    ]
    run = {"max_frames": 30, "duration_s": 60.0, "reconnect_max_s": 0.5}
    report = run_pipeline(load_edge_config(cams_yaml(tmp_path, cams, 56792, run=run)))
    assert report["reconnects"]["flaky"] >= 1 and report["elapsed_s"] < 60
    assert report["processed"] == {"flaky": 30, "steady": 30}  # both ran on; flaky came back after its outage
    steady_rows = np.loadtxt(tmp_path / "mot" / "steady.txt", delimiter=",", ndmin=2)
    assert steady_rows[:, 0].max() >= 28  # the steady camera kept tracking through the other's outage
    flaky_rows = np.loadtxt(tmp_path / "mot" / "flaky.txt", delimiter=",", ndmin=2)
    after = flaky_rows[flaky_rows[:, 0] > 12]  # it came back at 320x180 instead of 640x360
    assert len(after) and (after[:, 2] + after[:, 4]).max() <= 321 and (after[:, 3] + after[:, 5]).max() <= 181


def test_subscriber_that_stops_reading_does_not_stall_the_pipeline(tmp_path):
    cams = [{"id": "cam1", "source": "synthetic://tiny?camera=cam1", "realtime": False}]
    cfg = load_edge_config(cams_yaml(tmp_path, cams, 56793, publisher={"high_water_mark": 5, "update_interval_s": 0.0}))
    dead = zmq.Context.instance().socket(zmq.SUB)
    dead.setsockopt(zmq.RCVHWM, 5)
    dead.connect("tcp://127.0.0.1:56793")
    dead.setsockopt_string(zmq.SUBSCRIBE, "")
    report = run_pipeline(cfg)  # never reads
    dead.close(0)
    assert report["processed"] == {"cam1": 60}


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - {id: a, source: 'synthetic://tiny', fsp: 3}\ndetector: {weights: nowhere.pt}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.run", "--cameras", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr and "cameras.0.fsp: unknown key" in proc.stderr and "Traceback" not in proc.stderr


def test_sigint_stops_the_cli_cleanly_and_flushes_results(tmp_path):
    import signal

    cams = [{"id": "cam1", "source": "synthetic://demo?camera=cam1", "fps": 10}]
    cfg = cams_yaml(tmp_path, cams, 56794)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.run", "--cameras", str(cfg), "--report", str(tmp_path / "report.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    deadline = time.time() + 90
    mot = tmp_path / "mot" / "cam1.txt"
    while time.time() < deadline and not (mot.exists() and mot.stat().st_size > 0):
        time.sleep(0.5)  # wait until it is really tracking
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0 < report["processed"]["cam1"] < 600  # stopped early, not at the end of the scene
    assert (tmp_path / "mot" / "cam1.global.txt").stat().st_size > 0  # open tracklets got identities and were written


def test_a_track_cut_as_a_swap_continues_as_a_new_tracklet_with_every_row_written(tmp_path):
    """``reid.swap_below: 1.0`` makes every crop look like someone else, so every track is cut
    after two crops: the run must go on with new local ids, count the cuts, and still write a
    global id for every row (nothing lost at a cut)."""
    rows = {}
    for name, below in (("off", False), ("cut", 1.0)):
        folder = tmp_path / name
        folder.mkdir()
        cams = [{"id": "cam1", "source": "synthetic://tiny?camera=cam1", "realtime": False}]
        report = run_pipeline(
            load_edge_config(
                cams_yaml(
                    folder,
                    cams,
                    56797,
                    publisher={"enabled": False},
                    run={"max_frames": 40},
                    reid={"swap_below": below},
                    matching={"threshold": None},
                )
            )
        )
        local = np.loadtxt(folder / "mot" / "cam1.txt", delimiter=",", ndmin=2)
        glob = np.loadtxt(folder / "mot" / "cam1.global.txt", delimiter=",", ndmin=2)
        rows[name] = (len(local), len(set(local[:, 1])), len(glob), report["swaps_cut"])
    (n_off, ids_off, g_off, cuts_off), (n_cut, ids_cut, g_cut, cuts_cut) = rows["off"], rows["cut"]
    assert cuts_off == 0 and cuts_cut > 0
    assert ids_cut > ids_off  # cut tracks continue under new local ids
    assert g_off == n_off and g_cut == n_cut and abs(n_cut - n_off) <= 0.05 * n_off  # every row still has its global id


def test_the_swap_threshold_comes_with_the_model_unless_configured():
    """``reid.swap_below``: a number wins, null takes the model's stored value (off without one),
    false is off whatever the model says."""
    from types import SimpleNamespace

    from edge.reid.config import ReIDConfig
    from edge.runtime.build import swap_below

    def resolved(configured, stored):
        similarity = {"swap": {"swap_below": stored}} if stored is not None else {}
        cfg = SimpleNamespace(reid=ReIDConfig(model="m.onnx", swap_below=configured))
        return swap_below(cfg, SimpleNamespace(meta=SimpleNamespace(similarity=similarity)))

    assert resolved(0.9, 0.93) == 0.9 and resolved(None, 0.93) == 0.93
    assert resolved(None, None) is None and resolved(False, 0.93) is None
    for bad in (2, True, "abc"):
        with pytest.raises(ValueError, match=r"a cosine in \[-1, 1\], null \(the model's value\) or false \(off\)"):
            ReIDConfig(model="m.onnx", swap_below=bad)


def test_lockstep_runs_are_reproducible(tmp_path):
    outputs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
        cfg = load_edge_config(cams_yaml(folder, cams, 56797, publisher={"enabled": False}, run={"max_frames": 40}))
        run_pipeline(cfg)
        outputs.append([(folder / "mot" / f"cam{i}.global.txt").read_text() for i in (1, 2, 3)])
    assert outputs[0] == outputs[1] and all(outputs[0])


def test_scripted_walk_through_the_corridor_keeps_one_identity_with_the_floor(tmp_path):
    """One person walks through area A (cam1 and cam2 overlap), the unseen corridor and area B
    (cam3). With the world's exact calibration and the corridor's transitions (windows and doors)
    the engine gives one global id in all three cameras, and the floor map of the run is drawn."""
    from sim.writers import corridor_transitions, floor_calibration

    walk = (
        (0.0, 2.0, 3.0),
        (6.0, 11.0, 3.0),
        (7.0, 13.0, 3.0),
        (12.0, 19.0, 3.0),
        (13.0, 21.0, 3.0),
        (18.0, 29.0, 2.0),
        (22.0, 30.0, 2.0),
    )
    register_scene(
        WorldSpec(
            "scripted_corridor",
            seed=6,
            num_identities=1,
            duration_s=22.0,
            fps=5.0,
            cameras=three_camera_rig(),
            scripted=(walk,),
        )
    )
    world = World(resolve_scene("scripted_corridor"))
    cams = [
        {"id": f"cam{i}", "source": f"synthetic://scripted_corridor?camera=cam{i}", "realtime": False}
        for i in (1, 2, 3)
    ]
    path = cams_yaml(
        tmp_path,
        cams,
        56798,
        matching={"threshold": None, "transitions": corridor_transitions(world)},
        outputs={"floor_map": str(tmp_path / "floor.png")},
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["calibration"] = floor_calibration(world)
    path.write_text(yaml.safe_dump(cfg))
    report, messages = run_with_subscriber(path, 56798)
    ids = {
        cam: set(np.loadtxt(tmp_path / "mot" / f"{cam}.global.txt", delimiter=",", ndmin=2)[:, 1].astype(int))
        for cam in ("cam1", "cam2", "cam3")
    }
    assert ids["cam1"] == ids["cam2"] == ids["cam3"] and len(ids["cam1"]) == 1, ids
    assert (tmp_path / "floor.png").stat().st_size > 10000
    for topic, header, _ in messages:
        if topic.startswith("identity/") and header["event"] in ("merged", "reassigned"):
            assert header["into"] == header["global_id"] and header["from"] != header["into"]


def test_a_camera_whose_capture_crashes_is_restarted_and_the_others_go_on(tmp_path, caplog):
    import logging

    cams = [
        {"id": "flaky", "source": "synthetic://tiny?camera=cam1&crash_after=6", "fps": 10},
        {"id": "steady", "source": "synthetic://tiny?camera=cam2", "realtime": False},
    ]
    run = {"max_frames": 30, "duration_s": 12.0, "reconnect_max_s": 1.0}
    with caplog.at_level(logging.WARNING, logger="edge.runtime.watchdog"):
        report = run_pipeline(load_edge_config(cams_yaml(tmp_path, cams, 56799, run=run)))
    assert report["restarts"]["flaky"] >= 1 and report["restarts"]["steady"] == 0
    assert report["processed"]["steady"] == 30 and report["processed"]["flaky"] > 6  # frames after a restart
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "camera flaky: capture stopped: RuntimeError: simulated decoder crash after 6 frames; restarting in" in m
        for m in messages
    )
    assert any("camera flaky: capture restarted (restart 1)" in m for m in messages)


def test_watchdog_reports_down_cameras_and_backs_off():
    from types import SimpleNamespace

    from edge.runtime.watchdog import CaptureWatchdog

    class Fake:
        def __init__(self, cam, live, error=None, alive=True):
            self.cam, self.reader, self.error, self.alive, self.finished = (
                SimpleNamespace(id=cam),
                SimpleNamespace(live=live),
                error,
                alive,
                not alive,
            )
            self.reconnects = self.dropped = 0

        def is_alive(self):
            return self.alive

        def start(self):
            pass

    dead = Fake("door", live=True, error="RuntimeError: boom", alive=False)
    file_cam = Fake("file", live=False, error="SourceError: gone", alive=False)
    ok = Fake("hall", live=True)
    made = []
    wd = CaptureWatchdog(
        [dead, file_cam, ok], lambda cam: made.append(cam.id) or Fake(cam.id, live=True), max_backoff_s=2.0
    )
    t0 = wd._last_frame["door"]
    wd.check(t0 + 0.1)  # noticed: restart after the first backoff (0.5 s)
    assert made == [] and set(wd.down(t0 + 0.1)) == {"door", "file"}
    wd.check(t0 + 0.7)
    assert made == ["door"] and wd.restarts == {"door": 1, "file": 0, "hall": 0}  # a file is never restarted
    assert wd.down(t0 + 3.0) == {"door": 3.0, "file": 3.0, "hall": 3.0}  # silent live streams are down too
    wd.frame("door")
    wd.frame("hall")
    assert set(wd.down()) == {"file"}
