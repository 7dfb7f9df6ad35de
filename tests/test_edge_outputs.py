"""Result outputs of the edge runtime: annotated videos that play back, and outputs that fail
(a writer that raises, a full disk) switched off and logged once while the run goes on."""

import logging
import time

import cv2
import numpy as np
import pytest
from test_edge_run import cams_yaml, run_with_subscriber

from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config
from edge.runtime.outputs import AnnotatedVideo, GuardedOutput, MotWriter, _colour
from edge.runtime.tracklets import Tracklet


def frames_in(path) -> tuple[int, tuple[int, int]]:
    """Frames cv2 reads back from a video file, and their (w, h)."""
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, (image.shape[1], image.shape[0])
    cap.release()
    return n, size


def tracklet(local_id, global_id=None):
    return Tracklet("cam1", local_id, 0.0, 0.0, 0, 0, np.array([10.0, 10.0, 60.0, 120.0]), 0.9, global_id=global_id)


def test_colours_are_stable_for_any_id_with_or_without_a_global_id():
    for kind in ("local", "global"):
        for ident in (0, 1, 4321, 10**6):
            colour = _colour(kind, ident)
            assert colour == _colour(kind, ident) and all(60 <= c < 255 for c in colour)
    assert _colour("local", 7) != _colour("global", 7)


def test_annotated_video_of_tracks_without_global_ids_and_large_ids_plays_back(tmp_path):
    video = AnnotatedVideo(tmp_path, fps=10.0)
    image = np.zeros((180, 320, 3), np.uint8)
    for _ in range(12):
        video.write("cam1", image, [tracklet(4321), tracklet(17, global_id=12345)])
    video.close()
    assert frames_in(tmp_path / "cam1.mp4") == (12, (320, 180))


def test_guarded_output_logs_once_switches_that_camera_off_and_keeps_the_others(tmp_path, caplog):
    class Flaky:
        def __init__(self):
            self.calls = []

        def write(self, camera_id):
            if camera_id == "cam1":
                raise OSError(28, "No space left on device")
            self.calls.append(camera_id)

        def close(self):
            pass

    out = GuardedOutput("video", Flaky())
    with caplog.at_level(logging.ERROR, logger="edge.runtime.outputs"):
        for _ in range(3):
            out.call("cam1", out.output.write, "cam1")
            out.call("cam2", out.output.write, "cam2")
        out.close()
    assert out.output.calls == ["cam2"] * 3
    assert out.errors() == {"video/cam1": "OSError: [Errno 28] No space left on device"}
    assert [r.getMessage() for r in caplog.records] == [
        "video output switched off for camera cam1: OSError: [Errno 28] No space left on device"
    ]


def test_demo_run_writes_a_playable_video_per_camera(tmp_path):
    cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2)]
    cfg = cams_yaml(tmp_path, cams, 56841, outputs={"video_dir": str(tmp_path / "video")}, run={"max_frames": 25})
    report = run_pipeline(load_edge_config(cfg))
    assert report["processed"] == {"cam1": 25, "cam2": 25} and report["output_errors"] == {}
    for cam, size in (("cam1", (640, 360)), ("cam2", (512, 384))):  # the rig's camera sizes
        assert frames_in(tmp_path / "video" / f"{cam}.mp4") == (25, size)


def test_a_writer_that_raises_is_switched_off_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    def full_disk(self, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AnnotatedVideo, "write", full_disk)
    monkeypatch.setattr(MotWriter, "row", full_disk)
    cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2)]
    cfg = cams_yaml(tmp_path, cams, 56842, outputs={"video_dir": str(tmp_path / "video")})
    with caplog.at_level(logging.ERROR, logger="edge.runtime.outputs"):
        report, messages = run_with_subscriber(cfg, 56842)
    reason = "OSError: [Errno 28] No space left on device"
    assert report["output_errors"] == {f"{o}/{c}": reason for o in ("mot", "video") for c in ("cam1", "cam2")}
    assert len(caplog.records) == 4  # once per output and camera, not once per frame
    assert report["processed"] == {"cam1": 60, "cam2": 60} and report["gallery"] >= 1  # tracking and matching went on
    topics = {t.split("/")[0] for t, _, _ in messages}
    assert {"track", "identity", "stats"} <= topics  # and publishing


def test_global_rows_wait_for_the_final_id_and_a_hand_over_frame_is_written_once(tmp_path):
    """Rows go out with the identity the tracklet finally has; where the tracker's old and new
    track of one person overlap for a frame (same global id), that frame gets one row."""
    mot = MotWriter(tmp_path, ["cam1"])
    old, new = tracklet(1), tracklet(2)
    for f in (1, 2, 3):
        mot.row(old, f)
    for f in (3, 4):
        mot.row(new, f)
    old.global_id = new.global_id = 5  # decided (and revised) while the rows waited
    mot.flush(old)
    mot.flush(new)
    mot.close()
    rows = np.loadtxt(tmp_path / "cam1.global.txt", delimiter=",", ndmin=2)
    assert rows[:, 0].tolist() == [1, 2, 3, 4] and set(rows[:, 1]) == {5}
    assert len(np.loadtxt(tmp_path / "cam1.txt", delimiter=",", ndmin=2)) == 5  # local rows: all of them


def video_seconds(path) -> float:
    """Duration of a video as a player sees it: frames / the rate in its header."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames_in(path)[0] / fps


def test_a_video_of_every_third_frame_keeps_the_media_clock(tmp_path):
    """A pipeline that processed one frame in three still writes a video that plays at the
    scene's speed: each frame lands at its media time (held over the skipped ones), not one
    after the other at the nominal rate (which played 3x fast)."""
    video = AnnotatedVideo(tmp_path, fps=10.0)
    image = np.zeros((96, 128, 3), np.uint8)
    times = [100.0 + 0.1 * k for k in range(0, 60, 3)] + [106.2, 106.25, 107.0]  # skips, two in one slot, a longer gap
    for ts in times:
        video.write("cam1", image, [tracklet(3, global_id=4)], ts)
    video.close()
    span = times[-1] - times[0] + 0.1  # the last frame shows for one frame time
    assert video_seconds(tmp_path / "cam1.mp4") == pytest.approx(span, abs=0.1)
    assert video.written["cam1"] == round(span * 10)


def test_a_long_gap_is_held_for_at_most_max_hold_and_a_clock_jump_back_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr("edge.runtime.outputs.MAX_HOLD_S", 2.0)
    video = AnnotatedVideo(tmp_path, fps=5.0)
    image = np.zeros((64, 64, 3), np.uint8)
    for ts in (0.0, 0.2, 100.0, 100.2, 40.0, 40.2):  # a camera down 100 s, then a restarted clock
        video.write("cam1", image, [], ts)
    video.close()
    # 0, 0.2 -> slots 0, 1; the 99.8 s gap held 2 s (slots 2-11); 100, 100.2 -> 12, 13; after the jump back 14, 15
    assert video.written["cam1"] == 16 and frames_in(tmp_path / "cam1.mp4")[0] == 16


def test_global_rows_come_sorted_by_frame_whatever_order_tracklets_become_final(tmp_path):
    """A long tracklet final after a short later one: its early rows still come first (MOT files
    are sorted by frame); rows of a later frame wait while an earlier one may still come."""
    mot = MotWriter(tmp_path, ["cam1"])
    long_, short = tracklet(1), tracklet(2)
    for f in range(1, 11):
        mot.row(long_, f)
        if 4 <= f <= 6:
            mot.row(short, f)
    short.global_id = 8
    mot.flush(short)
    assert (tmp_path / "cam1.global.txt").read_text() == ""  # frames 4-6 wait: the long tracklet has rows from frame 1
    long_.global_id = 7
    mot.flush(long_)
    late = tracklet(3)
    mot.row(late, 12)
    mot.close()  # never final: left out, as before
    rows = np.loadtxt(tmp_path / "cam1.global.txt", delimiter=",", ndmin=2)
    assert rows[:, 0].tolist() == sorted(rows[:, 0].tolist()) and len(rows) == 13
    assert [(int(f), int(i)) for f, i in rows[:, :2] if 4 <= f <= 6] == [(4, 7), (4, 8), (5, 7), (5, 8), (6, 7), (6, 8)]


def test_a_run_that_drops_frames_writes_video_at_media_time_and_sorted_global_rows(tmp_path, monkeypatch):
    """A real-time synthetic camera and a detector slower than the frame rate: frames are dropped
    and the video still lasts as long as the media span processed; .global.txt sorted by frame."""
    from edge.runtime.exported_detector import ExportedDetector
    from edge.runtime.pipeline import EdgePipeline

    detect = ExportedDetector.__call__

    def slow(self, images):
        time.sleep(0.45)  # the tiny scene runs at 5 fps: about one frame in two or three is processed
        return detect(self, images)

    seen: list[float] = []
    process = EdgePipeline.process

    def spy(self, frames):
        seen.extend(f.timestamp for f in frames)
        return process(self, frames)

    monkeypatch.setattr(ExportedDetector, "__call__", slow)
    monkeypatch.setattr(EdgePipeline, "process", spy)
    cams = [{"id": "cam1", "source": "synthetic://tiny?camera=cam1", "realtime": True}]
    cfg = cams_yaml(tmp_path, cams, 56843, outputs={"video_dir": str(tmp_path / "video")}, run={"max_frames": 10})
    report = run_pipeline(load_edge_config(cfg))
    assert report["processed"] == {"cam1": 10} and report["output_errors"] == {}
    span = max(seen) - min(seen) + 1 / 5.0
    assert span > 10 / 5.0 * 1.5  # frames were dropped (else this test proves nothing)
    assert video_seconds(tmp_path / "video" / "cam1.mp4") == pytest.approx(span, abs=0.25)
    frames = np.loadtxt(tmp_path / "mot" / "cam1.global.txt", delimiter=",", ndmin=2)[:, 0]
    assert len(frames) and frames.tolist() == sorted(frames.tolist())


def test_a_tracklet_final_without_an_identity_does_not_hold_back_the_others(tmp_path):
    mot = MotWriter(tmp_path, ["cam1"])
    orphan, other = tracklet(1), tracklet(2)
    mot.row(orphan, 1)
    mot.row(other, 2)
    mot.flush(orphan)  # final with no global id: nothing to write for it
    other.global_id = 5
    mot.flush(other)
    mot.global_["cam1"].flush()
    assert (tmp_path / "cam1.global.txt").read_text().startswith("2,5,")  # written now, not held until close
    mot.close()
