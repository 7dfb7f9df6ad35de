"""Per-camera multi-object tracking: a tracker library behind one seam, our ids on top.

The motion tracker is ByteTrack from Roboflow's ``trackers`` (:mod:`edge.runtime.bytetrack`, no
PyTorch) or one of Ultralytics' (:mod:`edge.runtime.ultralytics_tracking`, the ``[ultralytics]``
extra); ``tracker.kind`` chooses. We translate the library's ids into per-camera local ids from an
allocator this object owns: no camera can reset or reuse another camera's ids, whatever the
library does with its counters, and a track the runtime found swapped gets a new id.
"""

from __future__ import annotations

import itertools
from typing import Optional, Protocol

import numpy as np

from edge.runtime.config import ULTRALYTICS_TRACKERS, TrackerConfig
from edge.runtime.types import Detections, Track


class MotionTracker(Protocol):
    """What a tracker library gives the runtime."""

    lost_s: float

    def update(
        self,
        dets: Detections,
        image: Optional[np.ndarray] = None,
        feats: Optional[np.ndarray] = None,
        timestamp: Optional[float] = None,
    ) -> np.ndarray:
        """Rows ``[x1, y1, x2, y2, their_id, score, det_index]`` of this frame's confirmed tracks."""
        ...

    def live_boxes(self) -> Detections:
        """Every box followed in this frame, confirmed or not: what :mod:`edge.runtime.coasting`
        carries to a frame the detector skips."""
        ...


def build_motion_tracker(cfg: TrackerConfig, frame_rate: float) -> MotionTracker:
    if cfg.kind in ULTRALYTICS_TRACKERS:
        from edge.runtime.ultralytics_tracking import UltralyticsTracker

        return UltralyticsTracker(cfg, frame_rate)
    from edge.runtime.bytetrack import RoboflowByteTrack

    return RoboflowByteTrack(cfg, frame_rate)


class CameraTracker:
    """One camera's tracker. ``update`` returns the confirmed tracks of this frame."""

    def __init__(self, camera_id: str, cfg: TrackerConfig, frame_rate: float = 30.0):
        self.camera_id = camera_id
        self.motion = build_motion_tracker(cfg, frame_rate)
        self.lost_s = self.motion.lost_s
        self._ids: dict[int, int] = {}
        self._next = itertools.count(1)

    def forget(self, local_id: int) -> None:
        """Drop the id translation of an ended track (keeps memory flat on long runs)."""
        for theirs in [k for k, v in self._ids.items() if v == local_id]:
            del self._ids[theirs]

    def split(self, local_id: int) -> int:
        """Give the track now called ``local_id`` a new local id from its next frame on (the tracker
        swapped people: what it follows from now on is another tracklet)."""
        new = next(self._next)
        for theirs in [k for k, v in self._ids.items() if v == local_id]:
            self._ids[theirs] = new
        return new

    def live_boxes(self) -> Detections:
        return self.motion.live_boxes()

    def update(
        self,
        dets: Detections,
        image: Optional[np.ndarray] = None,
        feats: Optional[np.ndarray] = None,
        timestamp: Optional[float] = None,
    ) -> list[Track]:
        tracks = []
        for row in self.motion.update(dets, image, feats, timestamp):
            theirs = int(row[4])
            local = self._ids.get(theirs)
            if local is None:
                local = self._ids[theirs] = next(self._next)
            tracks.append(Track(self.camera_id, local, row[:4].astype(np.float32), float(row[5]), int(row[6])))
        return tracks
