"""Cross-camera identity benchmark: render seeds of the demo scene, run the edge, score it.

    python scripts/bench_mtmc.py --seeds 101 102 103 104 105 --out runs/bench/mtmc

For every seed of the demo world (same cameras, other people) and every mode, the edge runs in
lockstep on all frames (``configs/cams.demo_eval.yaml`` with the seed set), then
``edge.evaluate`` scores its MOT files against the world's ground truth. Modes:

* ``appearance``: the identity engine without floor calibration (the camera file's transitions);
* ``floor``: with the world's exact camera homographies (ground-plane fusion);
* ``nothing``: no calibration and no transitions: appearance alone, what a site gives unconfigured;
* ``learned``: everything ``python -m edge.topology learn`` learned from a run
  of ``--learn-seed`` in ``nothing`` mode (the same site on another day, other people: five minutes
  of it, 100 people): transitions with doors, and the overlapping cameras' shared ground plane;
* ``learned_transitions``: the learned transitions and doors alone (no plane, no calibration);
* ``learned_floor``: the learned transitions with the exact homographies;
* ``site_threshold``: ``appearance`` with the model's stored statistics ignored: the threshold
  learned from the run's own footage (``matching.threshold: site``);
* ``nothing_given``: ``learned`` with the threshold learned too, on the same learning day
  (``matching.threshold: site``; the model's stored statistics ignored): nothing hand-given;
* ``online``: ``nothing``, and the topology learned while the engine runs (``matching.learn_topology``
  every 60 s, matched with as it changes): meant for long days (``--minutes``), where walks come in;
* ``clicked``: homographies as a person makes them: from 4-8 floor marks per camera clicked with
  ``--click-noise`` px of error (seeded), solved by ``findHomography`` as ``edge.calibrate`` does;
* ``offline`` (per mode): the same run's tracklets clustered at the end under the same rules,
  with hindsight: what deciding online costs;
* ``true ids`` (per mode): the same run's tracks each given the person they follow most
  (:func:`edge.evaluate.true_identities`): the best any association could do with these tracks,
  so the gap to it is what association loses, and what it misses is what tracking loses.

Prints a table per seed and the means, and writes ``bench.json`` and ``bench.md`` into ``--out``.
``--minutes M`` makes every seed a longer day of the same site (20 people a minute, as the demo).
Seeds 5 and 11 were used to tune the engine; report others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.evaluate import evaluate, true_identities  # noqa: E402
from edge.identity.config import TransitionWindow  # noqa: E402
from edge.identity.engine import cluster_offline  # noqa: E402
from edge.runtime.config import CalibrationConfig, EdgeConfig, load_edge_config  # noqa: E402
from edge.site.tracklet_log import final_summaries  # noqa: E402
from sim.scene import World, resolve_scene  # noqa: E402
from sim.writers import floor_calibration, write_mot_ground_truth  # noqa: E402

MODES = (
    "appearance",
    "floor",
    "nothing",
    "learned",
    "learned_transitions",
    "learned_floor",
    "clicked",
    "site_threshold",
    "nothing_given",
    "online",
)
CLICK_NOISE_PX = 3.0
LEARN_SEED = 31  # the learning recording's seed: neither tuned on nor reported
LEARN_MINUTES = 5  # its length (the demo's 20 people a minute): one demo minute holds too few walks
ONLINE_EVERY_S = 60.0  # the online mode learns its topology this often


def day(minutes: Optional[int]) -> dict:
    """The demo world's fields for a day of ``minutes`` (as many people a minute); {}: the demo's own."""
    return {} if minutes is None else {"duration_s": 60.0 * minutes, "num_identities": 20 * minutes}


def day_query(minutes: Optional[int]) -> str:
    """The same as synthetic source query keys."""
    return "" if minutes is None else f"&duration_s={60 * minutes}&people={20 * minutes}"


def ground_truth(seed: int, out: Path, minutes: Optional[int] = None) -> Path:
    gt = out / (f"gt_seed{seed}" + (f"_{minutes}min" if minutes else ""))
    if not (gt / "cam1" / "gt" / "gt_global.txt").is_file():
        write_mot_ground_truth(World(resolve_scene("demo", seed=seed, **day(minutes))), gt, progress=False)
    return gt


@dataclass
class ModeInputs:
    """What some modes need besides the seed: the learned site, the clicking error."""

    learned: Optional[tuple[list[TransitionWindow], dict]] = None  # transitions, calibration
    click_noise: float = CLICK_NOISE_PX
    learned_site: Optional[tuple[list[TransitionWindow], dict]] = None  # the same, learned with the site's threshold
    site_store: Optional[Path] = None  # that threshold
    minutes: Optional[int] = None  # each seed a day this long (None: the demo's own)


def seed_config(base: EdgeConfig, seed: int, mode: str, mot_dir: Path, inputs: ModeInputs = ModeInputs()) -> EdgeConfig:
    cfg = base.model_copy(deep=True)
    for cam in cfg.cameras:
        cam.source = f"{cam.source.split('&seed=')[0]}&seed={seed}{day_query(inputs.minutes)}"
        cam.realtime = False
    floor = mode in ("floor", "learned_floor")
    cfg.calibration = (base.calibration or _exact_calibration(cfg, seed)) if floor else {}
    if mode == "clicked":
        cfg.calibration = clicked_calibration(cfg, seed, inputs.click_noise)
    if mode == "nothing_given":  # topology, plane and threshold all learned on the learning day
        assert inputs.learned_site is not None and inputs.site_store is not None
        cfg.matching.transitions, cfg.calibration = inputs.learned_site[0], dict(inputs.learned_site[1])
        cfg.matching.threshold = "site"
        cfg.matching.site_threshold.store = str(inputs.site_store)
    if mode == "site_threshold":  # learned from this run's own footage: an earlier run's is not read
        cfg.matching.threshold = "site"
        cfg.matching.site_threshold.store = str(mot_dir.parent / "site_similarity.json")
        Path(cfg.matching.site_threshold.store).unlink(missing_ok=True)
    if mode in ("nothing", "online"):
        cfg.matching.transitions = []
    if mode == "online":
        learn = cfg.matching.learn_topology
        learn.enabled, learn.every_s, learn.out = True, ONLINE_EVERY_S, str(mot_dir.parent / "site.learned.yaml")
    elif mode.startswith("learned"):
        learned = inputs.learned
        if learned is None:
            raise ValueError(f"mode {mode} needs the learned transitions")
        cfg.matching.transitions = learned[0]
        if mode == "learned":  # the overlapping cameras' learned plane instead of the floor plan
            cfg.calibration = dict(learned[1])
    cfg.publisher.enabled = False
    cfg.outputs.mot_dir, cfg.outputs.video_dir, cfg.outputs.floor_map = str(mot_dir), None, None
    cfg.outputs.tracklet_log = str(mot_dir.parent / "tracklets.jsonl.gz")
    return cfg


def _exact_calibration(cfg: EdgeConfig, seed: int) -> dict:

    exact = floor_calibration(World(resolve_scene("demo", seed=seed)))
    return {c.id: CalibrationConfig(**exact[c.id]) for c in cfg.cameras if c.id in exact}


def clicked_calibration(cfg: EdgeConfig, seed: int, noise_px: float) -> dict:
    """Each camera calibrated as an installer does it: 4-8 marks on the visible floor, their floor
    coordinates exact (a tape measure), their image points clicked with ``noise_px`` of error. A
    set that ``edge.calibrate`` refuses (reprojection error above 1 m) is clicked again, as an
    installer would."""
    from edge.identity.geometry import CalibrationError, solve_homography

    world = World(resolve_scene("demo", seed=seed))
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for cam in world.cameras:
        if cam.spec.name not in {c.id for c in cfg.cameras}:
            continue
        quad = np.asarray(cam.spec.ground_quad, np.float64)
        for _ in range(100):
            k = int(rng.integers(4, 9))
            u, v = rng.uniform(0.1, 0.9, size=(2, k))  # inside the visible floor, not on its edge
            floor = ((1 - u) * (1 - v))[:, None] * quad[0] + (u * (1 - v))[:, None] * quad[1]
            floor += (u * v)[:, None] * quad[2] + ((1 - u) * v)[:, None] * quad[3]
            image = (cam.project(floor) + rng.normal(scale=noise_px, size=(k, 2))).round(1)
            try:
                solve_homography(image, floor.round(3), cam.spec.name)
            except CalibrationError:
                continue
            out[cam.spec.name] = CalibrationConfig(image_points=image.tolist(), floor_points=floor.round(3).tolist())
            break
    return out


def score(gt: Path, mot: Path) -> dict:
    r = evaluate(gt, mot)
    x = r["cross_camera"]
    return {
        "IDF1": round(x["IDF1"], 1),
        "IDP": round(x["IDP"], 1),
        "IDR": round(x["IDR"], 1),
        "ids_pred": x["num_global_ids_pred"],
        "ids_true": x["num_global_ids_gt"],
        "HOTA": {cam: round(v["HOTA"], 1) for cam, v in r["sequences"].items()},
    }


def write_relabelled(mot: Path, assignment: dict, out: Path) -> Path:
    """The run's local rows re-labelled with other identities (offline clustering, true ids)."""
    out.mkdir(parents=True, exist_ok=True)
    for local in sorted(mot.glob("*.txt")):
        if local.name.endswith(".global.txt"):
            continue
        camera = local.stem
        (out / local.name).write_text(local.read_text())
        rows, seen = [], set()
        for line in local.read_text().splitlines():
            parts = line.split(",")
            gid = assignment.get((camera, int(float(parts[1]))))
            if gid is not None and (parts[0], gid) not in seen:  # one box per id and frame, as edge.run writes
                seen.add((parts[0], gid))
                rows.append(",".join([parts[0], str(gid), *parts[2:]]))
        (out / f"{camera}.global.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    return out


def run_one(base: EdgeConfig, seed: int, mode: str, out: Path, inputs: ModeInputs = ModeInputs()) -> dict:
    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.pipeline import EdgePipeline

    gt = ground_truth(seed, out, inputs.minutes)
    mot = out / f"seed{seed}" / mode / "mot"
    cfg = seed_config(base, seed, mode, mot, inputs)
    pipeline = EdgePipeline(cfg, {c.id: 10.0 for c in cfg.cameras})
    started = time.perf_counter()
    report = run_pipeline(cfg, pipeline=pipeline)
    seconds = time.perf_counter() - started
    online = score(gt, mot)
    assert cfg.outputs.tracklet_log is not None  # every summary the engine was given, for offline study
    offline_ids = cluster_offline(final_summaries(cfg.outputs.tracklet_log), pipeline.engine.cfg)
    offline = score(gt, write_relabelled(mot, offline_ids, out / f"seed{seed}" / mode / "offline"))
    truth = score(gt, write_relabelled(mot, true_identities(gt, mot), out / f"seed{seed}" / mode / "true_ids"))
    frames = sum(report.get("processed", {}).values())
    return {
        "seed": seed,
        "mode": mode,
        "online": online,
        "offline": offline,
        "true_ids": truth,
        "seconds": round(seconds, 1),
        "fps_per_camera": round(frames / max(seconds, 1e-6) / max(len(cfg.cameras), 1), 1),
        "match_ms": report.get("latency_ms", {}).get("match", {}),
        **({"threshold": report["threshold"]} if "threshold" in report else {}),
        **({"topology": report["topology"]} if "topology" in report else {}),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| seed | mode | cross-camera IDF1 | IDP | IDR | ids found / true | HOTA per camera | offline IDF1 (ids) "
        "| true ids IDF1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, f = r["online"], r["offline"]
        hota = " / ".join(f"{v:.1f}" for v in o["HOTA"].values())
        lines.append(
            f"| {r['seed']} | {r['mode']} | {o['IDF1']:.1f} | {o['IDP']:.1f} | {o['IDR']:.1f} | "
            f"{o['ids_pred']} / {o['ids_true']} | {hota} | {f['IDF1']:.1f} ({f['ids_pred']}) | "
            f"{r['true_ids']['IDF1']:.1f} |"
        )
    for mode in sorted({r["mode"] for r in rows}):
        sel = [r for r in rows if r["mode"] == mode]
        mean = statistics.mean(r["online"]["IDF1"] for r in sel)
        off = statistics.mean(r["offline"]["IDF1"] for r in sel)
        truth = statistics.mean(r["true_ids"]["IDF1"] for r in sel)
        sd = statistics.stdev(r["online"]["IDF1"] for r in sel) if len(sel) > 1 else 0.0
        lines.append(
            f"| **mean of {len(sel)}** | {mode} | **{mean:.1f}** ± {sd:.1f} | | | | | {off:.1f} | {truth:.1f} |"
        )
    return "\n".join(lines)


def learn_demo_site(
    base: EdgeConfig, seed: int, out: Path, site_threshold: bool = False
) -> tuple[list[TransitionWindow], dict]:
    """Run ``seed`` in ``nothing`` mode and learn the site's transitions from its tracklet log, as
    ``python -m edge.topology learn`` does (the site file and picture land in ``out/learned``).
    Returns the transitions and the overlapping cameras' calibration. With ``site_threshold`` the
    run also learns the threshold from its footage (kept in ``out/learned_site``, what
    ``nothing_given`` runs start from) and the topology is judged with it."""
    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.pipeline import EdgePipeline
    from edge.topology.learn import learn_site
    from edge.topology.picture import draw_topology
    from edge.topology.site_file import evidence_lines, write_site_file

    folder = out / ("learned_site" if site_threshold else "learned")
    mot = folder / f"seed{seed}" / "mot"
    cfg = seed_config(base, seed, "nothing", mot)
    if site_threshold:
        cfg.matching.threshold = "site"
        cfg.matching.site_threshold.store = str(folder / "site_similarity.json")
        Path(cfg.matching.site_threshold.store).unlink(missing_ok=True)  # learned on this day, not an earlier
    for cam in cfg.cameras:  # a longer day: as many people a minute, over LEARN_MINUTES
        cam.source += day_query(LEARN_MINUTES)
    pipeline = EdgePipeline(cfg, {c.id: 10.0 for c in cfg.cameras})
    run_pipeline(cfg, pipeline=pipeline)
    assert cfg.outputs.tracklet_log is not None
    widths = {cam.spec.name: float(cam.spec.width) for cam in World(resolve_scene("demo")).cameras}
    topology = learn_site(cfg.outputs.tracklet_log, pipeline.engine.cfg, widths=widths)
    write_site_file(topology, folder / "site.yaml", None, cfg.outputs.tracklet_log)
    draw_topology(topology, [c.id for c in cfg.cameras], folder / "site.png")
    print("\n".join(evidence_lines(topology)), flush=True)
    calibration = {c: CalibrationConfig(**e) for c, e in topology.calibration_entries().items()}
    return [TransitionWindow(**t) for t in topology.transitions()], calibration


def prepare(args: argparse.Namespace) -> tuple[Path, EdgeConfig]:
    """The output folder (made) and the camera file with its overrides and ``--frames`` applied."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_edge_config(args.config, args.overrides)
    if args.frames:
        base.run.max_frames = args.frames
    return out, base


def write_results(out: Path, result: dict, table: str) -> None:
    """Print the table; write it and the JSON into ``out`` (every benchmark here does the same)."""
    print(table)
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    (out / "bench.md").write_text(table + "\n")
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "cams.demo_eval.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of each camera (smoke runs)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "mtmc"))
    parser.add_argument("--learn-seed", type=int, default=LEARN_SEED, help="the learned modes' learning recording")
    parser.add_argument("--click-noise", type=float, default=CLICK_NOISE_PX, help="px of error of clicked points")
    parser.add_argument("--minutes", type=int, default=None, help="each seed a day this long (20 people a minute)")
    parser.add_argument(
        "overrides", nargs="*", help="KEY=VALUE overrides of the camera file, e.g. matching.merge_margin=1"
    )
    args = parser.parse_args(argv)
    out, base = prepare(args)
    learned = learn_demo_site(base, args.learn_seed, out) if any(m.startswith("learned") for m in args.modes) else None
    learned_site = learn_demo_site(base, args.learn_seed, out, True) if "nothing_given" in args.modes else None
    rows = []
    for seed in args.seeds:
        for mode in args.modes:
            site_store = out / "learned_site" / "site_similarity.json"
            inputs = ModeInputs(learned, args.click_noise, learned_site, site_store, args.minutes)
            row = run_one(base, seed, mode, out, inputs)
            rows.append(row)
            print(
                f"seed {seed} {mode}: IDF1 {row['online']['IDF1']:.1f} "
                f"({row['online']['ids_pred']}/{row['online']['ids_true']} ids), "
                f"offline {row['offline']['IDF1']:.1f}, true ids {row['true_ids']['IDF1']:.1f}, "
                f"{row['fps_per_camera']} fps/camera",
                flush=True,
            )
    result = {"config": args.config, "overrides": args.overrides, "seeds": args.seeds, "minutes": args.minutes}
    result["runs"] = rows
    if learned is not None:
        result["learned"] = {
            "seed": args.learn_seed,
            "minutes": LEARN_MINUTES,
            "transitions": [t.model_dump(by_alias=True) for t in learned[0]],
            "calibration": {c: k.model_dump() for c, k in learned[1].items()},
        }
    write_results(out, result, markdown(rows))
    return result


if __name__ == "__main__":
    main()
