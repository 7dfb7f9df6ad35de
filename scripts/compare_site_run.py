"""Are two runs' MOT files the same decisions? ``python scripts/compare_site_run.py A_mot B_mot``

Compares every ``<camera>.txt`` (local ids) and ``<camera>.global.txt`` of two output folders
row by row, global ids up to a renaming (a one-to-one map from A's ids to B's). Prints what
differs and exits 1 if anything does; the site demo uses it to show that the hub and two nodes
decided exactly what one process decided on the same frames.
"""

from __future__ import annotations

import sys
from pathlib import Path


def rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines() if line.strip()]


def _row_order(r: list[str]) -> tuple[int, float, float]:
    """Frame, then box: the two runs' writers may order a frame's rows differently."""
    return (int(r[0]), float(r[2]), float(r[3]))


def main(a: str, b: str) -> int:
    A, B = Path(a), Path(b)
    names = sorted(p.name for p in A.glob("*.txt"))
    if names != sorted(p.name for p in B.glob("*.txt")) or not names:
        print(f"different files: {names} vs {sorted(p.name for p in B.glob('*.txt'))}")
        return 1
    mapping: dict[str, str] = {}
    bad = 0
    for name in names:
        ra, rb = rows(A / name), rows(B / name)
        ra, rb = sorted(ra, key=_row_order), sorted(rb, key=_row_order)
        if len(ra) != len(rb):
            print(f"{name}: {len(ra)} rows vs {len(rb)}")
            bad += 1
            continue
        for x, y in zip(ra, rb):
            same_box = x[0] == y[0] and all(abs(float(p) - float(q)) < 1e-3 for p, q in zip(x[2:6], y[2:6]))
            if name.endswith(".global.txt"):
                same_id = mapping.setdefault(x[1], y[1]) == y[1]
            else:
                same_id = x[1] == y[1]
            if not (same_box and same_id):
                bad += 1
                if bad <= 10:
                    print(f"{name}: {x} vs {y}")
    if len(set(mapping.values())) != len(mapping):
        print("global ids: two ids of one run are one id of the other")
        bad += 1
    print(
        f"{sum(len(rows(A / n)) for n in names)} rows in {len(names)} files, {len(mapping)} global ids: "
        + ("identical up to id renaming" if not bad else f"{bad} difference(s)")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
