"""The floor: the world's exact homographies, the calibration helper's known answer and its errors,
the top-down map of a run, and the readable event lines of ``edge.listen``."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO

from edge.identity.topology import Transition
from edge.listen import describe
from sim.render import CameraRenderer
from sim.scene import World, resolve_scene
from sim.writers import corridor_transitions, floor_calibration


def test_world_homographies_put_ground_truth_feet_where_the_people_stand():
    world = World(resolve_scene("tiny"))
    calib = floor_calibration(world)
    for ci, cam in enumerate(world.cameras):
        H = np.array(calib[cam.spec.name]["homography"])
        for frame in (10, 30):
            for box in CameraRenderer(world, ci).render(frame, draw=False)[1]:
                if box.visibility < 0.99 or box.xyxy[3] >= cam.spec.height - 1:
                    continue  # a clipped or occluded box has no visible feet
                u, v = (box.xyxy[0] + box.xyxy[2]) / 2, box.xyxy[3]
                p = H @ [u, v, 1.0]
                assert np.linalg.norm(p[:2] / p[2] - box.ground) < 0.15


def test_world_corridor_doors_hold_the_people_who_walk_the_corridor(tmp_path):
    """The demo's doors: a foot at the corridor side of an area is in its cameras' door, a foot in
    the middle of the area or at its far side is not; the calibration export writes them."""
    world = World(resolve_scene("demo"))
    doors = {
        (t["from"], t["to"]): Transition.build(t["min_s"], t["max_s"], t["exit"], t["entry"])
        for t in corridor_transitions(world)
    }
    assert sorted(doors) == [("cam1", "cam3"), ("cam2", "cam3"), ("cam3", "cam1"), ("cam3", "cam2")]
    cams = {c.spec.name: c for c in world.cameras}
    feet = lambda cam, xy: cams[cam].project(np.array([xy]))[0]  # noqa: E731
    door = {
        "cam1": (11.5, 4.0),
        "cam2": (11.5, 6.0),
        "cam3": (20.5, 4.0),
    }  # floor points on each camera's corridor side
    away = {"cam1": (4.0, 4.0), "cam2": (5.0, 6.0), "cam3": (29.0, 4.0)}
    for (src, dst), t in doors.items():
        assert t.through_doors(feet(src, door[src]), feet(dst, door[dst]))
        assert not t.through_doors(feet(src, away[src]), feet(dst, door[dst]))
        assert not t.through_doors(feet(src, door[src]), feet(dst, away[dst]))
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "calibration", "--scene", "demo", "--out", str(tmp_path / "site.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    site = yaml.safe_load((tmp_path / "site.yaml").read_text())
    assert site["matching"]["transitions"] == corridor_transitions(world) and set(site["calibration"]) == {
        "cam1",
        "cam2",
        "cam3",
    }


def write_cams(tmp_path, calibration):
    cfg = {
        "cameras": [{"id": "cam1", "source": "synthetic://tiny?camera=cam1"}],
        "detector": {"weights": str(REPO / "edge" / "demo_models" / "detector.onnx")},
        "calibration": calibration,
    }
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_calibrate_solves_point_pairs_to_the_exact_homography_and_draws_the_grid(tmp_path):
    world = World(resolve_scene("tiny"))
    floor = np.array([[1.0, 1.0], [11.0, 1.0], [10.0, 7.0], [2.0, 6.0], [6.0, 4.0]])
    image = world.cameras[0].project(floor)  # where a person would click those floor marks
    cams = write_cams(tmp_path, {"cam1": {"image_points": image.round(3).tolist(), "floor_points": floor.tolist()}})
    out = tmp_path / "grid.png"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.calibrate", "--cameras", str(cams), "--camera", "cam1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)["calibration"]["cam1"]["homography"]
    exact = np.array(floor_calibration(world)["cam1"]["homography"])
    assert np.allclose(np.array(printed), exact, atol=1e-3) and "reprojection error 0.00" in proc.stdout
    png = cv2.imread(str(out))
    assert png.shape == (360, 640, 3)


def test_calibrate_reports_a_bad_calibration_in_one_line(tmp_path):
    cams = write_cams(tmp_path, {"cam1": {"homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.calibrate",
            "--cameras",
            str(cams),
            "--camera",
            "cam1",
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "calibration.cam1.homography: homography is not invertible" in proc.stderr


def test_listen_describes_revisions_in_words():
    assert (
        describe(
            "identity/3",
            {"event": "merged", "global_id": 3, "from": 7, "into": 3, "cameras": ["cam1", "cam3"], "seq": 5},
        )
        == "#5 identity 7 merged into 3 (seen in cam1, cam3)"
    )
    assert (
        describe(
            "identity/4",
            {"event": "reassigned", "global_id": 4, "from": 2, "into": 4, "camera": "cam2", "local_id": 12, "seq": 6},
        )
        == "#6 cam2/12 moved from identity 2 to 4"
    )


def test_floor_gates_widen_with_the_calibrations_error():
    """Two tracks 2.5 m apart at the same time are two people through exact calibrations (far_m
    2 m); through two clicked ones each 0.5 m off they may be one (1.5 m after the errors), and the
    walking-speed rule gives the same allowance."""
    from edge.identity.geometry import FloorRules, FloorTrack, floor_evidence

    def track(x, error, times=(0.0, 0.5, 1.0, 1.5)):
        t = FloorTrack()
        for s in times:
            t.add(s, np.array([x, 0.0]), error)
        return t

    rules = FloorRules()
    assert floor_evidence(track(0.0, 0.0), track(2.5, 0.0), rules) == (True, -1.0)
    forbidden, support = floor_evidence(track(0.0, 0.5), track(2.5, 0.5), rules)
    assert not forbidden and -1.0 < support < 1.0
    later = (10.0, 10.5)  # 8.5 s later, 30 m away: 3 m/s * 8.5 s + 1.5 m slack = 27 m allowed
    assert floor_evidence(track(0.0, 0.0), track(30.0, 0.0, later), rules)[0]
    assert not floor_evidence(track(0.0, 2.0), track(30.0, 2.0, later), rules)[0]


def test_a_clicked_calibration_says_how_far_off_its_floor_may_be():
    """Four clicked points fit a homography exactly, whatever their error: the floor error then
    comes from what 3 px of clicking make of the fit (here 1 px = 2 cm: a few centimetres to some
    decimetres around the marks), and it grows far from them, where the fit swings; a fifth point
    0.5 m off makes the reprojection error large, and it counts."""
    from edge.identity.geometry import CLICK_ERROR_PX, CalibrationError, solve_homography

    image = [[100, 100], [500, 100], [500, 400], [100, 400]]
    floor = [[x * 0.02, y * 0.02] for x, y in image]
    spread = solve_homography(image, floor, "test")
    assert spread.reprojection_error_m == pytest.approx(0.0, abs=1e-9)
    assert CLICK_ERROR_PX * 0.02 * 0.5 < spread.floor_error_m < CLICK_ERROR_PX * 0.02 * 5
    near, far = spread.floor_error_at(np.array([[300.0, 250.0], [3000.0, 2500.0]]))
    assert near <= spread.floor_error_m < far
    corner = [[100, 100], [112, 100], [112, 109], [100, 109]]  # four marks bunched in a 12 px corner
    with pytest.raises(CalibrationError, match=r"test: 3 px of clicking error moves the floor by .* spread the marks"):
        solve_homography(corner, [[x * 0.05, y * 0.05] for x, y in corner], "test")
    more = solve_homography(image + [[300, 250]], floor + [[6.0 + 0.5, 5.0]], "test", ransac_m=5.0)
    assert more.floor_error_m >= more.reprojection_error_m > 0.1  # the mis-click is seen
