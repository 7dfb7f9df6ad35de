"""Everything learned from one tracklet log: sightings (``evidence.py``) -> camera links and
overlaps (``links.py``) -> a shared ground plane for the overlapping cameras (``overlap.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edge.identity.settings import EngineSettings
from edge.site.tracklet_log import final_summaries, image_tracks
from edge.topology.evidence import sightings
from edge.topology.links import MIN_EVIDENCE, Topology, learn_topology
from edge.topology.overlap import shared_plane


def learn_site(
    log: str | Path,
    settings: EngineSettings,
    min_evidence: int = MIN_EVIDENCE,
    widths: Optional[dict[str, float]] = None,
) -> Topology:
    """The site's topology from a run's tracklet log, judged with the run's matching ``settings``;
    ``widths``: image widths by camera (else guessed from where people stand)."""
    found = sightings(final_summaries(log), settings)
    topology = learn_topology(found, min_evidence)
    if topology.overlaps:
        topology.calibration = shared_plane(found, topology.overlaps, image_tracks(log), widths)
    return topology
