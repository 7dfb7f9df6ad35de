"""Overlapping views without a floor plan: a shared ground plane learned from the people both
cameras see at once.

1. **Camera to camera.** The foot points of confidently matched people seen at the same time in
   two overlapping cameras (``evidence.py``'s overlapping sightings, positions from the tracklet
   log) give the image-to-image homography of their common floor (``cv2.findHomography`` with
   RANSAC).
2. **A ground plane for the reference camera.** Standing people are their own ruler: in a camera
   with no roll, a person of height H whose feet are at image row v is h = (H / camera height) *
   (v - horizon) pixels tall, so the line through (foot row, box height) of every box gives the
   horizon and the camera height in person heights, and with them lateral positions in metres
   (assuming people 1.7 m tall). Depth also needs the focal length, taken from a 60 degree
   horizontal field of view: distances along the view may be off by that guess.
3. The reference camera's homography is that plane's; every other camera of the group maps into
   the reference image first. Written as ``calibration`` entries, the floor fusion of the engine
   (same place at the same time, walking speed) works on them unchanged.

Only one group of overlapping cameras gets a plane (the largest): planes of two groups are not
related, and the engine compares every floor track with every other.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional

import cv2
import numpy as np

from edge.identity.records import Key
from edge.topology.evidence import Sighting

PERSON_HEIGHT_M = 1.7
ASSUMED_HFOV_DEG = 60.0
MIN_POINTS = 12  # same-time foot point pairs before a camera-to-camera mapping is trusted
RANSAC_PX = 8.0
MAX_DT_S = 0.06  # samples of two cameras this close in time are the same instant


def same_time_points(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foot points (x, y) of tracks ``a`` and ``b`` (``[N, 4]`` rows of time, x, y, height) at the
    instants both were seen (b interpolated to a's times within ``MAX_DT_S`` of a sample of b)."""
    if not len(a) or not len(b):
        return np.zeros((0, 2)), np.zeros((0, 2))
    near = np.abs(a[:, :1] - b[None, :, 0]).min(1) <= MAX_DT_S
    t = a[near, 0]
    bx, by = np.interp(t, b[:, 0], b[:, 1]), np.interp(t, b[:, 0], b[:, 2])
    return a[near, 1:3], np.column_stack([bx, by])


def view_mapping(src: np.ndarray, dst: np.ndarray) -> Optional[np.ndarray]:
    """The homography taking ``src`` image points to ``dst`` ones, or None with too few inliers."""
    if len(src) < MIN_POINTS:
        return None
    H, inliers = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), cv2.RANSAC, RANSAC_PX)
    if H is None or inliers is None or int(inliers.sum()) < max(MIN_POINTS, len(src) // 2):
        return None
    return H / H[2, 2]


def ground_plane(samples: np.ndarray, width: Optional[float] = None) -> Optional[np.ndarray]:
    """Image -> approximate floor (metres) homography of one camera from its people's boxes
    (``[N, 4]`` rows of time, foot x, foot y, box height; see the module docstring), or None when
    box height does not grow towards the bottom of the image."""
    if len(samples) < MIN_POINTS:
        return None
    v, h = samples[:, 2], samples[:, 3]
    slope, intercept = np.polyfit(v, h, 1)
    if slope <= 0:
        return None
    horizon = -intercept / slope
    k = PERSON_HEIGHT_M / slope  # camera height (m) = H / slope, in H-units of the image rows
    cx = width / 2.0 if width else float(np.median(samples[:, 1]))
    f = cx / math.tan(math.radians(ASSUMED_HFOV_DEG / 2.0))
    G = np.array([[k, 0.0, -k * cx], [0.0, 0.0, f * k], [0.0, 1.0, -horizon]])
    return G / G[2, 2] if abs(G[2, 2]) > 1e-12 else G


def shared_plane(
    found: list[Sighting],
    overlaps: dict[tuple[str, str], int],
    tracks: dict[Key, np.ndarray],
    widths: Optional[dict[str, float]] = None,
) -> dict[str, np.ndarray]:
    """Each camera of the largest group of overlapping cameras -> its homography onto one shared,
    approximately metric floor (empty when no group can be mapped)."""
    group = _largest_group(overlaps)
    if not group:
        return {}
    pairs: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for s in found:
        if s.overlapping and s.src in group and s.dst in group:
            a, b = tracks.get(s.keys[0], np.zeros((0, 4))), tracks.get(s.keys[1], np.zeros((0, 4)))
            pa, pb = same_time_points(a, b)
            pairs[(s.src, s.dst)].append((pa, pb))
    reference = max(group, key=lambda c: sum(len(t) for k, t in tracks.items() if k[0] == c))
    plane = ground_plane(np.vstack([t for k, t in tracks.items() if k[0] == reference] or [np.zeros((0, 4))]),
                         (widths or {}).get(reference))  # fmt: skip
    if plane is None:
        return {}
    out = {reference: plane}
    for cam in sorted(group - {reference}):
        to_ref = _mapping(pairs, cam, reference)
        if to_ref is not None:
            out[cam] = plane @ to_ref
    return {c: H / H[2, 2] for c, H in out.items()} if len(out) > 1 else {}


def _mapping(pairs: dict, cam: str, reference: str) -> Optional[np.ndarray]:
    """Image of ``cam`` -> image of ``reference`` from their same-time foot points (both directions' sightings)."""
    src, dst = [], []
    for pa, pb in pairs.get((reference, cam), []):  # reference first: pa in reference, pb in cam
        src.append(pb)
        dst.append(pa)
    for pa, pb in pairs.get((cam, reference), []):
        src.append(pa)
        dst.append(pb)
    if not src:
        return None
    return view_mapping(np.vstack(src), np.vstack(dst))


def _largest_group(overlaps: dict[tuple[str, str], int]) -> set[str]:
    groups: list[set[str]] = []
    for a, b in overlaps:
        joined = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*joined)
        groups = [g for g in groups if g not in joined] + [merged]
    return max(groups, key=lambda g: (len(g), sorted(g)), default=set())
