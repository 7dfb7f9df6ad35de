"""``python -m edge.evaluate --gt <dir> --pred <dir>``: multi-camera tracking scores.

Per camera: HOTA (DetA, AssA), MOTA and IDF1, computed by TrackEval's metric classes (we only
read the files and build their per-frame inputs). Across cameras: IDF1 over *global* ids with
all cameras' sequences laid end to end as one sequence, the way the AI City multi-camera track
scores it - a person keeps credit only when every camera gives them the same global id.

Layouts. Ground truth: MOT Challenge sequences ``<gt>/<camera>/gt/gt.txt`` (+ optional
``gt_global.txt`` with global ids, + ``seqinfo.ini``). Predictions: ``<pred>/<camera>.txt``
(local ids) and ``<pred>/<camera>.global.txt`` (global ids), as ``edge.run`` writes them;
TrackEval's ``<pred>/data/<camera>.txt`` is accepted too.

Ground-truth rows with the "consider" flag 0 are not scored. When the class column holds MOT17
classes, only pedestrians (1) are scored and predictions matching a distractor (person on
vehicle, static person, distractor, reflection) at IoU >= 0.5 are removed first, as TrackEval's
MOT17 preprocessing does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.extras import MissingExtra, require

PEDESTRIAN = 1
DISTRACTORS = (2, 7, 8, 12)


@dataclass
class Sequence:
    """Rows of one MOT file grouped by frame: frame -> (ids [N], boxes xywh [N, 4], class [N]).

    Ground-truth rows marked "do not consider" (flag 0) get class 0: never scored, but still
    used to remove predictions on distractors.
    """

    frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    length: int


def read_mot(path: str | Path, is_gt: bool = False) -> Sequence:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    text = path.read_text().strip()
    rows = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2) if text else np.zeros((0, 9))
    if rows.shape[1] < 6:
        raise ValueError(f"{path}: expected at least 6 comma-separated columns (frame, id, left, top, width, height)")
    classes = rows[:, 7].astype(int) if (is_gt and rows.shape[1] >= 8) else np.full(len(rows), PEDESTRIAN)
    if is_gt and rows.shape[1] >= 7:
        classes = np.where(rows[:, 6] != 0, classes, np.where(np.isin(classes, DISTRACTORS), classes, 0))
    frames = {}
    for f in np.unique(rows[:, 0]).astype(int):
        m = rows[:, 0] == f
        ids = rows[m, 1].astype(int)
        if len(np.unique(ids)) < len(ids):
            raise ValueError(f"{path}: frame {int(f)} has the same id twice (TrackEval rejects this too)")
        frames[int(f)] = (ids, rows[m, 2:6].astype(float), classes[m])
    return Sequence(frames, int(rows[:, 0].max()) if len(rows) else 0)


def _ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from trackeval.datasets._base_dataset import _BaseDataset

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return _BaseDataset._calculate_box_ious(a, b, box_format="xywh")


def trackeval_data(gt: Sequence, pred: Sequence, length: Optional[int] = None) -> dict:
    """The per-sequence dict TrackEval's metrics consume (ids made contiguous, IoU similarities)."""
    T = length or max(gt.length, pred.length)
    empty = (np.zeros(0, int), np.zeros((0, 4)), np.zeros(0, int))
    gt_ids, tr_ids, sims = [], [], []
    for f in range(1, T + 1):
        g_id, g_box, g_cls = gt.frames.get(f, empty)
        p_id, p_box, _ = pred.frames.get(f, empty)
        if (g_cls != PEDESTRIAN).any():  # MOT17: drop predictions on distractors, keep pedestrians
            distract = np.isin(g_cls, DISTRACTORS)
            iou = _ious(g_box, p_box)
            if len(p_id) and len(g_id):
                score = np.where(iou >= 0.5 - np.finfo(float).eps, iou, 0)
                r, c = linear_sum_assignment(-score)
                drop = [cc for rr, cc in zip(r, c) if score[rr, cc] > 0 and distract[rr]]
                keep = np.setdiff1d(np.arange(len(p_id)), drop)
                p_id, p_box = p_id[keep], p_box[keep]
            ped = g_cls == PEDESTRIAN
            g_id, g_box = g_id[ped], g_box[ped]
        gt_ids.append(g_id)
        tr_ids.append(p_id)
        sims.append(_ious(g_box, p_box))
    return _contiguous(gt_ids, tr_ids, sims)


def _contiguous(gt_ids: list, tr_ids: list, sims: list) -> dict:
    ug = np.unique(np.concatenate(gt_ids)) if any(len(g) for g in gt_ids) else np.zeros(0, int)
    ut = np.unique(np.concatenate(tr_ids)) if any(len(t) for t in tr_ids) else np.zeros(0, int)
    return {
        "num_timesteps": len(gt_ids),
        "num_gt_ids": len(ug),
        "num_tracker_ids": len(ut),
        "num_gt_dets": int(sum(len(g) for g in gt_ids)),
        "num_tracker_dets": int(sum(len(t) for t in tr_ids)),
        "gt_ids": [np.searchsorted(ug, g).astype(int) for g in gt_ids],
        "tracker_ids": [np.searchsorted(ut, t).astype(int) for t in tr_ids],
        "similarity_scores": sims,
    }


def concatenate(datas: list[dict]) -> dict:
    """Lay several sequences end to end (ids must already be global; re-made contiguous here)."""
    raw_g, raw_t, sims = [], [], []
    for d in datas:
        raw_g += d["gt_ids_raw"]
        raw_t += d["tracker_ids_raw"]
        sims += d["similarity_scores"]
    return _contiguous(raw_g, raw_t, sims)


def _metrics():
    from trackeval.metrics import CLEAR, HOTA, Identity

    with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints its config
        return HOTA(), CLEAR(), Identity()


def summarise(h: dict, c: dict, i: dict) -> dict[str, float]:
    return {
        "HOTA": float(np.mean(h["HOTA"])) * 100,
        "DetA": float(np.mean(h["DetA"])) * 100,
        "AssA": float(np.mean(h["AssA"])) * 100,
        "MOTA": float(c["MOTA"]) * 100,
        "IDF1": float(i["IDF1"]) * 100,
        "IDSW": int(c["IDSW"]),
        "IDTP": int(i["IDTP"]),
        "IDFP": int(i["IDFP"]),
        "IDFN": int(i["IDFN"]),
        "num_gt_dets": int(c["CLR_TP"] + c["CLR_FN"]),
    }


def seq_length(seq_dir: Path) -> Optional[int]:
    ini = seq_dir / "seqinfo.ini"
    if ini.is_file():
        for line in ini.read_text().splitlines():
            if line.lower().startswith("seqlength="):
                return int(line.split("=", 1)[1])
    return None


def _pred_file(pred: Path, name: str, suffix: str) -> Path:
    for p in (pred / f"{name}{suffix}", pred / "data" / f"{name}{suffix}"):
        if p.is_file():
            return p
    raise FileNotFoundError(f"no prediction file for sequence {name!r}: expected {pred / (name + suffix)}")


def evaluate(gt_dir: str | Path, pred_dir: str | Path, sequences: Optional[list[str]] = None) -> dict:
    """Scores per sequence, combined over sequences, and cross-camera (when global ids exist)."""
    require("edge.evaluate", (("trackeval", "train"),))

    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {gt_dir}")
    names = sequences or sorted(p.name for p in gt_dir.iterdir() if (p / "gt" / "gt.txt").is_file())
    if not names:
        raise FileNotFoundError(f"no MOT sequences (<name>/gt/gt.txt) under {gt_dir}")
    hota, clear, ident = _metrics()
    per_seq: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {"HOTA": {}, "CLEAR": {}, "Identity": {}}
    global_parts = []
    for name in names:
        seq_dir = gt_dir / name
        length = seq_length(seq_dir)
        data = trackeval_data(
            read_mot(seq_dir / "gt" / "gt.txt", is_gt=True), read_mot(_pred_file(pred_dir, name, ".txt")), length
        )
        with contextlib.redirect_stdout(io.StringIO()):
            raw["HOTA"][name], raw["CLEAR"][name], raw["Identity"][name] = (
                hota.eval_sequence(data),
                clear.eval_sequence(data),
                ident.eval_sequence(data),
            )
        per_seq[name] = summarise(raw["HOTA"][name], raw["CLEAR"][name], raw["Identity"][name])
        g_global = seq_dir / "gt" / "gt_global.txt"
        if g_global.is_file():
            try:
                p_global = _pred_file(pred_dir, name, ".global.txt")
            except FileNotFoundError:
                p_global = None
            if p_global is not None:
                gd = _raw_ids(read_mot(g_global, is_gt=True), read_mot(p_global), length)
                global_parts.append(gd)
    with contextlib.redirect_stdout(io.StringIO()):
        combined = summarise(
            hota.combine_sequences(raw["HOTA"]),
            clear.combine_sequences(raw["CLEAR"]),
            ident.combine_sequences(raw["Identity"]),
        )
    result = {"sequences": per_seq, "combined": combined}
    if global_parts and len(global_parts) == len(names):
        data = concatenate(global_parts)
        with contextlib.redirect_stdout(io.StringIO()):
            cross = ident.eval_sequence(data)
        result["cross_camera"] = {
            "IDF1": float(cross["IDF1"]) * 100,
            "IDP": float(cross["IDP"]) * 100,
            "IDR": float(cross["IDR"]) * 100,
            "IDTP": int(cross["IDTP"]),
            "IDFP": int(cross["IDFP"]),
            "IDFN": int(cross["IDFN"]),
            "num_global_ids_gt": data["num_gt_ids"],
            "num_global_ids_pred": data["num_tracker_ids"],
        }
    return result


def true_identities(gt_dir: str | Path, pred_dir: str | Path, min_iou: float = 0.5) -> dict[tuple[str, int], int]:
    """Each predicted local track's true person: the ground-truth global id its boxes are matched
    to most often (per frame, one-to-one by IoU >= ``min_iou`` with SciPy's assignment solver).
    A track matched to nobody (a false positive) gets an id of its own, above every true one, so
    its rows still count against the score.

    Relabelling a run's tracks this way is the best any cross-camera association could do with
    those tracks, so its cross-camera IDF1 separates what association loses from what tracking does."""
    from collections import Counter

    from scipy.optimize import linear_sum_assignment

    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    out: dict[tuple[str, int], int] = {}
    ghosts: list[tuple[str, int]] = []
    for seq_dir in sorted(p for p in gt_dir.iterdir() if (p / "gt" / "gt_global.txt").is_file()):
        gt = read_mot(seq_dir / "gt" / "gt_global.txt", is_gt=True)
        pred = read_mot(_pred_file(pred_dir, seq_dir.name, ".txt"))
        votes: dict[int, Counter] = {}
        for f, (p_ids, p_boxes, _) in pred.frames.items():
            if f not in gt.frames:
                continue
            g_ids, g_boxes, g_cls = gt.frames[f]
            iou = _ious(p_boxes, g_boxes)
            iou[:, g_cls != PEDESTRIAN] = 0.0
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= min_iou:
                    votes.setdefault(int(p_ids[r]), Counter())[int(g_ids[c])] += 1
        out.update({(seq_dir.name, lid): c.most_common(1)[0][0] for lid, c in votes.items()})
        ghosts.extend(
            (seq_dir.name, int(lid))
            for lid in sorted({int(i) for ids, _, _ in pred.frames.values() for i in ids})
            if lid not in votes
        )
    first = max([0, *out.values()]) + 1
    out.update({key: first + n for n, key in enumerate(ghosts)})
    return out


def _raw_ids(gt: Sequence, pred: Sequence, length: Optional[int]) -> dict:
    """Like :func:`trackeval_data` but keeping the original (global) ids for concatenation."""
    T = length or max(gt.length, pred.length)
    empty = (np.zeros(0, int), np.zeros((0, 4)), np.zeros(0, int))
    out: dict[str, list[Any]] = {"gt_ids_raw": [], "tracker_ids_raw": [], "similarity_scores": []}
    for f in range(1, T + 1):
        g_id, g_box, _ = gt.frames.get(f, empty)
        p_id, p_box, _ = pred.frames.get(f, empty)
        out["gt_ids_raw"].append(g_id)
        out["tracker_ids_raw"].append(p_id)
        out["similarity_scores"].append(_ious(g_box, p_box))
    return out


def format_table(result: dict) -> str:
    cols = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")
    width = max(10, *(len(n) for n in result["sequences"]))
    lines = [f"{'sequence':<{width}} " + " ".join(f"{c:>6}" for c in cols)]
    for name, r in [*result["sequences"].items(), ("COMBINED", result["combined"])]:
        lines.append(f"{name:<{width}} " + " ".join(f"{r[c]:6.1f}" if c != "IDSW" else f"{r[c]:6d}" for c in cols))
    if "cross_camera" in result:
        x = result["cross_camera"]
        lines.append(
            f"cross-camera IDF1 {x['IDF1']:.1f} (IDP {x['IDP']:.1f}, IDR {x['IDR']:.1f}; "
            f"{x['num_global_ids_pred']} predicted vs {x['num_global_ids_gt']} true global ids)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gt", required=True, help="folder of MOT sequences (<camera>/gt/gt.txt)")
    parser.add_argument("--pred", required=True, help="folder of predictions (<camera>.txt, <camera>.global.txt)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    parser.add_argument("--sequences", nargs="*", default=None, help="only these sequences")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.gt, args.pred, args.sequences)
    except (FileNotFoundError, ValueError, MissingExtra) as exc:
        from core.cli import fail

        fail(str(exc))
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
