"""Result files: MOT Challenge rows per camera (local and global ids) and annotated videos.

``<mot_dir>/<camera>.txt`` has the tracker's local ids; ``<camera>.global.txt`` the same rows
with global ids. A tracklet's global rows wait until its identity is final (the identity engine's
revision window has passed, or the run ended) and are then written with it, so every row carries
the identity the run finally decided (what a user reads at the end, and what evaluation scores).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .tracklets import Tracklet
from .world.export import mot_row

MAX_PENDING_ROWS = 5000


class MotWriter:
    def __init__(self, folder: str | Path, camera_ids: list[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.local = {c: open(self.folder / f"{c}.txt", "w") for c in camera_ids}
        self.global_ = {c: open(self.folder / f"{c}.global.txt", "w") for c in camera_ids}

    def row(self, t: Tracklet, frame_index: int) -> None:
        """The local row now; the global row once the tracklet's identity is final (:meth:`flush`).
        Past ``MAX_PENDING_ROWS`` a long tracklet's oldest rows go out with its current id."""
        self.local[t.camera_id].write(mot_row(frame_index, t.local_id, t.xyxy, t.conf))
        t.pending_rows.append((frame_index, t.xyxy.copy(), t.conf))
        if len(t.pending_rows) > MAX_PENDING_ROWS:
            frame, xyxy, conf = t.pending_rows.pop(0)
            if t.global_id is not None:
                self.global_[t.camera_id].write(mot_row(frame, t.global_id, xyxy, conf))

    def flush(self, t: Tracklet) -> None:
        if t.global_id is None:
            return
        out = self.global_[t.camera_id]
        for frame_index, xyxy, conf in t.pending_rows:
            out.write(mot_row(frame_index, t.global_id, xyxy, conf))
        t.pending_rows.clear()

    def close(self) -> None:
        for f in (*self.local.values(), *self.global_.values()):
            f.close()


def _colour(key: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(key)
    return tuple(int(c) for c in rng.integers(60, 255, 3))


class AnnotatedVideo:
    """Boxes with ``local/global`` labels drawn on each camera's frames, one mp4 per camera."""

    def __init__(self, folder: str | Path, fps: float = 10.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.writers: dict[str, tuple[cv2.VideoWriter, tuple[int, int]]] = {}

    def write(self, camera_id: str, image: np.ndarray, tracklets: list[Tracklet]) -> None:
        canvas = image.copy()
        for t in tracklets:
            x0, y0, x1, y1 = (int(v) for v in t.xyxy)
            gid: Optional[int] = t.global_id
            colour = _colour(gid if gid is not None else -t.local_id)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
            label = f"{t.local_id}/{gid if gid is not None else '?'}"
            cv2.putText(canvas, label, (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
        if camera_id not in self.writers:
            h, w = canvas.shape[:2]
            path = str(self.folder / f"{camera_id}.mp4")
            self.writers[camera_id] = (cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h)), (w, h))
        writer, size = self.writers[camera_id]
        if (canvas.shape[1], canvas.shape[0]) != size:  # a stream that came back at another resolution
            canvas = cv2.resize(canvas, size)
        writer.write(canvas)

    def close(self) -> None:
        for writer, _ in self.writers.values():
            writer.release()
