"""Where identities break when frames are lost: the demo in lockstep with chosen frames left out.

    python scripts/bench_drops.py --seeds 5 11 \
        --patterns all stride:2 stride:3 random:0.64 random:0.35 --out runs/bench/drops

A box that can't keep up processes only some frames. Which frames it loses is a choice (evenly
spaced, as a governor would) or an accident (the latest-frame capture slots: irregular gaps).
This runs the demo scene deterministically, independent of the machine's load, feeding the
pipeline only the frames a pattern keeps, and separates two losses:

* ``IDF1``: against every ground-truth frame, as the live runs are scored: frames never processed
  have no rows, so a run at a third of the frames can't score above about a third of IDR;
* ``IDF1 kept``: against the ground truth of the processed frames only: what is left is what
  losing frames does to tracking and identities (fragments, swaps), not the missing rows.

Also counts the global ids found and the identities sealed as "too short to match". Patterns:
``all``, ``stride:K`` (every K-th frame), ``random:P`` (each frame kept with probability P,
seeded: the irregular gaps the capture slots leave), ``detect:K`` (every frame, the detector on
every K-th, boxes carried between: the governor). The tracker measures the rate it gets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_mtmc import ground_truth, prepare, score, seed_config, write_results  # noqa: E402

from edge.runtime.types import Frame  # noqa: E402


def kept_frames(pattern: str, n: int, seed: int) -> np.ndarray:
    """1-based indices of the frames a pattern keeps out of ``n``."""
    kind, _, value = pattern.partition(":")
    index = np.arange(1, n + 1)
    if kind in ("all", "detect"):  # detect:K processes every frame, the detector on every K-th
        return index
    if kind == "stride":
        return index[(index - 1) % int(value) == 0]
    if kind == "random":
        keep = np.random.default_rng(seed).random(n) < float(value)
        keep[0] = True
        return index[keep]
    raise SystemExit(f"unknown pattern {pattern!r}: all, stride:K, random:P or detect:K")


def filtered_ground_truth(gt: Path, kept: dict[str, set[int]], out: Path) -> Path:
    """The ground truth of the processed frames only (same layout as ``gt``)."""
    for cam, frames in kept.items():
        for name in ("gt.txt", "gt_global.txt"):
            src = gt / cam / "gt" / name
            if not src.is_file():
                continue
            dst = out / cam / "gt" / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(
                "".join(line + "\n" for line in src.read_text().splitlines() if int(line.split(",")[0]) in frames)
            )
        for extra in (gt / cam).iterdir():
            if extra.is_file():
                (out / cam / extra.name).write_text(extra.read_text())
    return out


def run_one(base, seed: int, pattern: str, mode: str, out: Path) -> dict:
    from edge.runtime.pipeline import EdgePipeline
    from edge.runtime.synthetic_source import SyntheticReader

    gt = ground_truth(seed, out)
    run_dir = out / f"seed{seed}" / mode / pattern.replace(":", "_")
    cfg = seed_config(base, seed, mode, run_dir / "mot")
    readers = {c.id: SyntheticReader(c.source) for c in cfg.cameras}
    n = min(r.length for r in readers.values())
    if base.run.max_frames:
        n = min(n, base.run.max_frames)
    fps = next(iter(readers.values())).fps
    keep = {cam: kept_frames(pattern, n, seed * 1000 + i) for i, cam in enumerate(readers)}
    if pattern.startswith("detect:"):
        cfg.governor.detect_every = int(pattern.split(":")[1])
    pipeline = EdgePipeline(cfg, {cam: fps for cam in readers})  # the cameras' rate: the tracker measures what it gets
    epoch, started = 1.7e9, time.perf_counter()
    keep_sets = {cam: set(int(i) for i in k) for cam, k in keep.items()}
    for index in range(1, n + 1):
        frames = [
            Frame(cam, index, epoch + (index - 1) / fps, reader.renderer.render(index - 1)[0])
            for cam, reader in readers.items()
            if index in keep_sets[cam]
        ]
        if frames:
            pipeline.process(frames)
    pipeline.close()
    sealed = sum(1 for i in pipeline.engine.identities.values() if getattr(i, "sealed", False))
    full = score(gt, run_dir / "mot")
    kept = score(filtered_ground_truth(gt, keep_sets, run_dir / "gt_kept"), run_dir / "mot")
    share = statistics.mean(len(k) / n for k in keep.values())
    return {
        "seed": seed,
        "pattern": pattern,
        "mode": mode,
        "kept_share": round(share, 3),
        "IDF1": full["IDF1"],
        "IDF1_kept": kept["IDF1"],
        "IDR": full["IDR"],
        "ids_pred": full["ids_pred"],
        "ids_true": full["ids_true"],
        "sealed": sealed,
        "HOTA_kept": kept["HOTA"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| pattern | mode | seeds | frames kept | IDF1 | IDF1 kept | ids found / true | sealed ids |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["pattern"], r["mode"]), []).append(r)
    for (pattern, mode), sel in groups.items():
        mean = {
            k: statistics.mean(r[k] for r in sel)
            for k in ("kept_share", "IDF1", "IDF1_kept", "ids_pred", "ids_true", "sealed")
        }
        sd = {k: statistics.stdev(r[k] for r in sel) if len(sel) > 1 else 0.0 for k in ("IDF1", "IDF1_kept")}
        lines.append(
            f"| {pattern} | {mode} | {len(sel)} | {mean['kept_share']:.0%} | {mean['IDF1']:.1f} ± {sd['IDF1']:.1f} | "
            f"{mean['IDF1_kept']:.1f} ± {sd['IDF1_kept']:.1f} | {mean['ids_pred']:.0f} / {mean['ids_true']:.0f} | "
            f"{mean['sealed']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "cams.demo_eval.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 11])
    parser.add_argument("--patterns", nargs="+", default=["all", "stride:2", "stride:3", "random:0.64", "random:0.35"])
    parser.add_argument("--modes", nargs="+", choices=("appearance", "floor"), default=["appearance"])
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames (smoke runs)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "drops"))
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the camera file")
    args = parser.parse_args(argv)
    out, base = prepare(args)
    rows = []
    for seed in args.seeds:
        for mode in args.modes:
            for pattern in args.patterns:
                r = run_one(base, seed, pattern, mode, out)
                rows.append(r)
                print(
                    f"seed {seed} {mode} {pattern}: kept {r['kept_share']:.0%}, IDF1 {r['IDF1']:.1f}, "
                    f"kept-frames IDF1 {r['IDF1_kept']:.1f}, "
                    f"{r['ids_pred']}/{r['ids_true']} ids, {r['sealed']} sealed ({r['seconds']} s)",
                    flush=True,
                )
    result = {"config": args.config, "overrides": args.overrides, "seeds": args.seeds, "runs": rows}
    write_results(out, result, markdown(rows))
    return result


if __name__ == "__main__":
    main()
