"""Ultralytics' trackers (ByteTrack, BoT-SORT) behind the runtime's tracker seam.

The ``[ultralytics]`` extra: Ultralytics brings PyTorch, so the torch-free edge install tracks
with :mod:`edge.runtime.bytetrack` instead. BoT-SORT with camera-motion compensation and our
ReID embeddings as its appearance term lives here.

Ultralytics' trackers count in calls: they predict one Kalman step per ``update`` and keep a lost
track for a number of calls. When the box skips frames, each update first steps the motion model
over the frames nobody processed, and the lost-track buffer in calls is re-derived from the
measured interval between updates, so ``lost_s`` means seconds of media time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge.runtime.config import TrackerConfig
from edge.runtime.types import Detections


def tracker_args(cfg: TrackerConfig):
    """The tracker's namespace: its yaml (one's own or Ultralytics' default), the typed thresholds
    (with a yaml of one's own, only those the camera file sets), then ``overrides``."""
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    kind = "botsort" if cfg.kind == "botsort" else "bytetrack"
    path = cfg.config or check_yaml(f"{kind}.yaml")
    data = YAML.load(Path(path))
    unknown = set(cfg.overrides) - set(data)
    if unknown:
        raise ValueError(
            f"tracker.overrides: unknown key(s) {sorted(unknown)} for {Path(path).name}; known: {sorted(data)}"
        )
    data.update(cfg.yaml_thresholds())
    data.update(cfg.overrides)
    data["tracker_type"] = kind
    if kind == "botsort":
        data["with_reid"] = cfg.reid_features
        data["model"] = "auto"  # 'auto' = features come from the caller (our ReID embeddings)
        data.setdefault("gmc_method", "none")
    return IterableSimpleNamespace(**data)


class UltralyticsTracker:
    """One camera's Ultralytics tracker. ``update`` returns rows ``[x1, y1, x2, y2, id, score,
    det_index]`` of the confirmed tracks of this frame."""

    MAX_GAP_STEPS = 30  # a longer gap (a camera down) is not extrapolated: the track is lost anyway

    def __init__(self, cfg: TrackerConfig, frame_rate: float):
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker

        self.args = tracker_args(cfg)
        # Any: Ultralytics releases differ (the frame rate as an argument or in args; max_time_lost)
        cls: Any = BOTSORT if cfg.kind == "botsort" else BYTETracker
        self.tracker: Any
        try:
            self.tracker = cls(self.args, frame_rate=int(round(frame_rate)))
        except TypeError:  # newer releases take the frame rate from args
            self.tracker = cls(self.args)
        self.uses_features = cfg.kind == "botsort" and cfg.reid_features
        self.lost_s = float(cfg.lost_s)
        self._interval = 1.0 / max(frame_rate, 1e-6)
        self._frame_s = 1.0 / max(frame_rate, 1e-6)  # the camera's own frame interval: one Kalman step
        self._last_ts: Optional[float] = None
        self._set_buffer()

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

    def update(
        self,
        dets: Detections,
        image: Optional[np.ndarray] = None,
        feats: Optional[np.ndarray] = None,
        timestamp: Optional[float] = None,
    ) -> np.ndarray:
        self._predict_over_gap(self._steps_since(timestamp))
        self._observe(timestamp)
        rows = np.asarray(self.tracker.update(dets, image, feats=feats if self.uses_features else None))
        rows = rows.reshape(-1, 8)
        return rows[:, [0, 1, 2, 3, 4, 5, 7]]  # drop the class column

    def live_boxes(self) -> Detections:
        """Every box the tracker follows now, confirmed or not (a new track confirms on its second
        frame)."""
        tracks = list(self.tracker.tracked_stracks)
        if not tracks:
            return Detections.empty()
        return Detections(
            np.array([t.xyxy for t in tracks], np.float32).reshape(-1, 4),
            np.array([t.score for t in tracks], np.float32),
        )
