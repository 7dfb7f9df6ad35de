"""A door: the image region where people leave a camera towards another (or come in from it),
from the foot points of the sightings that did. The convex hull of the points that are not
outliers, grown by half a body height (a detector picks people up a little before or after the
threshold), as the polygon ``matching.transitions`` takes."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

MIN_DOOR_POINTS = 5  # fewer foot points draw no door: the transition is then a time window alone
OUTLIER_MADS = 3.0  # points further than this many median deviations from the median are dropped


def door(points: np.ndarray, body_height_px: float) -> Optional[np.ndarray]:
    """The door polygon [N, 2] (pixels) of foot points [M, 2], or None with too few points."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) < MIN_DOOR_POINTS:
        return None
    centre = np.median(points, 0)
    dist = np.linalg.norm(points - centre, axis=1)
    mad = float(np.median(np.abs(dist - np.median(dist)))) + 1e-6
    inliers = points[dist <= np.median(dist) + OUTLIER_MADS * 1.4826 * mad]
    pad = 0.5 * max(body_height_px, 1.0)
    # grow: each point becomes a square of half a body height around it, then the hull of them all
    corners = np.array([[-pad, -pad], [pad, -pad], [pad, pad], [-pad, pad]])
    grown = (inliers[:, None, :] + corners[None]).reshape(-1, 2).astype(np.float32)
    hull = cv2.convexHull(grown).reshape(-1, 2)
    return np.round(hull.astype(np.float64), 1)
