"""Benchmark the edge pipeline: fps per camera, per-stage latency, end-to-end latency, memory.

    python scripts/bench_pipeline.py --config configs/cams.demo.yaml --frames 200 --out runs/bench/demo
    python scripts/bench_pipeline.py --config configs/cams.demo.yaml --cameras 1 2 3 --frames 150
    python scripts/bench_pipeline.py --config configs/cams.demo.yaml --duration 600 --realtime --out runs/bench/soak

By default every camera runs in lockstep (``realtime: false``): each frame is processed and the
figure is the pipeline's capacity. ``--realtime`` paces sources at their fps instead (frames
the pipeline cannot take are dropped and counted). ``--cameras N ...`` repeats the config's
cameras (cyclically) to N cameras to see how throughput scales. Each setting runs ``--repeats``
times after a warm-up run; the median run is quoted. Writes ``bench.json`` (with device,
library versions and settings), ``bench.md`` and ``bench.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import yaml


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class MemorySampler(threading.Thread):
    def __init__(self, period: float = 1.0):
        super().__init__(daemon=True)
        self.period, self.samples, self.stop = period, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.samples.append((round(time.monotonic() - self.t0, 1), round(rss_mb(), 1)))


def camera_set(base: list[dict], n: int) -> list[dict]:
    out = []
    for i in range(n):
        cam = dict(base[i % len(base)])
        if i >= len(base):
            cam["id"] = f"{cam['id']}_{i // len(base)}"
        out.append(cam)
    return out


def one_run(raw: dict, cfg_path: Path, n_cams: int, args) -> dict:
    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config

    data = dict(raw)
    data["cameras"] = [
        dict(c, realtime=bool(args.realtime), loop=bool(args.duration)) for c in camera_set(raw["cameras"], n_cams)
    ]
    data["publisher"] = dict(raw.get("publisher", {}), endpoint=args.endpoint)
    data["outputs"] = {}
    data["run"] = dict(
        raw.get("run", {}),
        max_frames=None if args.duration else args.frames,
        duration_s=args.duration,
        stats_interval_s=1e9,
    )
    tmp = cfg_path.parent / f".bench_{os.getpid()}.yaml"
    tmp.write_text(yaml.safe_dump(data))
    try:
        cfg = load_edge_config(tmp)
    finally:
        tmp.unlink()
    mem = MemorySampler()
    mem.start()
    cpu0 = os.times()
    report = run_pipeline(cfg)
    cpu1 = os.times()
    mem.stop.set()
    total = sum(report["processed"].values())
    # CPU seconds the process used (all threads): what a feature costs, even while other
    # programs on a shared machine make the wall-clock fps noisy
    report["cpu_s"] = round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 2)
    report["cpu_ms_per_frame"] = round(1000 * report["cpu_s"] / max(total, 1), 2)
    report["fps_total"] = round(total / report["elapsed_s"], 2)
    report["fps_per_camera"] = {k: round(v / report["elapsed_s"], 2) for k, v in report["processed"].items()}
    report["memory_mb"] = mem.samples
    return report


def environment() -> dict:
    import cv2
    import numpy
    import onnxruntime
    import torch
    import ultralytics

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ultralytics": ultralytics.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def markdown(results: list[dict]) -> str:
    stages = ("decode", "detect", "track", "embed", "match", "publish")
    lines = [
        "| cameras | fps total | fps / camera | "
        + " | ".join(f"{s} p50 ms" for s in stages)
        + " | e2e p50 / p95 ms | peak RSS MB |",
        "|---|---|---|" + "---|" * len(stages) + "---|---|",
    ]
    for r in results:
        m = r["median"]
        lat = m["latency_ms"]
        per_cam = statistics.mean(m["fps_per_camera"].values())
        cells = [f"{lat[s]['p50']:.1f}" if s in lat else "-" for s in stages]
        e2e = m.get("end_to_end_ms") or {}
        peak = max((v for _, v in m["memory_mb"]), default=float("nan"))
        lines.append(
            f"| {r['cameras']} | {m['fps_total']:.1f} | {per_cam:.1f} | "
            + " | ".join(cells)
            + f" | {e2e.get('p50', float('nan')):.0f} / {e2e.get('p95', float('nan')):.0f} | {peak:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    cams = [r["cameras"] for r in results]
    axes[0].plot(cams, [r["median"]["fps_total"] for r in results], "o-", label="total")
    axes[0].plot(
        cams, [statistics.mean(r["median"]["fps_per_camera"].values()) for r in results], "s-", label="per camera"
    )
    axes[0].set(xlabel="cameras", ylabel="frames / s", title="throughput")
    axes[0].legend()
    last = results[-1]["median"]["latency_ms"]
    names = list(last)
    axes[1].bar(names, [last[n]["p50"] for n in names], label="p50")
    axes[1].bar(
        names,
        [last[n]["p95"] - last[n]["p50"] for n in names],
        bottom=[last[n]["p50"] for n in names],
        alpha=0.5,
        label="p95",
    )
    axes[1].set(ylabel="ms per call", title=f"stage latency ({results[-1]['cameras']} cameras)")
    axes[1].legend()
    mem = results[-1]["median"]["memory_mb"]
    if mem:
        axes[2].plot([t for t, _ in mem], [v for _, v in mem])
    axes[2].set(xlabel="s", ylabel="RSS MB", title="memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--cameras", type=int, nargs="*", default=None, help="camera counts to run (default: the config's)"
    )
    parser.add_argument("--frames", type=int, default=150, help="frames per camera per run")
    parser.add_argument("--duration", type=float, default=None, help="run this many seconds instead (sources loop)")
    parser.add_argument(
        "--realtime", action="store_true", help="pace sources at their fps (default: lockstep, capacity)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5580")
    parser.add_argument("--out", default="runs/bench/pipeline")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. tracker.kind=botsort"
    )
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from core.cli import one_line_errors
    from core.configio import ConfigError

    with one_line_errors(ConfigError, FileNotFoundError, ValueError, RuntimeError):  # RuntimeError: port in use
        results, raw = measure(args)
    write_results(results, raw, args)


def measure(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Median of ``--repeats`` runs per camera count, after a short warm-up run."""
    from core.configio import apply_overrides, load_yaml_tree

    cfg_path = Path(args.config).resolve()

    raw = apply_overrides(load_yaml_tree(cfg_path), args.set)
    counts = args.cameras or [len(raw["cameras"])]
    if not args.no_warmup:
        warm = argparse.Namespace(**{**vars(args), "frames": min(args.frames, 20), "duration": None})
        one_run(raw, cfg_path, counts[0], warm)
    results = []
    for n in counts:
        runs = [one_run(raw, cfg_path, n, args) for _ in range(args.repeats)]
        runs.sort(key=lambda r: r["fps_total"])
        median = runs[len(runs) // 2]
        results.append({"cameras": n, "median": median, "fps_total_runs": [r["fps_total"] for r in runs]})
        print(
            f"{n} cameras: {median['fps_total']:.1f} frames/s total over runs {[r['fps_total'] for r in runs]}",
            flush=True,
        )
    return results, raw


def write_results(results: list[dict], raw: dict, args: argparse.Namespace) -> None:
    """bench.json, bench.md and bench.png into ``args.out``; says where."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items()}
    (out / "bench.json").write_text(
        json.dumps({"settings": settings, "environment": environment(), "config": raw, "results": results}, indent=1)
    )
    table = markdown(results)
    (out / "bench.md").write_text(table)
    plot(results, out / "bench.png")
    print(table)
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")


if __name__ == "__main__":
    main()
