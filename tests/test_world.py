"""The synthetic multi-camera world: determinism, geometry, ground truth and exports."""

import numpy as np
import pytest

from edge.runtime.source_diagnosis import SourceError
from edge.runtime.synthetic_source import SyntheticReader
from sim.render import CameraRenderer
from sim.scene import World, resolve_scene
from sim.writers import write_mot_ground_truth, write_reid_dataset


@pytest.fixture(scope="module")
def tiny_world():
    return World(resolve_scene("tiny"))


def test_same_seed_same_frames_and_truth_other_seed_other_people(tiny_world):
    again = World(resolve_scene("tiny"))
    for cam in range(len(tiny_world.cameras)):
        for f in (0, 17, 40):
            a_img, a_gt = CameraRenderer(tiny_world, cam).render(f)
            b_img, b_gt = CameraRenderer(again, cam).render(f)
            assert np.array_equal(a_img, b_img) and a_gt == b_gt
    other = World(resolve_scene("tiny", seed=5))
    assert [w.appearance for w in other.walkers] != [w.appearance for w in tiny_world.walkers]


def test_person_in_the_overlap_is_seen_by_both_cameras_at_its_ground_point():
    world = World(resolve_scene("demo"))
    r1, r2 = CameraRenderer(world, 0), CameraRenderer(world, 1)
    checked = 0
    for f in range(0, world.spec.num_frames, 7):
        _, g1 = r1.render(f, draw=False)
        _, g2 = r2.render(f, draw=False)
        both = {b.pid: b for b in g1}.keys() & {b.pid: b for b in g2}.keys()
        for pid in both:
            b1 = next(b for b in g1 if b.pid == pid)
            b2 = next(b for b in g2 if b.pid == pid)
            if min(b1.visibility, b2.visibility) < 0.95 or b1.xyxy[3] >= r1.height - 1 or b2.xyxy[3] >= r2.height - 1:
                continue  # feet hidden or cut: the box bottom is not the foot point
            for cam, box in ((world.cameras[0], b1), (world.cameras[1], b2)):
                foot = np.array([[(box.xyxy[0] + box.xyxy[2]) / 2, box.xyxy[3]]])
                ground = cam.unproject(foot)[0]
                assert np.linalg.norm(ground - np.array(box.ground)) < 0.35, (f, pid, ground, box.ground)
            checked += 1
    assert checked >= 10  # the overlap really is shared


def test_visibility_accounts_for_occluders_and_other_people():
    world = World(resolve_scene("demo"))
    vis = [
        b.visibility
        for cam in range(3)
        for f in range(0, 600, 5)
        for b in CameraRenderer(world, cam).render(f, draw=False)[1]
    ]
    assert min(vis) < 0.5 and max(vis) == 1.0 and np.mean(np.array(vis) < 0.9) > 0.02


def test_mot_ground_truth_reads_back_with_motmetrics(tiny_world, tmp_path):
    import motmetrics as mm

    out = write_mot_ground_truth(tiny_world, tmp_path / "gt", frames=30, progress=False)
    for cam in ("cam1", "cam2", "cam3"):
        local = mm.io.loadtxt(str(out / cam / "gt" / "gt.txt"), fmt="mot15-2D")
        glob = mm.io.loadtxt(str(out / cam / "gt" / "gt_global.txt"), fmt="mot15-2D")
        assert len(local) == len(glob) > 0
        assert local.index.get_level_values("FrameId").max() <= 30
        # local ids renumber the global ones one-to-one
        pairs = set(zip(local.index.get_level_values("Id"), glob.index.get_level_values("Id")))
        assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)
        assert (out / cam / "seqinfo.ini").read_text().count("seqLength=30") == 1


def test_reid_export_is_market_layout_with_occluded_queries(tiny_world, tmp_path):
    from trainer.data.datasets import load_dataset

    root = write_reid_dataset(tiny_world, tmp_path / "reid", every=2, test_fraction=0.5, progress=False)
    data = load_dataset("market1501", root)
    train_files = {int(p.name[:4]) for p in (root / "bounding_box_train").iterdir()}
    query_ids = {s.pid for s in data.query}
    assert data.train and data.query and data.gallery
    assert train_files == set(range(1, 4))  # the first half of the 6 identities trains
    assert query_ids and query_ids <= {4, 5, 6} and {s.pid for s in data.gallery} <= {4, 5, 6}


def test_synthetic_source_renders_the_scene_and_rejects_unknown_names():
    reader = SyntheticReader("synthetic://tiny?camera=cam2&frames=3")
    reader.open()
    frames = [reader.read() for _ in range(4)]
    assert frames[3] is None and reader.fps == 5.0
    expected, _ = CameraRenderer(World(resolve_scene("tiny")), 1).render(2)
    assert np.array_equal(frames[2], expected)
    with pytest.raises(SourceError, match="unknown synthetic scene"):
        SyntheticReader("synthetic://nowhere?camera=0")
    with pytest.raises(SourceError, match="no camera 'cam9'"):
        SyntheticReader("synthetic://tiny?camera=cam9")


def test_cameras_can_be_written_as_videos_an_edge_file_source_reads(tiny_world, tmp_path):
    import cv2

    out = write_mot_ground_truth(tiny_world, tmp_path / "gt", frames=12, video=True, progress=False)
    cap = cv2.VideoCapture(str(out / "cam2.mp4"))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    expected, _ = CameraRenderer(tiny_world, 1).render(5)
    assert len(frames) == 12 and frames[5].shape == expected.shape
    assert np.abs(frames[5].astype(int) - expected).mean() < 12  # lossy codec, same picture


def test_several_seeds_share_one_reid_dataset_as_distinct_people_and_cameras(tmp_path):
    from sim.__main__ import main as world_main

    world_main(["reid", "--scene", "tiny", "--seed", "0", "3", "--out", str(tmp_path / "reid"), "--every", "4"])
    names = [
        p.name
        for sub in ("bounding_box_train", "query", "bounding_box_test")
        for p in (tmp_path / "reid" / sub).iterdir()
    ]
    pids = {int(n[:4]) for n in names}
    cams = {int(n.split("_c")[1].split("s")[0]) for n in names}
    assert max(pids) > 6 and min(pids) <= 6  # the second seed's people are numbered after the first's
    assert cams - {1, 2, 3} and cams & {1, 2, 3}  # and seen by cameras 4-6
