"""The tracker over frames nobody processed: its motion model steps over them (time, not calls)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.runtime.config import TrackerConfig
from edge.runtime.tracking import CameraTracker
from edge.runtime.types import Detections

FPS = 10.0
SPEED = 8.0  # pixels per camera frame, to the right
WIDTH = 20.0


def box_at(frame: int) -> Detections:
    x = 100.0 + SPEED * frame
    return Detections(np.array([[x, 200.0, x + WIDTH, 260.0]], np.float32), np.array([0.9], np.float32))


KINDS = ["bytetrack", "ultralytics-bytetrack"]


def ids_over(frames: list[int], kind: str) -> list[int]:
    tracker = CameraTracker("cam", TrackerConfig(kind=kind), frame_rate=FPS)
    ids = []
    for f in frames:
        tracks = tracker.update(box_at(f), timestamp=f / FPS)
        ids += [t.local_id for t in tracks]
    return ids


@pytest.mark.parametrize("kind", KINDS)
def test_a_person_keeps_the_track_over_frames_the_box_could_not_process(kind):
    """Four frames skipped: the person moved 4 x 8 px, further than the 20 px box is wide. One
    Kalman step per update would look for them 24 px behind (IoU 0) and start a new track."""
    ids = ids_over([1, 2, 3, 4, 5, 6, 10, 11, 12], kind)
    assert len(ids) >= 7 and set(ids) == {ids[0]}


@pytest.mark.parametrize("kind", KINDS)
def test_every_frame_processed_is_one_track(kind):
    assert set(ids_over(list(range(1, 13)), kind)) == {1}
