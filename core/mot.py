"""The MOT Challenge row format, written by the edge's outputs and the simulator's ground truth alike."""

from __future__ import annotations

from collections.abc import Iterable


def mot_row(frame: int, track_id: int, xyxy: Iterable[float], score: float = 1.0, visibility: float = -1.0) -> str:
    """One MOT Challenge line (1-based frame, top-left/width/height box)."""
    x0, y0, x1, y1 = xyxy
    return f"{frame},{track_id},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.3f},1,{visibility:.3f}\n"
