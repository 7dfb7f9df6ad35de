"""The evidence a topology is learned from: consecutive sightings of one person in two cameras.

The run's tracklets are clustered with hindsight under appearance alone (the engine's offline
clustering, :func:`~edge.identity.engine.cluster_offline`, with no transitions and no floor, so
nothing learned feeds on itself). Within a cluster, a tracklet and the sighting just before it in
another camera (the one last seen most recently: what the engine's transitions compare) are one
piece of evidence when the two look alike *far above* the threshold (``confident`` scale units)
and the cluster is unambiguous: no other cluster's look comes that close to it. A
sighting that still overlaps in time is evidence that the two cameras see the same place; one
that ended before is a walk from one camera to the other, with its transit time and where the
person left and came in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from core.embeddings import Embeddings, similarity, weighted_mean
from edge.identity.engine import cluster_offline
from edge.identity.geometry import foot_point
from edge.identity.records import Key, TrackletSummary
from edge.identity.rules import HANDOVER_S
from edge.identity.settings import EngineSettings
from edge.identity.state import compared_looks

# scale units above the threshold a pair must look alike to be evidence: on the learning recording
# of the demo (seed 31, scored against its ground truth afterwards) every consecutive pair at 0.5
# or more was one person, every one below 0.35 two; 1.0 leaves a margin
CONFIDENT = 1.0
MIN_CROPS = 3  # a tracklet with fewer crops has too noisy a look to learn from


@dataclass(frozen=True)
class Sighting:
    """One person seen in camera ``src`` and next in camera ``dst``."""

    src: str
    dst: str
    gap_s: float  # dst's first sighting minus src's last (negative: seen in both at once)
    left_at: np.ndarray  # foot point of the last box in src (pixels)
    came_in_at: np.ndarray  # foot point of the first box in dst (pixels)
    left_height: float  # px, of the last box in src (how big its door needs to be)
    came_in_height: float  # px, of the first box in dst
    cosine: float
    keys: tuple[Key, Key]  # the two tracklets: where they stood over time is in the log (image_tracks)

    @property
    def overlapping(self) -> bool:
        return self.gap_s < -HANDOVER_S


def sightings(
    tracklets: list[TrackletSummary], settings: EngineSettings, confident: float = CONFIDENT
) -> list[Sighting]:
    """Every confident camera-to-camera sighting of the tracklets (see the module docstring)."""
    usable = [s for s in tracklets if s.appearance is not None and s.n_embeddings >= MIN_CROPS]
    if not usable:
        return []
    plain = replace(settings, transitions={}, min_embeddings=MIN_CROPS, enabled=True)
    clusters = _clusters(cluster_offline([replace(s, floor=None) for s in usable], plain))
    looks = compared_looks(usable, plain)
    by_key = {s.key: s for s in usable}
    ambiguous = _ambiguous(clusters, looks, settings, confident)
    out = []
    for gid, keys in clusters.items():
        if gid in ambiguous or len({k[0] for k in keys}) < 2:
            continue
        members = sorted((by_key[k] for k in keys), key=lambda s: (s.first_seen, s.key))
        for i, b in enumerate(members):
            before = [a for a in members[:i] if a.first_seen < b.first_seen]
            if not before:
                continue
            a = max(before, key=lambda s: s.last_seen)
            if a.camera == b.camera:
                continue
            cos = float(similarity(looks[a.key], looks[b.key])[0, 0])
            if (cos - settings.threshold) / settings.scale < confident:
                continue
            out.append(
                Sighting(
                    a.camera,
                    b.camera,
                    b.first_seen - a.last_seen,
                    foot_point(a.last_box),
                    foot_point(b.first_box),
                    float(a.last_box[3] - a.last_box[1]),
                    float(b.first_box[3] - b.first_box[1]),
                    cos,
                    (a.key, b.key),
                )
            )
    return out


def _clusters(assignment: dict[Key, int]) -> dict[int, list[Key]]:
    out: dict[int, list[Key]] = defaultdict(list)
    for key, gid in assignment.items():
        out[gid].append(key)
    return out


def _ambiguous(
    clusters: dict[int, list[Key]], looks: dict[Key, Embeddings], settings: EngineSettings, confident: float
) -> set[int]:
    """Clusters another cluster's mean look comes ``confident`` scale units above the threshold
    to: look-alikes, whose sightings could be either person's."""
    ids = sorted(clusters)
    if len(ids) < 2:
        return set()
    means = Embeddings.concat([_mean([looks[k] for k in clusters[g]]) for g in ids])
    cos = similarity(means, means)
    np.fill_diagonal(cos, -np.inf)
    close = cos.max(1) >= settings.threshold + confident * settings.scale
    return {g for g, c in zip(ids, close) if c}


def _mean(items: list[Embeddings]) -> Embeddings:
    return weighted_mean(Embeddings.concat(items), np.ones(len(items)))
