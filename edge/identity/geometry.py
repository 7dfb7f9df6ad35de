"""The floor: camera calibration (image -> floor homography) and floor-track evidence.

A calibrated camera maps the foot point of a box (bottom centre) to a position on the floor in
metres. Two tracklets of one person agree on the floor: in overlapping views they stand at the
same place at the same time, and between views they cannot have walked faster than a person
walks. :func:`floor_evidence` turns two floor tracks into that evidence: forbidden (two people),
a bonus (same place, same time) or nothing to say.

A calibration is either a 3x3 matrix or >= 4 image/floor point pairs, solved with OpenCV's
``findHomography`` (RANSAC); :func:`solve_homography` checks it and reports the reprojection error.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import cv2
import numpy as np

log = logging.getLogger(__name__)

CLICK_ERROR_PX = 3.0  # how far off a person clicks a floor mark in an image


class CalibrationError(ValueError):
    """A homography that cannot map image points to the floor."""


@dataclass(frozen=True)
class Homography:
    """Image (pixels) -> floor (metres) mapping of one camera."""

    H: np.ndarray  # [3, 3]
    reprojection_error_m: float = 0.0  # mean floor error over the calibration points (0 for a given matrix)
    # how far off a floor position may be (metres) around the calibration points: the reprojection
    # error, or what CLICK_ERROR_PX of clicking error makes of the fit there (4 points fit exactly,
    # whatever their error); floor_error_at() says it for any image point
    floor_error_m: float = 0.0
    draws: Optional[np.ndarray] = field(
        default=None, repr=False, compare=False
    )  # [K, 3, 3] refits under clicking noise

    def to_floor(self, points: np.ndarray) -> np.ndarray:
        """Image points [N, 2] -> floor points [N, 2] (metres)."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ self.H.T
        return q[:, :2] / q[:, 2:3]

    def floor_error_at(self, points: np.ndarray) -> np.ndarray:
        """How far off the floor positions of image points [N, 2] may be (metres, [N]): the 90th
        percentile of how far the refits under clicking noise put them, at least the reprojection
        error. Far from the marks a fit of a few clicked points swings by metres: the floor rules
        then give those positions that much room. 0 for a given matrix."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        if self.draws is None or not len(p):
            return np.full(len(p), self.reprojection_error_m)
        q = np.c_[p, np.ones(len(p))]
        ref = self.to_floor(p)
        moved = np.einsum("kij,nj->kni", self.draws, q)
        moved = moved[..., :2] / moved[..., 2:3]
        spread = np.percentile(np.linalg.norm(moved - ref[None], axis=2), 90, axis=0)
        return np.maximum(spread, self.reprojection_error_m)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Floor points [N, 2] -> image points [N, 2]."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ np.linalg.inv(self.H).T
        return q[:, :2] / q[:, 2:3]


def check_matrix(matrix: Union[Sequence[Sequence[float]], np.ndarray], where: str) -> Homography:
    """A given 3x3 image -> floor matrix, refused when it cannot be inverted."""
    H = np.asarray(matrix, np.float64)
    if H.shape != (3, 3):
        raise CalibrationError(f"{where}: homography must be 3x3, got shape {list(H.shape)}")
    if not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12 * max(1.0, np.abs(H).max() ** 3):
        raise CalibrationError(f"{where}: homography is not invertible (determinant {np.linalg.det(H):.3g})")
    return Homography(H / H[2, 2] if abs(H[2, 2]) > 1e-12 else H)


def solve_homography(
    image_points: Sequence[Sequence[float]],
    floor_points: Sequence[Sequence[float]],
    where: str,
    ransac_m: float = 0.5,
    max_error_m: float = 1.0,
) -> Homography:
    """Image -> floor homography from >= 4 point pairs (OpenCV ``findHomography`` with RANSAC).

    Refused with one line naming ``where`` when there are fewer than 4 pairs, when the points are
    (nearly) collinear, when the mean reprojection error exceeds ``max_error_m``, or when clicking
    error alone would move the floor by more than that around the points (marks bunched together).
    """
    img = np.asarray(image_points, np.float64).reshape(-1, 2)
    flr = np.asarray(floor_points, np.float64).reshape(-1, 2)
    if len(img) != len(flr):
        raise CalibrationError(f"{where}: {len(img)} image points but {len(flr)} floor points")
    if len(img) < 4:
        raise CalibrationError(f"{where}: a homography needs at least 4 image/floor point pairs, got {len(img)}")
    for name, pts in (("image_points", img), ("floor_points", flr)):
        if _collinear(pts):
            raise CalibrationError(f"{where}: {name} are collinear; pick points that span an area of the floor")
    H, _ = cv2.findHomography(img, flr, cv2.RANSAC, ransac_m)
    if H is None:
        raise CalibrationError(f"{where}: OpenCV found no homography for these points")
    hom = check_matrix(H, where)
    error = float(np.linalg.norm(hom.to_floor(img) - flr, axis=1).mean())
    if error > max_error_m:
        raise CalibrationError(
            f"{where}: reprojection error {error:.2f} m is above {max_error_m} m: check the point pairs"
        )
    solved = Homography(hom.H, error, draws=clicking_draws(img, flr))
    outline = img.mean(0) + 1.5 * (img - img.mean(0))  # around the marks, where people walk too
    swing = float(solved.floor_error_at(outline).max())
    if swing > max_error_m:  # the floor rules (0.8 m same place, 2 m two people) could say nothing
        raise CalibrationError(
            f"{where}: {CLICK_ERROR_PX:g} px of clicking error moves the floor by {swing:.2f} m around these "
            f"points (above {max_error_m} m): spread the marks over the floor the camera sees"
        )
    return replace(solved, floor_error_m=swing)


def clicking_draws(image: np.ndarray, floor: np.ndarray, draws: int = 30) -> Optional[np.ndarray]:
    """The fit redone ``draws`` times with ``CLICK_ERROR_PX`` of noise on the clicked image points
    (seeded: the same points, the same answer): how the homography may swing, [K, 3, 3] (None
    when no refit succeeds)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(draws):
        H, _ = cv2.findHomography(image + rng.normal(scale=CLICK_ERROR_PX, size=image.shape), floor, 0)
        if H is not None and np.isfinite(H).all() and abs(H[2, 2]) > 1e-12:
            out.append(H / H[2, 2])
    return np.array(out).reshape(-1, 3, 3) if out else None


def _collinear(points: np.ndarray) -> bool:
    centred = points - points.mean(0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[-1] <= 1e-6 * max(s[0], 1e-12))


def foot_point(xyxy: np.ndarray) -> np.ndarray:
    """Bottom centre of an xyxy box: where the person stands in the image."""
    x0, _, x1, y1 = (float(v) for v in xyxy)
    return np.array([(x0 + x1) / 2.0, y1])


@dataclass
class FloorTrack:
    """Timed floor positions of one tracklet (the most recent ``maxlen`` samples)."""

    maxlen: int = 600
    times: deque = field(default_factory=deque)
    points: deque = field(default_factory=deque)
    errors: deque = field(default_factory=deque)  # how far off each position may be (Homography.floor_error_at)

    _arrays: Optional[tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False, compare=False)
    _errors: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    def add(self, t: float, xy: np.ndarray, error: float = 0.0) -> None:
        self.times.append(float(t))
        self.points.append((float(xy[0]), float(xy[1])))
        self.errors.append(float(error))
        while len(self.times) > self.maxlen:
            self.times.popleft()
            self.points.popleft()
            self.errors.popleft()
        self._arrays = None
        self._errors = None

    def error_array(self) -> np.ndarray:
        """The positions' errors [N] (metres), as :meth:`arrays` orders them."""
        if self._errors is None:
            self._errors = np.fromiter(self.errors, float, len(self.errors))
        return self._errors

    def __len__(self) -> int:
        return len(self.times)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(times [N], points [N, 2]), built once per new sample: the revision pass compares
        the same tracks many times."""
        if self._arrays is None:
            self._arrays = (
                np.fromiter(self.times, float, len(self.times)),
                np.array(self.points, float).reshape(-1, 2),
            )
        return self._arrays

    @property
    def first(self) -> tuple[float, np.ndarray]:
        return self.times[0], np.asarray(self.points[0])

    @property
    def last(self) -> tuple[float, np.ndarray]:
        return self.times[-1], np.asarray(self.points[-1])


@dataclass(frozen=True)
class FloorRules:
    """How floor tracks decide: same place within ``near_m``, two people beyond ``far_m`` at the same
    time; nobody walks faster than ``max_speed_mps`` (plus ``slack_m`` for foot-point noise)."""

    near_m: float = 0.8
    far_m: float = 2.0
    max_speed_mps: float = 3.0
    slack_m: float = 1.5
    min_common: int = 3  # samples at common times needed before a same-time comparison counts
    time_tolerance_s: float = 0.2


def floor_evidence(a: FloorTrack, b: FloorTrack, rules: FloorRules) -> tuple[bool, float]:
    """(forbidden, support in [-1, 1]) for "a and b are one person", from their floor tracks.

    Overlapping in time: the median distance at common times decides: <= near_m gives +1, beyond
    far_m forbids, in between it falls linearly from +1 to -1. Apart in time: a gap walked faster
    than ``max_speed_mps`` forbids; otherwise there is nothing to say (0). Every distance is less
    the two positions' calibration errors (``FloorTrack.errors``): one person seen through two
    calibrations clicked by hand stands up to their sum apart.
    """
    if not len(a) or not len(b):
        return False, 0.0
    ta, pa = a.arrays()
    tb, pb = b.arrays()
    lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
    if hi >= lo:  # seen at the same time
        common = (ta >= lo - rules.time_tolerance_s) & (ta <= hi + rules.time_tolerance_s)
        if common.sum() >= rules.min_common:
            t = ta[common]
            other = np.c_[np.interp(t, tb, pb[:, 0]), np.interp(t, tb, pb[:, 1])]
            room = a.error_array()[common] + np.interp(t, tb, b.error_array())
            d = float(np.median(np.linalg.norm(pa[common] - other, axis=1) - room))
            if d >= rules.far_m:
                return True, -1.0
            if d <= rules.near_m:
                return False, 1.0
            return False, float(1.0 - 2.0 * (d - rules.near_m) / (rules.far_m - rules.near_m))
        return False, 0.0
    first, second = (a, b) if ta[-1] < tb[0] else (b, a)
    (t_end, p_end), (t_start, p_start) = first.last, second.first
    gap = max(t_start - t_end, 1e-3)
    walked = float(np.linalg.norm(p_start - p_end))
    room = first.errors[-1] + second.errors[0]
    return walked > rules.max_speed_mps * gap + rules.slack_m + room, 0.0


def homography_from(calibration, where: str) -> Homography:
    """A :class:`Homography` from a camera's calibration entry (``homography`` or point pairs)."""
    if calibration.homography is not None:
        return check_matrix(calibration.homography, f"{where}.homography")
    return solve_homography(calibration.image_points, calibration.floor_points, f"{where}.image_points")
