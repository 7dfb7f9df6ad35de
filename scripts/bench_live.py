"""The demo live (real-time sources) under the compute a field box gets, scored against ground truth.

    sudo python scripts/bench_live.py --seeds 101 102 103 104 105 \
        --settings full quota:1.0 quota:0.6 quota:0.4 quota:0.25 busy:1 --out runs/bench/live

A box in the field is never in lockstep: its sources run in real time and it processes what it
can. For every seed of the demo world and every setting, ``python -m edge.run`` runs the demo
camera file live (``realtime`` sources, the scene's 60 s) in its own process, then
``edge.evaluate`` scores its MOT files. Settings:

* ``full``: whatever the machine gives;
* ``quota:X``: a cgroup made for the run with a CFS quota of X CPUs (what ``docker run --cpus=X``
  sets; cgroup v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``; needs root);
* ``pin``: pinned to one core (``taskset -c 0``);
* ``busy:N``: pinned to one core shared with N busy loops.

``--source video`` renders each seed's cameras to mp4 once and has the runs decode them, as a box
decodes its cameras' streams: the synthetic renderer costs about 15 ms of CPU a frame (0.44 CPU
for the demo's 3 cameras at 10 fps), far more than decoding, so under small quotas the default
``synthetic`` source measures mostly the renderer.

Reports cross-camera IDF1, global ids found against the true count, frames processed per
camera per second and frames dropped, per run and as mean ± std per setting; writes
``bench.json``, ``bench.md`` and ``curve.png`` (IDF1 against the CPU quota) into ``--out``.
Seeds 5, 11, 21, 22 and 23 tune the engine; report others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_mtmc import ground_truth, score  # noqa: E402

CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def seed_camera_file(
    config: Path, seed: int, out: Path, port: int, duration_s: Optional[float], videos: Optional[Path] = None
) -> Path:
    """The camera file for one seed, written beside the run's outputs with absolute paths;
    with ``videos``, each camera reads its pre-rendered mp4 there instead of rendering."""
    data = yaml.safe_load(config.read_text())
    base = config.resolve().parent
    for cam in data["cameras"]:
        cam["source"] = (
            str((videos / f"{cam['id']}.mp4").resolve())
            if videos
            else f"{cam['source'].split('&seed=')[0]}&seed={seed}"
        )
        cam["realtime"] = True
    for section, key in (("detector", "weights"), ("reid", "model")):
        if data.get(section) and data[section].get(key):
            data[section][key] = str((base / data[section][key]).resolve())
    data["outputs"] = {
        "mot_dir": str((out / "mot").resolve()),
        "video_dir": None,
        "floor_map": None,
        "tracklet_log": str((out / "tracklets.jsonl.gz").resolve()),  # scripts/replay_tracklet_log.py replays it
    }
    data.setdefault("publisher", {})["endpoint"] = f"tcp://127.0.0.1:{port}"
    data.setdefault("run", {})["stats_interval_s"] = 5
    if duration_s:
        data["run"]["duration_s"] = duration_s
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cams.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def cpu_quota(cpus: float) -> Iterator[Path]:
    """A cgroup with a CFS quota of ``cpus``; yields its ``cgroup.procs`` (a child writes its pid there)."""
    name = f"clipreid-bench-{uuid.uuid4().hex[:8]}"
    v1 = (CGROUP_V1 / "cpu.cfs_quota_us").exists()
    if not v1 and not (CGROUP_V2 / "cgroup.controllers").exists():
        raise SystemExit("no cgroup cpu controller found: quota settings need cgroup v1 or v2 and root")
    group = (CGROUP_V1 if v1 else CGROUP_V2) / name
    group.mkdir()
    try:
        if v1:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(int(cpus * PERIOD_US)))
        else:
            (group / "cpu.max").write_text(f"{int(cpus * PERIOD_US)} {PERIOD_US}")
        yield group / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def busy_loops(n: int, core: int = 0) -> list[subprocess.Popen]:
    loop = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(["taskset", "-c", str(core), *loop]) for _ in range(n)]


def run_setting(setting: str, camera_file: Path, report: Path, log: Path, overrides: Sequence[str] = ()) -> int:
    """Run edge.run on ``camera_file`` (with ``overrides``) under ``setting``; returns its exit status."""
    cmd = [sys.executable, "-m", "edge.run", "--cameras", str(camera_file), "--report", str(report), *overrides]
    kind, _, value = setting.partition(":")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        if kind == "full":
            return subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        if kind == "quota":
            with cpu_quota(float(value)) as procs:
                # the shell joins the group first, then becomes edge.run: every thread it starts is inside
                shell = f'echo $$ > "{procs}" && exec "$@"'
                return subprocess.run(
                    ["sh", "-c", shell, "sh", *cmd], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                ).returncode
        if kind in ("pin", "busy"):
            loops = busy_loops(int(value or 0)) if kind == "busy" else []
            try:
                return subprocess.run(
                    ["taskset", "-c", "0", *cmd], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                ).returncode
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
    raise SystemExit(f"unknown setting {setting!r}: full, quota:X, pin or busy:N")


def rendered_videos(seed: int, out: Path) -> Path:
    """The demo's cameras for ``seed`` rendered once to mp4 (``sim mot --video``)."""
    from sim.scene import World, resolve_scene
    from sim.writers import write_mot_ground_truth

    folder = out / f"videos_seed{seed}"
    if not (folder / "cam1.mp4").is_file():
        write_mot_ground_truth(World(resolve_scene("demo", seed=seed)), folder, video=True, progress=False)
    return folder


def run_one(
    config: Path, seed: int, setting: str, out: Path, port: int, duration_s: Optional[float], source: str = "synthetic"
) -> dict:
    gt = ground_truth(seed, out)
    run_dir = out / f"seed{seed}" / setting.replace(":", "_")
    videos = rendered_videos(seed, out) if source == "video" else None
    camera_file = seed_camera_file(config, seed, run_dir, port, duration_s, videos)
    status = run_setting(setting, camera_file, run_dir / "report.json", run_dir / "edge.log")
    if status != 0:
        raise SystemExit(f"edge.run failed under {setting} (seed {seed}, exit {status}): see {run_dir / 'edge.log'}")
    report = json.loads((run_dir / "report.json").read_text())
    cameras = report.get("cameras", {})
    fps = statistics.mean(v["fps"] for v in cameras.values()) if cameras else 0.0
    return {
        "seed": seed,
        "setting": setting,
        "scores": score(gt, run_dir / "mot"),
        "fps_per_camera": round(fps, 2),
        "frames": report.get("processed", {}),
        "dropped": report.get("dropped", {}),
        "elapsed_s": report.get("elapsed_s"),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| setting | seed | cross-camera IDF1 | ids found / true | fps per camera | frames dropped |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["scores"]
        lines.append(
            f"| {r['setting']} | {r['seed']} | {s['IDF1']:.1f} | {s['ids_pred']} / {s['ids_true']} | "
            f"{r['fps_per_camera']:.1f} | {sum(r['dropped'].values())} |"
        )
    for setting, m in summary(rows).items():
        lines.append(
            f"| **{setting}** | mean of {m['n']} | **{m['IDF1']:.1f}** ± {m['IDF1_std']:.1f} | "
            f"{m['ids_pred']:.0f} / {m['ids_true']:.0f} | "
            f"{m['fps_per_camera']:.1f} | |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == setting]
        idf1 = [r["scores"]["IDF1"] for r in sel]
        out[setting] = {
            "n": len(sel),
            "IDF1": statistics.mean(idf1),
            "IDF1_std": statistics.stdev(idf1) if len(sel) > 1 else 0.0,
            "ids_pred": statistics.mean(r["scores"]["ids_pred"] for r in sel),
            "ids_true": statistics.mean(r["scores"]["ids_true"] for r in sel),
            "fps_per_camera": statistics.mean(r["fps_per_camera"] for r in sel),
        }
    return out


def plot(rows: list[dict], path: Path, curves: Optional[dict[str, list[dict]]] = None) -> Optional[Path]:
    """Cross-camera IDF1 (left) and global ids (right) against the CPU quota, mean ± std over seeds,
    one curve per run in ``curves`` (label -> rows; default: these rows). The other settings (a
    pinned core, busy loops, all of the machine) stand beside the quota axis as labelled points;
    the right panel marks 1.5x the true number of people, the issue's bound."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax, ids) = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = curves or {"CPU quota": rows}
    others = sorted({s for r in runs.values() for s in summary(r) if not s.startswith("quota:")})
    spot = {s: 1.2 + 0.15 * i for i, s in enumerate(others)}  # beside the quota axis
    for n, (label, run_rows) in enumerate(runs.items()):
        m = summary(run_rows)
        quotas = sorted((float(s.split(":")[1]), v) for s, v in m.items() if s.startswith("quota:"))
        shift = 0.012 * (n - (len(runs) - 1) / 2)  # runs side by side, not on top of each other
        for axis, key, err in ((ax, "IDF1", "IDF1_std"), (ids, "ids_pred", None)):
            line = axis.errorbar(
                [q + shift for q, _ in quotas],
                [v[key] for _, v in quotas],
                yerr=[v[err] for _, v in quotas] if err else None,
                marker="o",
                capsize=3,
                label=label,
            )
            for s in others:
                if s in m:
                    axis.errorbar(
                        spot[s] + shift,
                        m[s][key],
                        yerr=m[s][err] if err else None,
                        marker="s",
                        capsize=3,
                        color=line[0].get_color(),
                    )
    true = max((v["ids_true"] for r in runs.values() for v in summary(r).values()), default=0)
    if true:
        ids.axhline(1.5 * true, linestyle="--", color="grey", linewidth=1)
        ids.annotate(f"1.5x the {true} people", (0.22, 1.5 * true), fontsize=8, va="bottom")
    ticks = [0.25, 0.4, 0.6, 1.0, *spot.values()]
    for axis in (ax, ids):
        axis.set_xticks(ticks, ["0.25", "0.4", "0.6", "1.0", *others], fontsize=8)
        axis.set_xlim(0.15, max(ticks) + 0.12)
        axis.set_xlabel("CPUs the run may use (cgroup quota); other settings")
        axis.grid(alpha=0.3)
    ax.set_ylim(0, 100)
    ax.set_ylabel("cross-camera IDF1")
    ax.legend(loc="lower right", fontsize=8)
    ids.set_ylim(0, None)
    ids.set_ylabel("global ids found")
    fig.suptitle(f"demo live, {len({r['seed'] for r in rows})} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "cams.demo.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    parser.add_argument(
        "--settings", nargs="+", default=["full", "quota:1.0", "quota:0.6", "quota:0.4", "quota:0.25", "busy:1"]
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds of each run (default: the whole scene)")
    parser.add_argument("--port", type=int, default=5590, help="publisher port of the runs")
    parser.add_argument(
        "--source",
        choices=("synthetic", "video"),
        default="synthetic",
        help="synthetic: each camera renders its frames in the measured process (about 15 ms of CPU a frame, "
        "far more than decoding a camera's stream); video: the cameras pre-rendered to mp4 and decoded, "
        "as a box decodes its cameras' streams",
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "live"))
    parser.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="LABEL=BENCH_JSON",
        help="draw these earlier runs' curves beside this one (e.g. before=runs/old/bench.json)",
    )
    parser.add_argument("--replot", action="store_true", help="do not run: redraw curve.png from --out's bench.json")
    parser.add_argument("--label", default="this run", help="this run's curve in the plot (e.g. its commit)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {
        label: json.loads(Path(path).read_text())["runs"]
        for label, path in (item.split("=", 1) for item in args.compare)
    }
    if args.replot:
        rows = json.loads((out / "bench.json").read_text())["runs"]
        print(f"wrote {plot(rows, out / 'curve.png', {args.label: rows, **curves} if curves else None)}")
        return {"runs": rows}
    rows = []
    for seed in args.seeds:
        for setting in args.settings:
            row = run_one(Path(args.config), seed, setting, out, args.port, args.duration, args.source)
            rows.append(row)
            s = row["scores"]
            print(
                f"seed {seed} {setting}: IDF1 {s['IDF1']:.1f} ({s['ids_pred']}/{s['ids_true']} ids), "
                f"{row['fps_per_camera']:.1f} fps/camera, {sum(row['dropped'].values())} dropped",
                flush=True,
            )
    table = markdown(rows)
    print(table)
    result = {
        "config": args.config,
        "source": args.source,
        "seeds": args.seeds,
        "settings": args.settings,
        "runs": rows,
        "summary": summary(rows),
    }
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    (out / "bench.md").write_text(table + "\n")
    curve = plot(rows, out / "curve.png", {args.label: rows, **curves} if curves else None)
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" + (f" and {curve}" if curve else ""))
    return result


if __name__ == "__main__":
    main()
