"""Tracklet summaries as a receiver takes them in: each one's appearance only when it changed and
only the floor samples not sent yet (the engine re-reads every live tracklet every step, so sending
each in full would repeat the same 512 floats ten times a second).

The site node sends its hub this stream (``edge/site/node.py``) and a tracklet log records it
(``edge/site/tracklet_log.py``); the hub's mirror (``edge/site/mirror.py``) rebuilds the summaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np

from edge.identity.records import Key, TrackletSummary
from edge.wire.site_protocol import WireTracklet

Describe = Callable[[Key], tuple[float, int]]  # key -> (detection score, frame index), what events show


class SummaryStream:
    """What the receiver already has of each tracklet: ``sent[key]`` = (n_embeddings, last floor time)."""

    def __init__(self) -> None:
        self.sent: dict[Key, tuple[int, float]] = {}

    def wire(self, s: TrackletSummary, describe: Optional[Describe] = None, full: bool = False) -> WireTracklet:
        """``s`` as the next message carries it (``full``: everything again, as after a resync)."""
        n_sent, floor_sent = (-1, -np.inf) if full else self.sent.get(s.key, (-1, -np.inf))
        floor = None
        if s.floor is not None and len(s.floor):
            times, points = s.floor.arrays()
            new = times > floor_sent
            if new.any():
                floor = np.column_stack([times[new], points[new]])
                floor_sent = float(times[-1])
        appearance = s.appearance if s.n_embeddings != n_sent else None
        self.sent[s.key] = (s.n_embeddings, floor_sent)
        conf, frame = describe(s.key) if describe else (0.0, 0)
        return WireTracklet(
            s.camera,
            s.local_id,
            s.first_seen,
            s.last_seen,
            s.n_embeddings,
            s.weight,
            s.first_box,
            s.last_box,
            s.ended,
            conf,
            frame,
            appearance,
            floor,
        )
