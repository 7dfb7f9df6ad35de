"""How unlike its tracklet a crop of the same person can look: the threshold for ``reid.swap_below``.

    python scripts/measure_swap_cosine.py --model edge/demo_models/reid.onnx \
        --crops data/world_reid_multi/bounding_box_test --out runs/swap_cosine.json

A tracker that swaps two people keeps one id on another person; the edge notices when a new crop
of a track looks unlike the track's mean twice in a row (``Tracklet.looks_swapped``) and cuts it.
This measures, on crops of held-out people (Market-style names ``<pid>_c<cam>s1_<frame>_...``), the
cosine of each crop to the mean of the same person's earlier crops in the same camera (at least
3 of them), and of a crop of another person of that camera to the same mean. It prints the
percentiles and the threshold at which ``--false-cut`` of one person's crops fall below: a false
cut then needs that twice in a row. Writes JSON with the distributions' summary.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

NAME = re.compile(r"(\d+)_c(\d+)s\d+_(\d+)_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="edge/demo_models/reid.onnx")
    parser.add_argument("--crops", required=True, help="folder of Market-style crops (one person per pid, frames in the name)")
    parser.add_argument("--false-cut", type=float, default=0.001, help="share of one person's crops allowed below the threshold")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from edge.reid.backends import OnnxRuntimeBackend

    files = sorted(p for p in Path(args.crops).glob("*.jpg") if NAME.match(p.name))
    if not files:
        raise SystemExit(f"{args.crops}: no crops named <pid>_c<cam>s1_<frame>_*.jpg")
    backend = OnnxRuntimeBackend(args.model)
    h, w = backend.input_size
    crops = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (w, h)) for f in files])
    emb = backend.embed(crops).global_
    tracks: dict[int, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))  # cam -> pid -> (frame, row)
    for row, f in enumerate(files):
        pid, cam, frame = (int(v) for v in NAME.match(f.name).groups())
        tracks[cam][pid].append((frame, row))
    rng = np.random.default_rng(0)
    same, other = [], []
    for people in tracks.values():
        for pid, seen in people.items():
            rows = [r for _, r in sorted(seen)]
            strangers = [r for p, s in people.items() if p != pid for _, r in s]
            for k in range(3, len(rows)):
                mean = emb[rows[:k]].mean(0)
                mean /= np.linalg.norm(mean)
                same.append(float(emb[rows[k]] @ mean))
                if strangers:
                    other.append(float(emb[rng.choice(strangers)] @ mean))
    same_a, other_a = np.array(same), np.array(other)
    threshold = float(np.quantile(same_a, args.false_cut))
    result = {
        "model": args.model, "crops": args.crops, "pairs": len(same),
        "same_person": {f"p{q}": round(float(np.percentile(same_a, q)), 4) for q in (0.1, 1, 5, 50)},
        "other_person": {f"p{q}": round(float(np.percentile(other_a, q)), 4) for q in (50, 95, 99, 99.9)},
        "false_cut": args.false_cut, "swap_below": round(threshold, 3),
        "swaps_seen_per_crop": round(float((other_a < threshold).mean()), 4),
    }
    print(f"{len(same)} crops against their track's mean")
    print("same person:  " + "  ".join(f"{k} {v:.3f}" for k, v in result["same_person"].items()))
    print("other person: " + "  ".join(f"{k} {v:.3f}" for k, v in result["other_person"].items()))
    print(f"swap_below {threshold:.3f}: {args.false_cut:.1%} of one person's crops below it, "
          f"{result['swaps_seen_per_crop']:.1%} of another person's")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
