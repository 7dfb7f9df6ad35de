"""The learned topology as a camera file a user reads, edits and keeps: ``_BASE_`` the camera file
it was learned for, ``matching.transitions`` learned, and the evidence behind each entry as
comments (how many walks, the transit times, the overlapping views that got no transition)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import yaml

from edge.topology.links import Topology


def evidence_lines(topology: Topology) -> list[str]:
    """One line per link, overlap and untrusted pair: what was learned and from how much."""
    lines = [f"{topology.sightings} confident sightings of a person in two cameras"]
    for k in topology.links:
        p05, p50, p95 = k.transit_s
        doors = ", ".join(n for n, d in (("exit", k.exit), ("entry", k.entry)) if d is not None) or "no doors"
        lines.append(
            f"{k.src} -> {k.dst}: {k.walks} walks, transit {p05:g} / {p50:g} / {p95:g} s (5th / 50th / 95th "
            f"percentile): window {k.min_s:g}-{k.max_s:g} s, {doors}"
        )
    for (a, b), n in sorted(topology.overlaps.items()):
        lines.append(f"{a} ~ {b}: overlapping views ({n} sightings at once): no transition between them")
    if topology.calibration:
        lines.append(
            f"{', '.join(sorted(topology.calibration))}: one ground plane learned from the people they see at "
            "once (approximate metres, depth from an assumed 60 degree view): floor fusion between them"
        )
    for (a, b), n in sorted(topology.untrusted.items()):
        lines.append(f"{a} -> {b}: {n} walks, too few to trust (no transition)")
    return lines


def write_site_file(topology: Topology, out: Path, base: Optional[Path], source: str) -> Path:
    """Write ``out``; ``base``: the camera file the learned one builds on (``_BASE_``, relative)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    head = [f"Learned by python -m edge.topology learn from {source}:"] + evidence_lines(topology)
    head.append("Review it (the picture beside it), edit what you know better, and run with this file.")
    data: dict = {}
    if base is not None:
        data["_BASE_"] = os.path.relpath(base.resolve(), out.resolve().parent)
    data["matching"] = {"transitions": topology.transitions()}
    if topology.calibration:
        data["calibration"] = topology.calibration_entries()
    text = "".join(f"# {line}\n" for line in head) + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text)
    os.replace(partial, out)  # a reader (or a crash mid-write) never sees half a file
    return out
