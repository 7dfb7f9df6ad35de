"""Installed size of the project's extras, each in a brand-new virtual environment.

    python scripts/bench_install.py --extras edge all --out docs/bench/install.json

For every extra: ``python -m venv``, ``pip install "<repo>[<extra>]"`` (not editable, so the
project's own files count), then the size of site-packages in MB, in all and without PyTorch's
own wheels (torch, torchvision, triton, nvidia-*: a Jetson brings its own PyTorch with JetPack,
and a CUDA or CPU build of torch differ by gigabytes), the largest packages and the packages one
extra has that another lacks. Prints a table and writes JSON. Needs the package index (or its
cache) and a few GB of disk per extra; the venvs are made under ``--work`` and removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_WHEELS = ("torch", "torchvision", "triton", "nvidia")


def mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def install(extra: str, work: Path) -> dict:
    venv = work / f"venv_{extra}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{REPO}[{extra}]"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"error: pip install .[{extra}] failed: {proc.stderr.strip().splitlines()[-1:]}")
    seconds = time.perf_counter() - t0
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = {p.name: mb(p) if p.is_dir() else p.stat().st_size / 2**20 for p in site.iterdir()}
    torch_mb = sum(v for k, v in sizes.items() if k.split("-")[0].split("_")[0] in TORCH_WHEELS)
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout
    shutil.rmtree(venv, ignore_errors=True)
    biggest = sorted(((k, round(v)) for k, v in sizes.items() if not k.endswith(".dist-info")), key=lambda kv: -kv[1])[
        :10
    ]
    return {
        "extra": extra,
        "install_s": round(seconds),
        "total_mb": round(sum(sizes.values())),
        "torch_mb": round(torch_mb),
        "without_torch_mb": round(sum(sizes.values()) - torch_mb),
        "largest": biggest,
        "packages": sorted(line.split("==")[0].lower() for line in freeze.splitlines() if "==" in line),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extras", nargs="+", default=["edge", "all"])
    parser.add_argument("--work", default="/tmp/clipreid_install_bench")
    parser.add_argument("--out", default="docs/bench/install.json")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = [install(extra, work) for extra in args.extras]
    print(f"| {'install':<10} | {'site-packages MB':>16} | {'without PyTorch MB':>18} | {'packages':>8} |")
    print(f"|{'-' * 12}|{'-' * 17}:|{'-' * 19}:|{'-' * 9}:|")
    for r in rows:
        print(
            f"| .[{r['extra']}]{' ' * (6 - len(r['extra']))} | {r['total_mb']:>16} | "
            f"{r['without_torch_mb']:>18} | {len(r['packages']):>8} |"
        )
    for a in rows:
        for b in rows:
            if a is not b and len(a["packages"]) < len(b["packages"]):
                print(f".[{b['extra']}] adds: {', '.join(sorted(set(b['packages']) - set(a['packages'])))}")
    result = {"python": sys.version.split()[0], "rows": rows}
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
