"""Multi-camera tracking evaluation: known answers, and agreement with motmetrics on real MOT17."""

import shutil

import numpy as np
import pytest
from conftest import REALDATA

from edge.evaluate import evaluate, true_identities
from edge.evaluate import main as evaluate_main


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f},{i},{x},{y},{w},{h},1,1,1\n" for f, i, x, y, w, h in rows))


def make_sequence(root, name, rows, global_rows=None, length=10):
    write_rows(root / name / "gt" / "gt.txt", rows)
    if global_rows is not None:
        write_rows(root / name / "gt" / "gt_global.txt", global_rows)
    (root / name / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={length}\n")


def test_hand_made_case_with_known_idf1_mota_and_cross_camera_idf1(tmp_path):
    box = (10, 20, 30, 60)
    person = [(f, 1, *box) for f in range(1, 11)]
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    # camera A: the tracker switches id halfway -> IDF1 0.5, MOTA 1 - 1/10
    make_sequence(gt, "camA", person, [(f, 7, *box) for f in range(1, 11)])
    write_rows(pred / "camA.txt", [(f, 1 if f <= 5 else 2, *box) for f in range(1, 11)])
    write_rows(pred / "camA.global.txt", [(f, 100, *box) for f in range(1, 11)])
    # camera B: perfect locally, but the same person got another global id than in camera A
    make_sequence(gt, "camB", person, [(f, 7, *box) for f in range(1, 11)])
    write_rows(pred / "camB.txt", person)
    write_rows(pred / "camB.global.txt", [(f, 200, *box) for f in range(1, 11)])
    result = evaluate(gt, pred)
    a, b = result["sequences"]["camA"], result["sequences"]["camB"]
    assert a["IDF1"] == pytest.approx(50.0) and a["MOTA"] == pytest.approx(90.0) and a["IDSW"] == 1
    assert b["IDF1"] == pytest.approx(100.0) and b["HOTA"] == pytest.approx(100.0)
    # across cameras one true identity, two predicted: the best one-to-one match covers half
    assert result["cross_camera"]["IDF1"] == pytest.approx(50.0)
    assert result["cross_camera"]["num_global_ids_pred"] == 2


def test_true_identities_give_each_track_the_person_it_follows_most(tmp_path):
    """Two people (global 7 and 8) far apart. Camera A's track 1 follows person 7 for 6 frames,
    then jumps to person 8 for 4 (a tracker switch); track 2 is person 8 before the switch and a
    box on nobody after. Camera B's track 5 is person 8 throughout; its track 6 is on nobody at
    all (a false positive): an id of its own, above the true ones."""
    p7, p8, nobody = (10, 20, 30, 60), (200, 20, 30, 60), (400, 300, 30, 60)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    both = [(f, 7, *p7) for f in range(1, 11)] + [(f, 8, *p8) for f in range(1, 11)]
    make_sequence(gt, "camA", both, both)
    write_rows(
        pred / "camA.txt",
        [(f, 1, *(p7 if f <= 6 else p8)) for f in range(1, 11)]
        + [(f, 2, *(p8 if f <= 6 else nobody)) for f in range(1, 11)],
    )
    make_sequence(gt, "camB", [(f, 8, *p8) for f in range(1, 11)], [(f, 8, *p8) for f in range(1, 11)])
    write_rows(pred / "camB.txt", [(f, 5, *p8) for f in range(1, 11)] + [(f, 6, *nobody) for f in range(1, 4)])
    assert true_identities(gt, pred) == {("camA", 1): 7, ("camA", 2): 8, ("camB", 5): 8, ("camB", 6): 9}


def test_missing_prediction_is_a_clear_error(tmp_path, capsys):
    make_sequence(tmp_path / "gt", "cam1", [(1, 1, 0, 0, 5, 5)])
    (tmp_path / "pred").mkdir()
    with pytest.raises(SystemExit):
        evaluate_main(["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")])
    assert "no prediction file for sequence 'cam1'" in capsys.readouterr().err


def iou_distance(a, b):
    """1 - IoU for xywh boxes, NaN where IoU < 0.5 (motmetrics' convention for 'no match')."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    iou = inter / (a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter)
    return np.where(iou >= 0.5, 1 - iou, np.nan)


def pedestrian_rows(gt_file):
    rows = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    return rows[(rows[:, 6] == 1) & (rows[:, 7] == 1)]


@pytest.mark.realdata
def test_mot17_ground_truth_against_itself_is_perfect(tmp_path):
    src = REALDATA / "mot17_mini" / "train"
    pred = tmp_path / "pred"
    pred.mkdir()
    for seq in sorted(p for p in src.iterdir() if p.is_dir()):
        np.savetxt(pred / f"{seq.name}.txt", pedestrian_rows(seq / "gt" / "gt.txt"), delimiter=",", fmt="%g")
    result = evaluate(src, pred)
    assert len(result["sequences"]) == 7
    for name, r in result["sequences"].items():
        assert (
            r["HOTA"] == pytest.approx(100.0)
            and r["MOTA"] == pytest.approx(100.0)
            and r["IDF1"] == pytest.approx(100.0)
        ), name


@pytest.mark.realdata
def test_perturbed_mot17_scores_what_motmetrics_says(tmp_path):
    import motmetrics as mm

    seq = REALDATA / "mot17_mini" / "train" / "MOT17-09-FRCNN"
    gt_rows = pedestrian_rows(seq / "gt" / "gt.txt")
    gt_dir = tmp_path / "gt" / seq.name
    (gt_dir / "gt").mkdir(parents=True)
    np.savetxt(gt_dir / "gt" / "gt.txt", gt_rows, delimiter=",", fmt="%g")
    shutil.copy(seq / "seqinfo.ini", gt_dir / "seqinfo.ini")
    rng = np.random.default_rng(0)
    pred = gt_rows.copy()
    pred[:, 2:4] += rng.normal(0, 4, (len(pred), 2))  # jitter
    pred = pred[rng.random(len(pred)) > 0.15]  # misses
    swap = (pred[:, 0] > 3) & np.isin(pred[:, 1], np.unique(pred[:, 1])[:4])
    pred[swap, 1] += 1000  # identity switches
    fp = pred[:10].copy()
    fp[:, 1] += 5000
    fp[:, 2] += 300  # false positives with their own ids
    pred = np.vstack([pred, fp])
    (tmp_path / "pred").mkdir()
    np.savetxt(tmp_path / "pred" / f"{seq.name}.txt", pred, delimiter=",", fmt="%g")
    ours = evaluate(tmp_path / "gt", tmp_path / "pred")["sequences"][seq.name]

    acc = mm.MOTAccumulator(auto_id=True)  # motmetrics' own matching, fed with IoU distances
    for f in np.unique(np.r_[gt_rows[:, 0], pred[:, 0]]):
        g, p = gt_rows[gt_rows[:, 0] == f], pred[pred[:, 0] == f]
        acc.update(g[:, 1], p[:, 1], iou_distance(g[:, 2:6], p[:, 2:6]))
    theirs = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="x")
    assert 0 < ours["MOTA"] < 100 and 0 < ours["IDF1"] < 100
    assert ours["MOTA"] == pytest.approx(100 * theirs["mota"]["x"], abs=1e-6)
    assert ours["IDF1"] == pytest.approx(100 * theirs["idf1"]["x"], abs=1e-6)
    assert ours["IDSW"] == theirs["num_switches"]["x"]
