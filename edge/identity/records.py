"""What the identity engine takes in, keeps and gives back: tracklet summaries, identities, decisions.

Plain data, no behaviour beyond small views, so the same engine can be fed by the single-box
runtime (from its :class:`~edge.runtime.tracklets.Tracklet` objects) or by a site hub (from messages),
and a site hub can store its identities (:class:`Identity`) and restore them after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity.geometry import FloorTrack

Key = tuple[str, int]  # (camera, local id)

DecisionKind = Literal["new", "assigned", "merged", "reassigned", "expired"]
"""What a :class:`Decision` says happened; the string goes on the wire as the event's ``event``."""


@dataclass
class TrackletSummary:
    """One camera's tracklet as the engine sees it.

    ``first_seen`` / ``last_seen`` are the times the person was *observed* (scene clock, seconds),
    not the tracker's state: a lost track's ``last_seen`` stays at its last detection.
    ``weight`` is the summed quality of the crops behind ``appearance``; ``floor`` holds the
    tracklet's floor positions when its camera is calibrated.
    """

    camera: str
    local_id: int
    first_seen: float
    last_seen: float
    appearance: Optional[Embeddings]
    n_embeddings: int
    weight: float
    first_box: np.ndarray  # xyxy in the image when first seen
    last_box: np.ndarray  # xyxy when last seen
    floor: Optional[FloorTrack] = None
    ended: bool = False

    @property
    def key(self) -> Key:
        return self.camera, self.local_id


@dataclass(frozen=True)
class Decision:
    """One change of the identity state.

    ``kind``: ``new`` (``key`` founded ``global_id``), ``assigned`` (``key`` joined ``global_id``),
    ``merged`` (identity ``previous`` is one person with ``global_id`` and is folded into it),
    ``reassigned`` (``key`` moved from ``previous`` to ``global_id``, which may be new) or
    ``expired`` (``global_id`` unseen for the time to live, forgotten).
    """

    kind: DecisionKind
    global_id: int
    key: Optional[Key] = None
    previous: Optional[int] = None
    cameras: tuple[str, ...] = ()  # expired: where the identity had been seen


@dataclass
class Identity:
    """One person: the tracklets still under revision (``members``) and a summary of the final ones."""

    global_id: int
    created: float
    last_seen: float
    last_camera: str
    cameras: set[str] = field(default_factory=set)
    last_box: Optional[np.ndarray] = None  # xyxy where it was last seen, in last_camera's image
    members: set[Key] = field(default_factory=set)
    # final tracklets' (first, last) per camera
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    past: Optional[Embeddings] = None  # appearance of the final tracklets
    past_weight: float = 0.0
    past_floor: Optional[FloorTrack] = None  # floor track of the latest final tracklet
    embedding: Optional[np.ndarray] = None  # global appearance [D], refreshed on every change (events carry it)
    sealed: bool = False  # founded by a tracklet too short to match: nothing joins or merges into it
