"""ByteTrack without PyTorch: Roboflow's ``trackers`` library behind the runtime's tracker seam.

``trackers`` is the maintained successor of supervision's ByteTrack (Apache-2.0, numpy + scipy).
It is given each frame's media timestamp, so its Kalman filter steps over the time that passed
(frames the box could not process included) and a lost track is kept for seconds, not calls:
what :mod:`edge.runtime.ultralytics_tracking` has to add by hand to Ultralytics' trackers.

Differences from Ultralytics' ByteTrack, by design of the library: one IoU threshold for every
association stage, IoU not weighted by the detection score, and the tracked box reported is the
detection's own box rather than the Kalman estimate.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge.runtime.config import TrackerConfig
from edge.runtime.types import Detections

LIBRARY_BUFFER_FPS = 30.0  # trackers counts ``lost_track_buffer`` in frames at 30 fps


class RoboflowByteTrack:
    """One camera's ByteTrack. ``update`` returns rows ``[x1, y1, x2, y2, id, score, det_index]``
    of the confirmed tracks matched in this frame."""

    def __init__(self, cfg: TrackerConfig, frame_rate: float):
        from trackers import ByteTrackTracker

        self.lost_s = float(cfg.lost_s)
        self.low_score = cfg.low_score
        self.tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(self.lost_s * LIBRARY_BUFFER_FPS)),
            frame_rate=frame_rate,
            track_activation_threshold=cfg.new_track_score,
            minimum_consecutive_frames=2,
            minimum_iou_threshold=cfg.min_iou,
            high_conf_det_threshold=cfg.high_score,
        )
        self.tracker.maximum_time_without_update = self.lost_s  # exactly, not rounded to 1/30 s
        self._last = Detections.empty()
        self._frame_s = 1.0 / max(frame_rate, 1e-6)
        self._offset = 0.0  # added to the camera's clock after it stepped back
        self._last_ts: Optional[float] = None

    def _media_time(self, timestamp: Optional[float]) -> Optional[float]:
        """The timestamp the library sees: strictly increasing. A live source stamps frames with the
        wall clock, which can step back (an NTP correction, a Jetson without a real-time clock); the
        library would then skip every update, with a warning each, until the clock caught up. After
        a step back the time goes on one frame later than the last, and from there at the clock's pace."""
        if timestamp is None:
            return None
        t = timestamp + self._offset
        if self._last_ts is not None and t <= self._last_ts:
            self._offset += self._last_ts + self._frame_s - t
            t = timestamp + self._offset
        self._last_ts = t
        return t

    def update(
        self,
        dets: Detections,
        image: Optional[np.ndarray] = None,
        feats: Optional[np.ndarray] = None,
        timestamp: Optional[float] = None,
    ) -> np.ndarray:
        import supervision as sv

        keep = np.flatnonzero(dets.conf >= self.low_score)
        self._last = Detections(dets.xyxy[keep], dets.conf[keep])
        given = sv.Detections(
            xyxy=dets.xyxy[keep].astype(np.float32).reshape(-1, 4),
            confidence=dets.conf[keep].astype(np.float32),
            data={"index": keep},  # the rows of ``dets``: the library reorders its output
        )
        out = self.tracker.update(given, timestamp=self._media_time(timestamp))
        ids = np.asarray(out.tracker_id if out.tracker_id is not None else [], np.int64)
        confirmed = np.flatnonzero(ids >= 0)
        if not len(confirmed):
            return np.zeros((0, 7), np.float64)
        scores = np.asarray(out.confidence, np.float64)
        index = np.asarray(out.data["index"], np.int64)
        return np.column_stack([out.xyxy[confirmed], ids[confirmed], scores[confirmed], index[confirmed]]).astype(
            np.float64
        )

    def live_boxes(self) -> Detections:
        """Tracks updated in this frame, confirmed or not, at their filtered box, with the score of
        the detection that updated them (the one it overlaps most)."""
        live = [t for t in self.tracker.tracks if t.time_since_update == 0]
        if not live or not len(self._last):
            return Detections.empty()
        boxes = np.array([t.get_state_bbox() for t in live], np.float32).reshape(-1, 4)
        from trackers.utils.iou import IoU  # the library's own overlap, as its association uses

        scores = self._last.conf[IoU().compute(boxes, self._last.xyxy).argmax(1)]
        return Detections(boxes, scores.astype(np.float32))
