"""Replay runs' tracklet logs through the identity engine of this checkout and score both.

    python scripts/replay_tracklet_log.py runs/bench/live/seed5/quota_0.25 ... [--gt-root runs/bench/live]

A live run's decisions depend on which frames the box managed to process, so two live runs of the
same seed differ by several IDF1 points. Its tracklet log (``outputs.tracklet_log``, written by
``scripts/bench_live.py``) holds what the engine was given: replaying it through another engine
(this checkout's, or one with changed ``matching`` settings given as ``KEY=VALUE``) compares
engines on exactly the same input. Each run folder needs ``cams.yaml``, ``tracklets.jsonl.gz``
and ``mot/`` (its local rows); the ground truth is ``<gt-root>/gt_seed<N>`` (the seed from the
folder name ``seed<N>``). Prints the run's and the replay's IDF1 and ids per run and the means;
writes ``replay.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_mtmc import score, write_relabelled  # noqa: E402

from edge.identity import IdentityEngine  # noqa: E402
from edge.reid.factory import build_backend  # noqa: E402
from edge.runtime.build import TO_LEARN, engine_settings, threshold_source  # noqa: E402
from edge.runtime.config import load_edge_config  # noqa: E402
from edge.site.tracklet_log import replay_steps  # noqa: E402


def replay(run: Path, overrides: list[str]) -> dict:
    """The final identity of every tracklet when the log is replayed through this checkout's engine."""
    cfg = load_edge_config(run / "cams.yaml", overrides)
    assert cfg.reid is not None
    reid = build_backend(cfg.reid)
    if threshold_source(cfg, reid)[0] == TO_LEARN:
        raise SystemExit(f"{run / 'cams.yaml'}: no threshold to replay with (learned from the site, not stored)")
    engine = IdentityEngine(engine_settings(cfg, reid, len(cfg.calibration)))
    final, now = {}, 0.0
    for now, step in replay_steps(run / "tracklets.jsonl.gz"):
        engine.update(step, now)
        final.update(engine.take_final())
    engine.flush(now)
    final.update(engine.take_final())
    return final


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (cams.yaml, tracklets.jsonl.gz, mot/)")
    parser.add_argument("--gt-root", default=None, help="folder with gt_seed<N> (default: two levels above a run)")
    parser.add_argument(
        "--set", nargs="*", default=[], dest="overrides", help="KEY=VALUE overrides, e.g. matching.merge_margin=1"
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "replay"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in map(Path, args.runs):
        seed = int(re.search(r"seed(\d+)", str(run)).group(1))  # type: ignore[union-attr]
        gt = Path(args.gt_root or run.parents[1]) / f"gt_seed{seed}"
        before = score(gt, run / "mot")
        relabelled = write_relabelled(run / "mot", replay(run, args.overrides), out / run.parent.name / run.name)
        after = score(gt, relabelled)
        rows.append({"run": str(run), "seed": seed, "run_scores": before, "replay_scores": after})
        print(
            f"{run}: run IDF1 {before['IDF1']:.1f} ({before['ids_pred']} ids), "
            f"replay IDF1 {after['IDF1']:.1f} ({after['ids_pred']} ids)",
            flush=True,
        )
    for kind in ("run_scores", "replay_scores"):
        idf1 = [r[kind]["IDF1"] for r in rows]
        ids = [r[kind]["ids_pred"] for r in rows]
        sd = statistics.stdev(idf1) if len(idf1) > 1 else 0.0
        print(f"mean {kind.split('_')[0]}: IDF1 {statistics.mean(idf1):.1f} ± {sd:.1f}, ids {statistics.mean(ids):.1f}")
    result = {"overrides": args.overrides, "runs": rows}
    (out / "replay.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
