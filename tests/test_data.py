import hashlib
from pathlib import Path

import numpy as np
import pytest

from sim.people import SyntheticSpec, write_synthetic_dataset
from trainer.data.datasets import DatasetLayoutError, load_dataset
from trainer.data.sampler import PKBatchSampler


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_seeded(tmp_path):
    spec = SyntheticSpec(
        num_train_ids=4, num_test_ids=3, num_cameras=3, images_per_id_per_camera=2, height=48, width=24, seed=7
    )
    a = write_synthetic_dataset(tmp_path / "a", spec, progress=False)
    b = write_synthetic_dataset(tmp_path / "b", spec, progress=False)
    c = write_synthetic_dataset(tmp_path / "c", SyntheticSpec(**{**spec.__dict__, "seed": 8}), progress=False)
    assert digest(a) == digest(b) != digest(c)


def test_synthetic_parses_as_market_layout(tiny_dataset):
    data = load_dataset("synthetic", tiny_dataset)
    assert data.num_train_pids == 16
    assert sorted({s.pid for s in data.train}) == list(range(16))  # relabelled
    assert {s.pid for s in data.query} <= {s.pid for s in data.gallery}
    assert {s.pid for s in data.query}.isdisjoint(data.train_pid_map)  # test ids are unseen
    assert min(s.camid for s in data.gallery) == 0 and data.num_cameras == 3
    for sample in data.query[:3]:
        img = __import__("cv2").imread(sample.path)
        assert img.shape == (64, 32, 3)


def test_synthetic_occluded_query_differs_from_clean(tmp_path):
    base = dict(
        num_train_ids=2,
        num_test_ids=3,
        num_cameras=2,
        images_per_id_per_camera=2,
        height=48,
        width=24,
        occlusion_prob=0.0,
        seed=1,
    )
    clean = write_synthetic_dataset(tmp_path / "clean", SyntheticSpec(**base), progress=False)
    occ = write_synthetic_dataset(tmp_path / "occ", SyntheticSpec(**base, occluded_query=True), progress=False)
    assert digest(clean / "query") != digest(occ / "query")
    assert digest(clean / "bounding_box_train") == digest(occ / "bounding_box_train")


def test_market1501_junk_and_distractors(tmp_path):
    root = tmp_path / "Market-1501-v15.09.15"
    for name in ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_077419_03.jpg"]:
        touch(root / "bounding_box_train" / name)
    for name in ["0002_c1s1_001051_00.jpg"]:
        touch(root / "query" / name)
    for name in ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg"]:
        touch(root / "bounding_box_test" / name)
    data = load_dataset("market1501", tmp_path)  # finds the dataset folder under the root
    assert [(s.pid, s.camid) for s in data.train] == [(0, 0), (0, 1), (1, 2)]
    assert data.train_pid_map == {2: 0, 7: 1}
    assert sorted(s.pid for s in data.gallery) == [0, 2]  # junk -1 dropped, distractor 0 kept
    assert data.query[0].camid == 0


def test_duke_and_occluded_duke_layouts(tmp_path):
    for folder, name in [("DukeMTMC-reID", "dukemtmc"), ("Occluded_Duke", "occluded_duke")]:
        root = tmp_path / name / folder
        touch(root / "bounding_box_train" / "0001_c2_f0046182.jpg")
        touch(root / "query" / "0005_c8_f0000001.jpg")
        touch(root / "bounding_box_test" / "0005_c1_f0000002.jpg")
        data = load_dataset(name, tmp_path / name)
        assert data.query[0].camid == 7 and data.gallery[0].camid == 0


@pytest.mark.parametrize(
    "version,train_dir,test_dir", [("MSMT17_V1", "train", "test"), ("MSMT17_V2", "mask_train_v2", "mask_test_v2")]
)
def test_msmt17_list_files(tmp_path, version, train_dir, test_dir):
    base = tmp_path / version
    (base / train_dir).mkdir(parents=True)
    (base / test_dir).mkdir(parents=True)
    (base / "list_train.txt").write_text(
        "0000/0000_000_01_0303morning_0015_0.jpg 0\n0001/0001_000_05_0303noon_0015_0.jpg 1\n"
    )
    (base / "list_val.txt").write_text("0002/0002_003_15_0303afternoon_0015_0.jpg 2\n")
    (base / "list_query.txt").write_text("0000/0000_000_03_0303morning_0015_0.jpg 0\n")
    (base / "list_gallery.txt").write_text("0000/0000_001_07_0303morning_0016_0.jpg 0\n")
    data = load_dataset("msmt17", tmp_path)
    assert [(s.pid, s.camid) for s in data.train] == [(0, 0), (1, 4), (2, 14)]
    assert data.query[0].camid == 2 and data.gallery[0].camid == 6
    assert data.train[0].path.endswith(f"{train_dir}/0000/0000_000_01_0303morning_0015_0.jpg")


def test_occluded_reid_camera_convention(tmp_path):
    base = tmp_path / "Occluded_REID"
    for pid in ("001", "002"):
        touch(base / "occluded_body_images" / pid / f"{pid}_01.tif")
        touch(base / "whole_body_images" / pid / f"{pid}_01.tif")
    data = load_dataset("occluded_reid", tmp_path)
    assert data.train == []
    assert {s.camid for s in data.query} == {0} and {s.camid for s in data.gallery} == {1}
    assert [s.pid for s in data.query] == [1, 2]


def test_p_dukemtmc_layout(tmp_path):
    base = tmp_path / "P-DukeMTMC-reID"
    touch(base / "train/occluded_body_images/0010/0010_c3_f1.jpg")
    touch(base / "train/whole_body_images/0010/0010_c1_f2.jpg")
    touch(base / "test/occluded_body_images/0020/0020_c2_f3.jpg")
    touch(base / "test/whole_body_images/0020/0020_c5_f4.jpg")
    data = load_dataset("p_dukemtmc", tmp_path)
    assert [(s.pid, s.camid) for s in data.train] == [(0, 2), (0, 0)]
    assert data.query[0].camid == 1 and data.gallery[0].camid == 4


def test_wrong_root_says_what_was_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError) as err:
        load_dataset("market1501", tmp_path / "empty")
    msg = str(err.value)
    assert "bounding_box_train" in msg and "Market-1501-v15.09.15" in msg
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset("dukemtmc", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cuhk99", tmp_path)


def test_pk_sampler_batches_and_ranks():
    pids = np.repeat(np.arange(10), [4, 4, 5, 2, 8, 4, 4, 3, 6, 4])
    sampler = PKBatchSampler(pids, batch_size=8, num_instances=4, seed=0)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        ids, counts = np.unique(pids[batch], return_counts=True)
        assert len(ids) == 2 and (counts == 4).all()
    sampler.set_epoch(0)
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    r0 = PKBatchSampler(pids, 8, 4, seed=0, rank=0, world_size=2)
    r1 = PKBatchSampler(pids, 8, 4, seed=0, rank=1, world_size=2)
    assert list(r0) + list(r1) and list(r0) != list(r1)
    assert sorted(map(tuple, list(r0) + list(r1))) == sorted(map(tuple, batches[: 2 * len(list(r0))]))
