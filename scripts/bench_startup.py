"""Start-up time of ``edge.run``: process start to the first frame processed, then exit.

    python scripts/bench_startup.py --cameras configs/cams.realpair.yaml --repeats 5
    python scripts/bench_startup.py --cameras configs/cams.realpair.yaml --baseline-repo /work/before

Each run is ``python -m edge.run --cameras X run.max_frames=1 publisher.enabled=false`` in a new
process (cold interpreter, warm file cache: one untimed run first), timed from spawn to exit, so
it covers imports, model loading, the warm-up and one frame per camera. ``--baseline-repo``
times another checkout of this project (an older commit) with its own copy of the same camera
file, side by side. Also counts the modules the run imported. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORTS = "import sys, runpy; sys.argv = {argv!r}; runpy.run_module('edge.run', run_name='__main__', alter_sys=True)"


def edge_run_args(cameras: str) -> list[str]:
    return ["--cameras", cameras, "run.max_frames=1", "publisher.enabled=false"]


def time_run(repo: Path, cameras: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one start-up. CPU time barely moves when other
    work shares the machine; wall time is what an operator waits."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "edge.run", *edge_run_args(cameras)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"error: edge.run failed in {repo}: {proc.stderr.strip().splitlines()[-1:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def modules_loaded(repo: Path, cameras: str) -> int:
    """How many modules one start-up imports (what a lean runtime keeps small)."""
    code = "import atexit, sys; atexit.register(lambda: print('MODULES', len(sys.modules)))\n" + IMPORTS.format(
        argv=["edge.run", *edge_run_args(cameras)]
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES")]
    return int(lines[-1].split()[1]) if lines else -1


def measure(builds: list[tuple[str, Path]], cameras: str, repeats: int) -> list[dict]:
    """Runs alternate between the builds, so a busy machine slows them alike."""
    for _, repo in builds:
        time_run(repo, cameras)  # untimed: fills the file cache
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in builds}
    for _ in range(repeats):
        for label, repo in builds:
            runs[label].append(time_run(repo, cameras))
    rows = []
    for label, repo in builds:
        wall, cpu = [w for w, _ in runs[label]], [c for _, c in runs[label]]
        rows.append(
            {
                "label": label,
                "repo": str(repo),
                "commit": commit_of(repo),
                "wall_s": [round(t, 3) for t in wall],
                "cpu_s": [round(t, 3) for t in cpu],
                "median_wall_s": round(statistics.median(wall), 3),
                "min_wall_s": round(min(wall), 3),
                "median_cpu_s": round(statistics.median(cpu), 3),
                "modules": modules_loaded(repo, cameras),
            }
        )
    return rows


def commit_of(repo: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", default="configs/cams.realpair.yaml", help="camera file, relative to each repo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-repo", default=None, help="another checkout to time side by side")
    parser.add_argument("--out", default="docs/bench/startup.json")
    args = parser.parse_args(argv)
    if not (REPO / args.cameras).is_file():
        raise SystemExit(f"error: camera file not found: {REPO / args.cameras}")
    builds = [("baseline", Path(args.baseline_repo).resolve())] if args.baseline_repo else []
    rows = measure(builds + [("this checkout", REPO)], args.cameras, args.repeats)
    print(f"start-up to first frame and exit, {args.cameras}, median of {args.repeats} runs")
    print(
        f"| {'build':<14} | {'commit':<8} | {'wall s (median)':>15} | {'wall s (min)':>12} | "
        f"{'CPU s (median)':>14} | {'modules':>7} |"
    )
    print(f"|{'-' * 16}|{'-' * 10}|{'-' * 16}:|{'-' * 13}:|{'-' * 15}:|{'-' * 8}:|")
    for r in rows:
        print(
            f"| {r['label']:<14} | {r['commit']:<8} | {r['median_wall_s']:>15.2f} | {r['min_wall_s']:>12.2f} | "
            f"{r['median_cpu_s']:>14.2f} | {r['modules']:>7} |"
        )
    result = {"cameras": args.cameras, "repeats": args.repeats, "python": sys.version.split()[0], "rows": rows}
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
