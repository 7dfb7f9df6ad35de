"""A YOLO detector's image in and boxes out, with OpenCV and numpy only (no PyTorch).

What Ultralytics does around an exported YOLOv8/11 detection model, done the same way so the
boxes match its own predictions on the same file: the letterbox (aspect kept, centred, grey 114
padding, the side rounding of its ``LetterBox``), BGR -> RGB, /255, NCHW float32; then the raw
output ``[N, 4 + classes, anchors]`` (centre x, centre y, width, height, one score per class) is
decoded: the best class per anchor, the score threshold, the classes asked for, class-aware NMS
(OpenCV's ``NMSBoxesBatched``) and the boxes mapped back into the original image and clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
MAX_DETECTIONS = 300  # Ultralytics' max_det
MAX_NMS = 30000  # Ultralytics' cap on the boxes that enter NMS


@dataclass(frozen=True)
class Letterbox:
    """How one image was fitted into the network's input: scale per axis and padding."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    height: int  # the original image's
    width: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """``image`` (BGR uint8 HxWx3) resized with its aspect kept and padded to ``size`` (h, w)."""
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, Letterbox(new_w / w, new_h / h, left, top, h, w)


def to_input(images: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, list[Letterbox]]:
    """BGR images -> the network's float32 NCHW RGB batch in [0, 1], and each image's letterbox."""
    fitted = [letterbox(img, size) for img in images]
    batch = np.stack([f[0] for f in fitted])[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0, [f[1] for f in fitted]


def decode(
    raw: np.ndarray,
    box: Letterbox,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = (0,),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output ``[4 + classes, anchors]`` -> xyxy boxes (float32, original image
    pixels), scores and class ids, best score first, as Ultralytics' ``non_max_suppression``
    (best class only, class-aware) and ``scale_boxes`` give them."""
    scores_all = raw[4:].T  # anchors x classes
    cls = scores_all.argmax(1)
    score = scores_all[np.arange(len(cls)), cls]
    keep = score > conf
    if classes is not None:
        keep &= np.isin(cls, np.asarray(classes))
    xywh, score, cls = raw[:4, keep].T.astype(np.float32), score[keep].astype(np.float32), cls[keep]
    if len(score) > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        xywh, score, cls = xywh[top], score[top], cls[top]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    if len(score):
        rects = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        kept = cv2.dnn.NMSBoxesBatched(rects.tolist(), score.tolist(), cls.tolist(), conf, iou)
        order = np.asarray(kept, dtype=np.int64).reshape(-1)
        order = order[np.argsort(-score[order], kind="stable")][:MAX_DETECTIONS]
        xyxy, score, cls = xyxy[order], score[order], cls[order]
    return to_image(xyxy, box), score, cls.astype(np.int64)


def to_image(xyxy: np.ndarray, box: Letterbox) -> np.ndarray:
    """Boxes in the network's input -> the original image's pixels, clipped to it."""
    out = xyxy.astype(np.float32).copy()
    out[:, [0, 2]] = ((out[:, [0, 2]] - box.pad_x) / box.gain_x).clip(0, box.width)
    out[:, [1, 3]] = ((out[:, [1, 3]] - box.pad_y) / box.gain_y).clip(0, box.height)
    return out
