"""The camera topology: where people go from one camera to another, how long it takes, and
through which doors.

A site declares transitions (``matching.transitions``): people seen last in camera ``from``
appear in camera ``to`` between ``min_s`` and ``max_s`` later. Optionally a transition names its
doors: ``exit``, the image region of ``from`` where people leave towards ``to``, and ``entry``,
the region of ``to`` where they come in (polygons in pixels, as multi-camera tracking systems
draw entry/exit zones). Doors make a transition specific: somebody who left camera A through its
street side, or a tracklet that starts in the middle of camera B, is most likely not a walk down
the corridor, so the time window alone no longer favours a look-alike for that identity. The time
window is a rule; the doors are evidence (the engine's ``transition_bonus`` for and against),
since a detector can miss somebody at the door and pick them up a few metres further.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np


@dataclass(frozen=True)
class Transition:
    """One declared way from a camera to another: a time window and, optionally, its doors."""

    min_s: float
    max_s: float
    exit: Optional[np.ndarray] = None  # [N, 2] polygon in the from-camera's image (pixels)
    entry: Optional[np.ndarray] = None  # [N, 2] polygon in the to-camera's image (pixels)

    @classmethod
    def build(
        cls, min_s: float, max_s: float, exit: Optional[Sequence] = None, entry: Optional[Sequence] = None
    ) -> Transition:
        polygon = lambda p: None if p is None else np.asarray(p, np.float32).reshape(-1, 2)  # noqa: E731
        return cls(float(min_s), float(max_s), polygon(exit), polygon(entry))

    def within(self, gap_s: float) -> bool:
        """Is ``gap_s`` (from the last sighting in ``from`` to the first in ``to``) a possible walk?"""
        return self.min_s <= gap_s <= self.max_s

    def through_doors(self, left_at: Optional[np.ndarray], came_in_at: np.ndarray) -> bool:
        """Did somebody who left ``from`` at image point ``left_at`` (None: not known) and came into
        ``to`` at image point ``came_in_at`` use this transition's doors (True without doors)?"""
        if self.exit is not None and left_at is not None and not inside(self.exit, left_at):
            return False
        return self.entry is None or inside(self.entry, came_in_at)


def inside(polygon: np.ndarray, point: np.ndarray) -> bool:
    """Is the image point in (or on the edge of) the polygon?"""
    return cv2.pointPolygonTest(polygon, (float(point[0]), float(point[1])), False) >= 0
