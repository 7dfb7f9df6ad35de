"""Pictures of the floor: the grid drawn into a camera frame (to check a calibration by eye) and a
top-down map of where people went across cameras (one colour per global id)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from numpy.typing import ArrayLike

from edge.identity.geometry import Homography

log = logging.getLogger(__name__)

MAX_TRACKS = 5000  # tracklets kept for the run's map


def id_colour(key: int) -> tuple[int, int, int]:
    """A stable BGR colour for a (non-negative) id."""
    rng = np.random.default_rng(abs(int(key)))
    blue, green, red = (int(c) for c in rng.integers(60, 255, 3))
    return blue, green, red


def visible_floor(h: Homography, width: int, height: int, top: float = 0.3) -> Optional[np.ndarray]:
    """Floor polygon [4, 2] seen by the image's lower part (rows below ``top`` of the height)."""
    corners = np.array([[0, height], [width, height], [width, top * height], [0, top * height]], float)
    q = np.c_[corners, np.ones(4)] @ h.H.T
    if (q[:, 2] <= 0).any():
        return None
    return q[:, :2] / q[:, 2:3]


def draw_floor_grid(
    image: np.ndarray,
    h: Homography,
    step_m: float = 1.0,
    extent: Optional[tuple[float, float, float, float]] = None,
    points: Optional[tuple[ArrayLike, ArrayLike]] = None,
) -> np.ndarray:
    """The floor grid every ``step_m`` metres drawn into ``image`` (BGR); labelled every 2 steps.
    ``points``: (image points, floor points) of a point-pair calibration, drawn as circles (clicked)
    and crosses (where the homography puts the floor points)."""
    canvas = image.copy()
    H, W = canvas.shape[:2]
    if extent is None:
        poly = visible_floor(h, W, H)
        if poly is None:
            raise ValueError(
                "the calibration maps no part of the image's lower half onto the floor: "
                "check its direction (image -> floor)"
            )
        (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
    else:
        x0, y0, x1, y1 = extent
    xs = np.arange(np.floor(x0 / step_m) * step_m, x1 + 1e-9, step_m)
    ys = np.arange(np.floor(y0 / step_m) * step_m, y1 + 1e-9, step_m)
    for x in xs:
        _polyline(canvas, h, np.c_[np.full(50, x), np.linspace(y0, y1, 50)], (0, 200, 255))
    for y in ys:
        _polyline(canvas, h, np.c_[np.linspace(x0, x1, 50), np.full(50, y)], (0, 255, 120))
    for x in xs[::2]:
        for y in ys[::2]:
            u, v = h.to_image(np.array([[x, y]]))[0]
            if 0 <= u < W and 0 <= v < H:
                cv2.putText(
                    canvas, f"{x:g},{y:g}", (int(u) + 2, int(v) - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1
                )
    if points is not None:
        img_pts, floor_pts = points
        for (u, v), (pu, pv) in zip(np.asarray(img_pts, float), h.to_image(np.asarray(floor_pts, float))):
            cv2.circle(canvas, (int(u), int(v)), 5, (0, 0, 255), 2)
            cv2.drawMarker(canvas, (int(pu), int(pv)), (255, 0, 255), cv2.MARKER_CROSS, 10, 2)
    return canvas


def _polyline(canvas: np.ndarray, h: Homography, floor_pts: np.ndarray, colour: tuple[int, int, int]) -> None:
    img = h.to_image(floor_pts)
    ok = np.isfinite(img).all(1) & (np.abs(img) < 1e5).all(1)
    if ok.sum() >= 2:
        cv2.polylines(canvas, [img[ok].astype(np.int32)], False, colour, 1, cv2.LINE_AA)


class FloorMap:
    """Collects final tracklets' floor tracks during a run and draws them top-down at the end."""

    def __init__(self, path: str | Path, cameras: dict[str, tuple[Homography, int, int]]):
        self.path = Path(path)
        self.cameras = cameras  # camera id -> (homography, image width, image height)
        self.tracks: list[tuple[int, str, np.ndarray]] = []  # (global id, camera, floor points [N, 2])

    def add(self, global_id: int, camera: str, points: np.ndarray) -> None:
        if len(self.tracks) < MAX_TRACKS and len(points):
            self.tracks.append((global_id, camera, np.asarray(points, float)[::2]))

    def write(self) -> Optional[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
        for cam, (h, w, hh) in self.cameras.items():
            poly = visible_floor(h, w, hh)
            if poly is not None:
                ax.fill(poly[:, 0], poly[:, 1], alpha=0.08)
                ax.plot(*np.r_[poly, poly[:1]].T, lw=0.8, color="grey")
                x, y = poly[:2].mean(0)
                ax.text(x, y, cam, fontsize=8, color="grey", ha="center", va="top")
        for gid, _camera, pts in self.tracks:
            b, g, r = id_colour(gid)
            ax.plot(pts[:, 0], pts[:, 1], lw=1.2, color=(r / 255, g / 255, b / 255))
            ax.text(pts[-1, 0], pts[-1, 1], str(gid), fontsize=6)
        ax.set_aspect("equal")
        ax.set_xlabel("floor x (m)")
        ax.set_ylabel("floor y (m)")
        ax.set_title(f"where people went: {len({t[0] for t in self.tracks})} global ids, {len(self.tracks)} tracklets")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path)
        plt.close(fig)
        log.info("floor map: %s", self.path)
        return self.path
