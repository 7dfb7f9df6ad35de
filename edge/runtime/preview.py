"""What the runtime sends for the operator's view: downscaled preview frames and identity crops.

Both are JPEG and both are off by default (``publisher.preview_fps``, ``publisher.crops``): they
are biometric data and cost bytes on the wire. A preview is small (``preview_width`` pixels
wide) and rate-limited per camera; its boxes travel as numbers in the header (the page draws
them), so the runtime does not draw. A crop is bounded in bytes: it is re-encoded at lower
quality until it fits, and left out when it cannot. The pipeline only cuts and downscales (a
small copy); the JPEG encoding runs on the publisher thread (:meth:`EventPublisher.publish`
takes a function for the image).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def downscale(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """A copy of the frame at ``width`` pixels wide (never upscaled) and the scale used (preview
    pixels per source pixel), so boxes in source pixels can be drawn on it."""
    h, w = image.shape[:2]
    scale = min(1.0, width / max(w, 1))
    if scale >= 1.0:
        return image.copy(), 1.0
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA), scale


def preview_jpeg(image: np.ndarray, width: int, quality: int) -> tuple[bytes, float]:
    """The frame downscaled to ``width`` pixels as JPEG, and the scale used."""
    small, scale = downscale(image, width)
    return encode_jpeg(small, quality), scale


def crop_region(image: np.ndarray, xyxy, height: int) -> Optional[np.ndarray]:
    """A copy of the box's pixels at ``height`` pixels tall (never upscaled); None for an empty box."""
    H, W = image.shape[:2]
    x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = image[y0:y1, x0:x1]
    if crop.shape[0] > height:
        scale = height / crop.shape[0]
        return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    return crop.copy()


def fit_jpeg(image: np.ndarray, max_bytes: int, qualities: tuple[int, ...] = (80, 60, 40, 25)) -> Optional[bytes]:
    """The image as a JPEG of at most ``max_bytes``, trying lower qualities; None if none fits."""
    for q in qualities:
        data = encode_jpeg(image, q)
        if len(data) <= max_bytes:
            return data
    return None


def crop_jpeg(image: np.ndarray, xyxy, height: int, max_bytes: int) -> Optional[bytes]:
    """The box's crop, ``height`` pixels tall at most, as a JPEG of at most ``max_bytes``; None
    when the box is empty or even the lowest quality does not fit."""
    region = crop_region(image, xyxy, height)
    return None if region is None else fit_jpeg(region, max_bytes)


class PreviewClock:
    """Which cameras are due a preview frame: at most ``fps`` per camera, on the wall clock."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else float("inf")
        self._last: dict[str, float] = {}

    def due(self, camera_id: str, now: float) -> bool:
        if self.period == float("inf"):
            return False
        if now - self._last.get(camera_id, -float("inf")) < self.period:
            return False
        self._last[camera_id] = now
        return True
