"""Roboflow's ByteTrack behind the tracker seam: rows point at our detections, thresholds hold."""

from __future__ import annotations

import numpy as np

from edge.runtime.config import TrackerConfig
from edge.runtime.tracking import CameraTracker
from edge.runtime.types import Detections

CFG = TrackerConfig(high_score=0.6, low_score=0.4, new_track_score=0.7, lost_s=2.0)


def frame(*rows: tuple[float, float, float, float, float]) -> Detections:
    a = np.array(rows, np.float32).reshape(-1, 5)
    return Detections(a[:, :4], a[:, 4])


def test_det_index_points_at_the_caller_s_detection_after_filtering_and_reordering():
    tracker = CameraTracker("cam", CFG, frame_rate=10.0)
    noise, left, right = (0, 0, 5, 5, 0.1), (10, 10, 50, 100, 0.9), (200, 10, 240, 100, 0.8)
    for t in range(3):
        tracks = tracker.update(frame(noise, right, left), timestamp=t / 10)
    by_index = {tr.det_index: tr for tr in tracks}
    assert sorted(by_index) == [1, 2]  # the 0.1 box is below low_score: never tracked
    assert np.allclose(by_index[2].xyxy, [10, 10, 50, 100]) and by_index[2].conf == np.float32(0.9)
    assert np.allclose(by_index[1].xyxy, [200, 10, 240, 100]) and by_index[1].conf == np.float32(0.8)


def test_a_box_below_new_track_score_keeps_a_track_but_starts_none():
    tracker = CameraTracker("cam", CFG, frame_rate=10.0)
    weak = (10, 10, 50, 100, 0.5)  # between low_score and new_track_score
    assert all(not tracker.update(frame(weak), timestamp=t / 10) for t in range(3))
    strong = (10, 10, 50, 100, 0.9)
    ids = [tr.local_id for t in range(3) for tr in tracker.update(frame(strong), timestamp=(3 + t) / 10)]
    kept = [tr.local_id for t in range(3) for tr in tracker.update(frame(weak), timestamp=(6 + t) / 10)]
    assert set(ids) == set(kept) == {1} and len(kept) == 3  # ByteTrack's second stage


def test_live_boxes_include_a_new_unconfirmed_track_with_its_detection_s_score():
    tracker = CameraTracker("cam", CFG, frame_rate=10.0)
    assert tracker.update(frame((10, 10, 50, 100, 0.9)), timestamp=0.0) == []  # confirms on its second frame
    live = tracker.live_boxes()
    assert len(live) == 1 and np.allclose(live.xyxy, [[10, 10, 50, 100]], atol=0.5) and live.conf[0] == np.float32(0.9)


def test_a_clock_that_steps_back_does_not_stop_tracking():
    """A live camera's wall clock stepped back 5 s (NTP): the person keeps the track, no warnings."""
    import warnings

    tracker = CameraTracker("cam", CFG, frame_rate=10.0)
    person = (10, 10, 50, 100, 0.9)
    stamps = [100.0 + t / 10 for t in range(5)] + [95.5 + t / 10 for t in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = [[tr.local_id for tr in tracker.update(frame(person), timestamp=ts)] for ts in stamps]
    assert ids[1:] == [[1]] * (len(stamps) - 1)
