"""Camera links from confident sightings (``evidence.py``): which cameras people walk between, the
transit-time window of each link, its doors, and which cameras overlap.

A link (``src`` -> ``dst``) is trusted from ``min_evidence`` walks on; its window reaches from half
the 5th percentile of the transit times to 1.5 times the 95th plus 2 s, since the window is a hard
rule (a slower walker outside it could never be matched) and a learning run shows only some of the
site's walks. A camera pair seen at once more often than walked between (and at least
``min_evidence`` times) overlaps: it gets no transition, since a transition says that the two
cameras never see a person at once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from edge.topology.doors import door
from edge.topology.evidence import Sighting

MIN_EVIDENCE = 5


@dataclass
class Link:
    """People walk from ``src`` to ``dst`` in ``min_s``..``max_s`` seconds, through doors if known."""

    src: str
    dst: str
    walks: int
    transit_s: tuple[float, float, float]  # 5th, 50th, 95th percentile
    min_s: float
    max_s: float
    exit: Optional[np.ndarray] = None
    entry: Optional[np.ndarray] = None
    exits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # the foot points behind the doors
    entries: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


@dataclass
class Topology:
    links: list[Link]
    overlaps: dict[tuple[str, str], int]  # camera pair (sorted) -> sightings at once
    untrusted: dict[tuple[str, str], int]  # walks too few to trust: (src, dst) -> count
    sightings: int
    calibration: dict[str, np.ndarray] = field(default_factory=dict)  # overlapping cameras' shared plane

    def calibration_entries(self) -> dict[str, dict]:
        """The ``calibration`` entries of the shared plane (as the camera file reads them)."""
        return {c: {"homography": [[float(f"{v:.9g}") for v in row] for row in H]} for c, H in self.calibration.items()}

    def link(self, src: str, dst: str) -> Optional[Link]:
        return next((k for k in self.links if (k.src, k.dst) == (src, dst)), None)

    def transitions(self) -> list[dict]:
        """The ``matching.transitions`` entries (as :class:`~edge.identity.config.TransitionWindow` reads them)."""
        out = []
        for k in self.links:
            entry: dict = {"from": k.src, "to": k.dst, "min_s": k.min_s, "max_s": k.max_s}
            if k.exit is not None:
                entry["exit"] = k.exit.tolist()
            if k.entry is not None:
                entry["entry"] = k.entry.tolist()
            out.append(entry)
        return out


def learn_topology(found: list[Sighting], min_evidence: int = MIN_EVIDENCE) -> Topology:
    walks: dict[tuple[str, str], list[Sighting]] = defaultdict(list)
    together: dict[tuple[str, str], int] = defaultdict(int)
    for s in found:
        if s.overlapping:
            together[_pair(s.src, s.dst)] += 1
        else:
            walks[(s.src, s.dst)].append(s)
    overlaps = {
        pair: n
        for pair, n in together.items()
        if n >= min_evidence and n >= len(walks.get(pair, [])) + len(walks.get(pair[::-1], []))
    }
    links, untrusted = [], {}
    for (src, dst), items in sorted(walks.items()):
        if _pair(src, dst) in overlaps:
            continue
        if len(items) < min_evidence:
            untrusted[(src, dst)] = len(items)
            continue
        links.append(_link(src, dst, items))
    return Topology(links, overlaps, untrusted, len(found))


def _link(src: str, dst: str, items: list[Sighting]) -> Link:
    gaps = np.array([s.gap_s for s in items])
    p05, p50, p95 = (float(np.percentile(gaps, q)) for q in (5, 50, 95))
    exits = np.array([s.left_at for s in items])
    entries = np.array([s.came_in_at for s in items])
    return Link(
        src,
        dst,
        len(items),
        (round(p05, 2), round(p50, 2), round(p95, 2)),
        math.floor(max(0.0, 0.5 * p05) * 10) / 10,
        float(math.ceil(1.5 * p95 + 2.0)),
        door(exits, float(np.median([s.left_height for s in items]))),
        door(entries, float(np.median([s.came_in_height for s in items]))),
        exits,
        entries,
    )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
