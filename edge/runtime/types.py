"""Plain data passed between the edge stages (numpy inside, no behaviour beyond views)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    """One captured image (BGR uint8 [H, W, 3]) with its camera, index and times.

    ``timestamp`` is the scene clock (Unix seconds): capture time for live streams, and for files
    and synthetic cameras the run's start plus the frame's position in the media, so every rule
    that reasons about time (identity revisions, walking speed) sees the scene's own time however
    fast the pipeline runs. ``wall_ts`` is when it was read, for latency figures.
    """

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray
    decode_s: float = 0.0  # time spent reading/decoding/resizing it
    wall_ts: float = field(default_factory=time.time)


@dataclass
class Detections:
    """Person boxes of one frame, shaped the way Ultralytics trackers read detections.

    ``xyxy`` float32 [N, 4] in pixels, ``conf`` float32 [N]; ``xywh`` (centre, size), ``cls``,
    ``len()`` and boolean/integer indexing are what ``BYTETracker.update`` uses.
    """

    xyxy: np.ndarray
    conf: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> Detections:
        return Detections(self.xyxy[index].reshape(-1, 4), np.atleast_1d(self.conf[index]))

    @property
    def xywh(self) -> np.ndarray:
        x0, y0, x1, y1 = self.xyxy.T
        return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1).astype(np.float32)

    @property
    def cls(self) -> np.ndarray:
        return np.zeros(len(self), np.float32)


@dataclass
class Track:
    """A tracker output row for one camera: our per-camera ``local_id``, box and score."""

    camera_id: str
    local_id: int
    xyxy: np.ndarray
    conf: float
    det_index: int = -1
