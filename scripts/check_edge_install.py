"""Check an ``.[edge]`` install: no PyTorch, no Ultralytics, one OpenCV, and the demo runs.

    python -m venv .venv-edge && .venv-edge/bin/pip install -e ".[edge]"
    .venv-edge/bin/python scripts/check_edge_install.py

What CI runs (.ci/run) before the full test install, so a dependency that drags the training
stack back onto the edge box fails the build. Prints the installed size of the environment and
the demo's outcome; exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "torchvision", "ultralytics", "open-clip-torch", "triton")
OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def installed() -> set[str]:
    return {(d.metadata["Name"] or "").lower().replace("_", "-") for d in md.distributions()}


def site_packages_mb() -> float:
    root = Path(sysconfig.get_paths()["purelib"])
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def run_demo(frames: int) -> tuple[list[str], float]:
    """The README's demo for ``frames`` frames per camera: problems found and the seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "edge.run",
            "--cameras",
            "configs/cams.demo.yaml",
            f"run.max_frames={frames}",
            "publisher.enabled=false",
            f"outputs.mot_dir={tmp}/mot",
            f"outputs.floor_map={tmp}/floor_map.png",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            return [f"the demo exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"], seconds
        rows = sum(len(p.read_text().splitlines()) for p in Path(tmp, "mot").glob("*.txt"))
        return ([] if rows else ["the demo wrote no tracked rows"]), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per demo camera (10 fps: 3 s)")
    args = parser.parse_args(argv)
    have = installed()
    problems = [f"{name} is installed" for name in FORBIDDEN if name in have]
    cv = [name for name in OPENCV if name in have]
    if len(cv) != 1:
        problems.append(f"expected one OpenCV wheel, found {cv or 'none'}")
    demo_problems, seconds = run_demo(args.frames)
    problems += demo_problems
    print(
        f"edge install: {site_packages_mb():.0f} MB in site-packages, {len(have)} distributions, OpenCV {cv}; "
        f"demo {args.frames} frames per camera in {seconds:.1f} s"
    )
    for p in problems:
        print(f"error: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
