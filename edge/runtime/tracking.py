"""Per-camera multi-object tracking with the Ultralytics trackers (ByteTrack, BoT-SORT).

We feed their ``update`` with our own detections and translate their ids into per-camera local
ids from an allocator this object owns: no camera can reset or reuse another camera's ids,
whatever the Ultralytics version does with its class-level counters.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge.runtime.config import TrackerConfig
from edge.runtime.types import Detections, Track


def tracker_args(cfg: TrackerConfig):
    """The tracker's namespace: its yaml (ours or Ultralytics' default) with overrides applied."""
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    path = cfg.config or check_yaml(f"{cfg.kind}.yaml")
    data = YAML.load(Path(path))
    unknown = set(cfg.overrides) - set(data)
    if unknown:
        raise ValueError(
            f"tracker.overrides: unknown key(s) {sorted(unknown)} for {Path(path).name}; known: {sorted(data)}"
        )
    data.update(cfg.overrides)
    data["tracker_type"] = cfg.kind
    if cfg.kind == "botsort":
        data["with_reid"] = cfg.reid_features
        data["model"] = "auto"  # 'auto' = features come from the caller (our ReID embeddings)
        data.setdefault("gmc_method", "none")
    return IterableSimpleNamespace(**data)


class CameraTracker:
    """One camera's tracker. ``update`` returns the confirmed tracks of this frame."""

    MAX_GAP_STEPS = 30  # a longer gap (a camera down) is not extrapolated: the track is lost anyway

    def __init__(self, camera_id: str, cfg: TrackerConfig, frame_rate: float = 30.0):
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker

        self.camera_id = camera_id
        self.args = tracker_args(cfg)
        # Any: Ultralytics releases differ (the frame rate as an argument or in args; max_time_lost)
        cls: Any = BOTSORT if cfg.kind == "botsort" else BYTETracker
        self.tracker: Any
        try:
            self.tracker = cls(self.args, frame_rate=int(round(frame_rate)))
        except TypeError:  # newer releases take the frame rate from args
            self.tracker = cls(self.args)
        self.uses_features = cfg.kind == "botsort" and cfg.reid_features
        # a lost track is kept for seconds of media time, not tracker calls: when frames are
        # skipped, the buffer in calls is re-derived from the measured interval between updates
        self.lost_s = float(cfg.lost_s) if cfg.lost_s else int(self.args.track_buffer) / max(frame_rate, 1e-6)
        self._interval = 1.0 / max(frame_rate, 1e-6)
        self._frame_s = 1.0 / max(frame_rate, 1e-6)  # the camera's own frame interval: one Kalman step
        self._last_ts: Optional[float] = None
        self._set_buffer()
        self._ids: dict[int, int] = {}
        self._next = itertools.count(1)

    def _set_buffer(self) -> None:
        self.tracker.max_frames_lost = self.tracker.max_time_lost = max(1, round(self.lost_s / self._interval))

    def _steps_since(self, timestamp: Optional[float]) -> int:
        """Camera frames since the last update (1 when every frame is processed)."""
        if timestamp is None or self._last_ts is None or timestamp <= self._last_ts:
            return 1
        return max(1, round((timestamp - self._last_ts) / self._frame_s))

    def _predict_over_gap(self, steps: int) -> None:
        """The frames nobody processed still happened: the motion model steps over each of them, so
        its velocity stays per camera frame and a box is looked for where the person is now (the
        tracker itself predicts one step per update, whatever the time since the last one)."""
        pool = [*self.tracker.tracked_stracks, *self.tracker.lost_stracks]
        for _ in range(min(steps, self.MAX_GAP_STEPS) - 1):
            self.tracker.multi_predict(pool)

    def _observe(self, timestamp: Optional[float]) -> None:
        """A running mean of the media time between updates (the camera's processed rate)."""
        if timestamp is not None and self._last_ts is not None and timestamp > self._last_ts:
            self._interval = 0.9 * self._interval + 0.1 * (timestamp - self._last_ts)
            self._set_buffer()
        if timestamp is not None:
            self._last_ts = timestamp

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
        """Every box the tracker follows now, confirmed or not (a new track confirms on its second
        frame): what :mod:`edge.runtime.coasting` carries to a frame the detector skips."""
        tracks = list(self.tracker.tracked_stracks)
        if not tracks:
            return Detections.empty()
        return Detections(
            np.array([t.xyxy for t in tracks], np.float32).reshape(-1, 4),
            np.array([t.score for t in tracks], np.float32),
        )

    def update(
        self,
        dets: Detections,
        image: Optional[np.ndarray] = None,
        feats: Optional[np.ndarray] = None,
        timestamp: Optional[float] = None,
    ) -> list[Track]:
        self._predict_over_gap(self._steps_since(timestamp))
        self._observe(timestamp)
        rows = self.tracker.update(dets, image, feats=feats if self.uses_features else None)
        tracks = []
        for row in np.asarray(rows).reshape(-1, 8):
            theirs = int(row[4])
            local = self._ids.get(theirs)
            if local is None:
                local = self._ids[theirs] = next(self._next)
            tracks.append(Track(self.camera_id, local, row[:4].astype(np.float32), float(row[5]), int(row[7])))
        return tracks
