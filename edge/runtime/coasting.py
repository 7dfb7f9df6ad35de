"""Carrying tracked boxes between detections with sparse optical flow.

When the box can't afford the detector on every frame, the governor runs it on every k-th frame
and the tracker still needs to see every frame: a track fed only every k-th frame moves k times
as far between updates, its Kalman filter has no velocity yet when it is new, and ByteTrack's IoU
gate loses it (on the demo, a third of the frames halved the rows a camera output). So on the
frames in between, each tracked box is moved by the median optical flow of a grid of points
inside it (Lucas-Kanade, OpenCV's pyramidal implementation, with a forward-backward check), and
scaled by the median change of the points' spread, as the Median Flow tracker does. The moved
boxes go to the tracker as that frame's detections, so the tracker, the tracklets and the outputs
see every frame, and the detector's next boxes land next to the tracks they belong to.

A box whose points can't be followed (occluded, left the image, too few points agree) is not
carried: its track goes lost for that frame, as a missed detection would.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LK_PARAMS = dict(winSize=(15, 15), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _lucas_kanade(prev: np.ndarray, cur: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade: where ``points`` [N, 1, 2] of ``prev`` are in ``cur``, and which were found."""
    # OpenCV's stubs lack the nextPts=None (allocate the output) its API documents and this relies on
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, cur, points, None, **LK_PARAMS)  # type: ignore[call-overload]
    return nxt, status


@dataclass
class FlowCarrier:
    """Moves boxes from one grey frame to the next (see the module docstring).

    ``grid`` points per side are placed inside each box's central area (``inset`` of its width and
    height left out at each side: the edges hold background). A point is kept when following it
    back lands within ``fb_max_px`` of where it started; a box needs ``min_points`` of them.
    """

    grid: int = 5
    inset: float = 0.15
    fb_max_px: float = 1.0
    min_points: int = 4

    def carry(self, prev: np.ndarray, cur: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [N, 4] (xyxy) in ``prev`` -> their boxes in ``cur`` and which ones were followed."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        moved, ok = boxes.copy(), np.zeros(len(boxes), bool)
        if not len(boxes):
            return moved, ok
        points = np.concatenate([self._grid(b) for b in boxes]).reshape(-1, 1, 2)
        nxt, st = _lucas_kanade(prev, cur, points)
        back, st_back = _lucas_kanade(cur, prev, nxt)
        good = (
            (st.ravel() == 1)
            & (st_back.ravel() == 1)
            & (np.linalg.norm((back - points).reshape(-1, 2), axis=1) <= self.fb_max_px)
        )
        per_box = self.grid * self.grid
        p0, p1 = points.reshape(-1, 2), nxt.reshape(-1, 2)
        h, w = cur.shape[:2]
        for i, box in enumerate(boxes):
            sel = slice(i * per_box, (i + 1) * per_box)
            g = good[sel]
            if g.sum() < self.min_points:
                continue
            moved[i] = self._move(box, p0[sel][g], p1[sel][g])
            ok[i] = moved[i, 2] > 0 and moved[i, 3] > 0 and moved[i, 0] < w and moved[i, 1] < h
        return moved, ok

    def _grid(self, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box
        dx, dy = (x1 - x0) * self.inset, (y1 - y0) * self.inset
        xs = np.linspace(x0 + dx, x1 - dx, self.grid, dtype=np.float32)
        ys = np.linspace(y0 + dy, y1 - dy, self.grid, dtype=np.float32)
        return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)

    @staticmethod
    def _move(box: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        """Median shift, and median ratio of pairwise distances as the scale (Median Flow)."""
        shift = np.median(p1 - p0, axis=0)
        scale = 1.0
        if len(p0) >= 2:
            i, j = np.triu_indices(len(p0), 1)
            d0 = np.linalg.norm(p0[i] - p0[j], axis=1)
            d1 = np.linalg.norm(p1[i] - p1[j], axis=1)
            keep = d0 > 1e-3
            if keep.any():
                scale = float(np.clip(np.median(d1[keep] / d0[keep]), 0.8, 1.25))
        cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
        hw, hh = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
        return np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32)
