"""What the view's runtime additions (previews and crops) cost the pipeline, measured A/B in one
process so that a shared machine's load drift hits both sides alike.

    python scripts/bench_view_cost.py --config configs/cams.realpair.yaml --steps 400 --block 10

One :class:`~edge.runtime.pipeline.EdgePipeline` processes the config's cameras in lockstep (one frame of
each per step, files looped); every ``--block`` steps it switches previews (``--preview-fps``)
and crops on or off. Reports the mean wall time per step and the process CPU per step for each
side, and the relative cost; writes JSON to ``--out``. ``scripts/bench_pipeline.py`` with
``--set publisher.preview_fps=2 publisher.crops=true`` gives the end-to-end figure on a quiet
machine; this one isolates the difference on a busy one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cams.realpair.yaml")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--preview-fps", type=float, default=2.0)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5682")
    parser.add_argument("--out", default=str(REPO / "docs" / "bench" / "view_cost.json"))
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from edge.runtime.config import load_edge_config
    from edge.runtime.pipeline import EdgePipeline
    from edge.runtime.preview import PreviewClock
    from edge.runtime.readers import FrameReader, make_reader
    from edge.runtime.types import Frame

    cfg = load_edge_config(args.config, [f"publisher.endpoint={args.endpoint}", "outputs.mot_dir=null"])
    pipeline = EdgePipeline(cfg)
    pipeline.warmup()

    def reader_for(cam_id: str) -> FrameReader:
        reader = make_reader(next(c.source for c in cfg.cameras if c.id == cam_id))
        reader.open()
        return reader

    readers = {c.id: reader_for(c.id) for c in cfg.cameras}
    index = {c: 0 for c in readers}
    epoch = time.time()
    sides: dict[str, dict[str, list]] = {"off": {"wall_ms": [], "cpu_ms": []}, "on": {"wall_ms": [], "cpu_ms": []}}
    try:
        for step in range(args.steps):
            on = (step // args.block) % 2 == 1
            if step % args.block == 0:
                pipeline.cfg.publisher.crops = on
                pipeline.broadcast.previews = PreviewClock(args.preview_fps if on else 0.0)
            frames = []
            for cam, reader in readers.items():
                t = time.perf_counter()
                image = reader.read()
                if image is None:  # loop the file
                    reader.close()
                    readers[cam] = reader = reader_for(cam)
                    image = reader.read()
                index[cam] += 1
                frames.append(Frame(cam, index[cam], epoch + index[cam] / 25.0, image, time.perf_counter() - t))
            cpu0, wall0 = os.times(), time.perf_counter()
            pipeline.process(frames)
            cpu1, wall1 = os.times(), time.perf_counter()
            side = sides["on" if on else "off"]
            side["wall_ms"].append(1000 * (wall1 - wall0))
            side["cpu_ms"].append(1000 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)))
    finally:
        sent = pipeline.publisher.sent if pipeline.publisher else 0
        pipeline.close()
    result = {
        "config": args.config,
        "steps": args.steps,
        "block": args.block,
        "preview_fps": args.preview_fps,
        "messages_sent": sent,
    }
    for name, side in sides.items():
        result[name] = {
            "steps": len(side["wall_ms"]),
            "wall_ms_mean": round(statistics.mean(side["wall_ms"]), 2),
            "wall_ms_median": round(statistics.median(side["wall_ms"]), 2),
            "cpu_ms_mean": round(statistics.mean(side["cpu_ms"]), 2),
        }
    result["cost_wall_pct"] = round(100 * (result["on"]["wall_ms_mean"] / result["off"]["wall_ms_mean"] - 1), 2)
    result["cost_wall_median_pct"] = round(
        100 * (result["on"]["wall_ms_median"] / result["off"]["wall_ms_median"] - 1), 2
    )
    result["cost_cpu_pct"] = round(100 * (result["on"]["cpu_ms_mean"] / result["off"]["cpu_ms_mean"] - 1), 2)
    print("| side | steps | wall ms / step (mean) | wall ms / step (median) | CPU ms / step |\n|---|---|---|---|---|")
    for name in ("off", "on"):
        r = result[name]
        print(
            f"| {name} | {r['steps']} | {r['wall_ms_mean']:.1f} | {r['wall_ms_median']:.1f} | {r['cpu_ms_mean']:.1f} |"
        )
    print(
        f"cost: wall {result['cost_wall_pct']:+.1f} % (median {result['cost_wall_median_pct']:+.1f} %), "
        f"CPU {result['cost_cpu_pct']:+.1f} %"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
