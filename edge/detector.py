"""Person detection with Ultralytics YOLO: the frames of all cameras in one call."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from .config import DetectorConfig
from .types import Detections

log = logging.getLogger(__name__)


class PersonDetector:
    """Wraps ``ultralytics.YOLO`` for any format it loads (.pt, .onnx, .engine, OpenVINO folder)."""

    def __init__(self, weights: str, imgsz: int = 640, conf: float = 0.25, iou: float = 0.7, device: str = "cpu",
                 half: bool = False, classes: Sequence[int] = (0,), batch: bool = True):
        from ultralytics import YOLO

        self.model = YOLO(weights, task="detect")
        self.kwargs = dict(imgsz=imgsz, conf=conf, iou=iou, device=device, classes=list(classes), verbose=False)
        if half:  # newer Ultralytics warn on every call when half is passed at all
            self.kwargs["half"] = True
        self.batch = batch

    @classmethod
    def from_config(cls, cfg: DetectorConfig) -> "PersonDetector":
        return cls(cfg.weights, cfg.imgsz, cfg.conf, cfg.iou, cfg.device, cfg.half, cfg.classes, cfg.batch)

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """BGR images -> one :class:`Detections` per image."""
        if not images:
            return []
        if self.batch:
            results = self.model.predict(images, **self.kwargs)
        else:
            results = [self.model.predict(img, **self.kwargs)[0] for img in images]
        out = []
        for r in results:
            boxes = r.boxes.cpu().numpy()
            out.append(Detections(boxes.xyxy.astype(np.float32), boxes.conf.astype(np.float32)))
        return out
