"""Run ``edge.run`` on any camera file under the compute a field box gets, and keep its outputs.

    sudo python scripts/run_limited.py --setting quota:0.5 --out runs/limited/realpair_q05 \\
        --cameras configs/cams.realpair.yaml \\
        "cameras=[{id: double, source: $PWD/../shared/realdata/samihormi_mc/Double1.mp4},
                  {id: single, source: $PWD/../shared/realdata/samihormi_mc/Single1.mp4}]"

The settings are :mod:`bench_live`'s (``full``, ``quota:X`` in a cgroup made for the run, ``pin``,
``busy:N``); the camera file's overrides follow it. For footage without a world's ground truth
(the real pair), so the outputs are looked at rather than scored: ``edge.run``'s report and log
land in ``--out``, its MOT files in ``--out``/mot unless an override puts them elsewhere. Prints
the frames processed and dropped per camera, the rate warnings and, per camera, how many rows
each global id has.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_live import run_setting  # noqa: E402


def global_rows(mot_dir: Path) -> dict[str, dict[int, int]]:
    """Rows per global id in each camera's ``<camera>.global.txt``."""
    out = {}
    for path in sorted(mot_dir.glob("*.global.txt")):
        ids = Counter(int(float(line.split(",")[1])) for line in path.read_text().splitlines() if line)
        out[path.name.removesuffix(".global.txt")] = dict(sorted(ids.items()))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", required=True, help="full, quota:X, pin or busy:N")
    parser.add_argument("--cameras", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("overrides", nargs="*", help="camera file overrides (key=value)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mot_dir = next((Path(o.split("=", 1)[1]) for o in args.overrides if o.startswith("outputs.mot_dir=")), out / "mot")
    overrides = [*args.overrides] if mot_dir != out / "mot" else [*args.overrides, f"outputs.mot_dir={mot_dir}"]
    code = run_setting(args.setting, Path(args.cameras).resolve(), out / "report.json", out / "edge.log", overrides)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    result = {
        "setting": args.setting,
        "cameras": args.cameras,
        "overrides": args.overrides,
        "exit": code,
        "processed_fps": {c: v.get("fps") for c, v in report.get("cameras", {}).items()},
        "dropped": report.get("dropped"),
        "rate_warnings": report.get("rate_warnings"),
        "detect_every": report.get("detect_every"),
        "rows_per_global_id": global_rows(mot_dir),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(main()["exit"])
