"""The rules of the identity engine: what forbids a tracklet and an identity outright, and the
evidence besides appearance. All of them in one place, as functions of the settings and the
tracklets (no engine state), so that what may never join can be read here and nowhere else.

One score says how well a tracklet fits an identity, in units of the ReID model's different-person
cosine spread (the standard deviation of its different-person similarities), so that appearance
and the other evidence add up (the engine's ``score`` sums them)::

    score = (cos(tracklet, identity) - threshold) / scale
            + relink_bonus   if the tracklet continues one of the identity's tracklets of the same
                             camera (it started shortly after that one was last seen, near it)
            + floor_weight * floor support   (same place at the same time in overlapping views)
            + transition_bonus * (+1 through a declared transition's doors, -1 in its window but
                                  not through them; topology.py)

and hard rules forbid a pair outright (the score is then :data:`FORBIDDEN`):

* one camera never sees one identity twice at the same observed time (a member with less than
  :data:`WEAKER` of the newcomer's evidence, most often a tracker-swap fragment, does not block;
  the revision moves it out instead), nor overlaps one of its final tracklets;
* a transition window is not met, or two cameras a transition joins would have seen the identity
  closer in time than the walk takes (:meth:`Rules.too_soon`);
* two tracklets stand far apart on the floor at the same time, or one would have had to walk
  faster than a person walks (:func:`edge.identity.geometry.floor_evidence`);
* appearance more than ``appearance_veto`` scale units below the threshold, when set.

:meth:`Rules.conflict` is the same judgement for two tracklets alone (who blocks whom when the
revision gives an identity back, ``revision.py``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge.identity.geometry import floor_evidence, foot_point
from edge.identity.records import Identity, TrackletSummary
from edge.identity.settings import EngineSettings

FORBIDDEN = -1e9
WEAKER = 0.5  # a same-time tracklet with less than this share of the evidence does not block: it is moved out
HANDOVER_S = 0.25  # a tracker break can show old and new track together this long, at the same place
# how far (in body heights) a track that continues another may start from where that one was last
# seen: this much at once, plus this much per second of gap. A box that processes a few frames a
# second sees people move by half a body height between two of them (chosen on the tuning seeds'
# live logs at a quarter CPU, scripts/replay_tracklet_log.py: 0.25 + 0.5/s left 29.6 ids for 20
# people, 0.5 + 0.5/s 27.4, 0.75 + 1.0/s 27.0; IDF1 79.7, 80.0, 80.1)
CONTINUE_AT_ONCE = 0.5
CONTINUE_PER_S = 0.5


def overlap(a0: float, a1: float, b0: float, b1: float) -> bool:
    """Do the time spans ``a0..a1`` and ``b0..b1`` share an instant?"""
    return a0 <= b1 and b0 <= a1


class Rules:
    """The hard rules and the evidence besides appearance, under one set of settings."""

    def __init__(self, settings: EngineSettings):
        self.cfg = settings

    def appearance_evidence(self, cos: float) -> float:
        """``(cos - threshold) / scale``; FORBIDDEN below ``-appearance_veto``: no floor or continuity
        evidence makes two clearly different-looking people one (a tracker's identity switch or a
        hand-over to a bystander would otherwise carry a person's id onto someone else)."""
        evidence = (cos - self.cfg.threshold) / self.cfg.scale
        veto = self.cfg.appearance_veto
        return FORBIDDEN if veto is not None and evidence < -veto else evidence

    def time_evidence(self, s: TrackletSummary, ident: Identity, others: list[TrackletSummary]) -> Optional[float]:
        """None when time forbids ``s`` in ``ident``; else the transition support: 1 when ``s`` arrived
        by a declared transition from the identity's last sighting (within its time window and,
        where it names doors, leaving and coming in through them), -1 when within the window but
        not through the doors (a detector can miss somebody at a door, so this is evidence, not a
        rule), 0 without a declared transition."""
        for o in others:
            if (
                o.camera == s.camera
                and overlap(o.first_seen, o.last_seen, s.first_seen, s.last_seen)
                and not (self.continues(s, o) or self.continues(o, s))
                and o.weight >= WEAKER * s.weight
            ):
                return None  # one camera saw both at once (beyond a tracker's hand-over): two people
        if any(overlap(f, last, s.first_seen, s.last_seen) for f, last in ident.spans.get(s.camera, ())):
            return None
        if not self.cfg.transitions:
            return 0.0
        if any(self.too_soon(o.camera, o.first_seen, o.last_seen, s) for o in others) or any(
            self.too_soon(camera, f, last, s) for camera, spans in ident.spans.items() for f, last in spans
        ):
            return None  # e.g. seen in two cameras a corridor apart at once
        before: list[tuple[float, str, Optional[np.ndarray]]] = [
            (o.last_seen, o.camera, o.last_box) for o in others if o.last_seen < s.first_seen
        ]
        if not others and ident.last_seen < s.first_seen:
            before = [(ident.last_seen, ident.last_camera, ident.last_box)]
        if not before:
            return 0.0
        last_seen, camera, box = max(before, key=lambda b: b[0])
        transition = self.cfg.transitions.get((camera, s.camera)) if camera != s.camera else None
        if transition is None:
            return 0.0
        if not transition.within(s.first_seen - last_seen):
            return None
        left_at = None if box is None else foot_point(box)
        return 1.0 if transition.through_doors(left_at, foot_point(s.first_box)) else -1.0

    def too_soon(self, camera: str, first: float, last: float, s: TrackletSummary) -> bool:
        """Were ``camera``'s sighting ``first..last`` and tracklet ``s`` closer in time than the declared
        transition between their cameras takes (``min_s``)? Overlapping sightings in cameras that a
        transition joins are too close whatever its direction: such cameras do not share a view."""
        if camera == s.camera:
            return False
        if last < s.first_seen:
            transition = self.cfg.transitions.get((camera, s.camera))
            return transition is not None and s.first_seen - last < transition.min_s
        if s.last_seen < first:
            transition = self.cfg.transitions.get((s.camera, camera))
            return transition is not None and first - s.last_seen < transition.min_s
        return (camera, s.camera) in self.cfg.transitions or (s.camera, camera) in self.cfg.transitions

    def floor(self, s: TrackletSummary, ident: Identity, others: list[TrackletSummary]) -> tuple[bool, float]:
        """(forbidden, mean support) over the identity's tracklets with floor tracks."""
        if s.floor is None or not len(s.floor):
            return False, 0.0
        tracks = [o.floor for o in others if o.floor is not None and len(o.floor)]
        if ident.past_floor is not None:
            tracks.append(ident.past_floor)
        supports = []
        for track in tracks:
            forbidden, support = floor_evidence(s.floor, track, self.cfg.floor)
            if forbidden:
                return True, 0.0
            if support:
                supports.append(support)
        return False, float(np.mean(supports)) if supports else 0.0

    def continues(self, later: TrackletSummary, earlier: TrackletSummary) -> bool:
        """``later`` picks up where ``earlier`` (same camera) was last seen: a tracker break."""
        if later.camera != earlier.camera:
            return False
        gap = later.first_seen - earlier.last_seen
        if not -HANDOVER_S <= gap <= self.cfg.relink_max_gap_s or later.first_seen <= earlier.first_seen:
            return False  # a hand-over may overlap by a few frames: the new track starts before the old one is dropped
        gap = max(gap, 0.0)
        a, b = np.asarray(earlier.last_box, float), np.asarray(later.first_box, float)
        height = max(a[3] - a[1], b[3] - b[1], 1.0)
        moved = float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[3] - b[3])))
        return moved <= height * (CONTINUE_AT_ONCE + CONTINUE_PER_S * gap)  # a walk, not a stranger

    def relinks(self, s: TrackletSummary, others: list[TrackletSummary]) -> bool:
        """Does ``s`` continue one of ``others``, or one of them continue ``s`` (the relink bonus)?"""
        return any(self.continues(s, o) or self.continues(o, s) for o in others)

    def spans_clash(self, a: Identity, b: Identity, a_members: list[TrackletSummary]) -> bool:
        """Would ``b``'s final tracklets overlap in time, in one camera, ``a``'s final ones or its live
        ``a_members``? (One camera never sees one identity twice at once.)"""
        for camera, spans in b.spans.items():
            if any(overlap(f1, l1, f2, l2) for f1, l1 in spans for f2, l2 in a.spans.get(camera, ())):
                return True
            if any(
                overlap(f, last, o.first_seen, o.last_seen)
                for f, last in spans
                for o in a_members
                if o.camera == camera
            ):
                return True
        return False

    def conflict(self, s: TrackletSummary, o: TrackletSummary) -> bool:
        """The two tracklets cannot be one person: one camera saw both at once (beyond a tracker
        hand-over), two cameras a transition apart saw them too close in time, or they stood far
        apart on the floor at the same time."""
        if s.camera == o.camera and overlap(o.first_seen, o.last_seen, s.first_seen, s.last_seen):
            return not (self.continues(s, o) or self.continues(o, s))
        if self.too_soon(o.camera, o.first_seen, o.last_seen, s):
            return True
        if s.floor is None or o.floor is None or not len(s.floor) or not len(o.floor):
            return False
        return floor_evidence(s.floor, o.floor, self.cfg.floor)[0]
