"""The compute governor and optical-flow coasting: cadence, adaptation and carried boxes with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.runtime.coasting import FlowCarrier
from edge.runtime.governor import Governor, LiveControl, every_nth
from edge.runtime.rate_watch import RateWatch


def test_a_fixed_cadence_detects_every_kth_frame_of_each_camera():
    g = Governor(["a", "b"], detect_every=3)
    assert [g.detect_now("a") for _ in range(7)] == [True, False, False, True, False, False, True]
    assert g.detect_now("b")  # cameras count their own frames
    assert not g.adapt({"a": 0.2, "b": 0.2}, busy=1.0, now=100.0)  # a fixed k never moves
    assert [every_nth(k) for k in (1, 2, 3, 4, 11, 22)] == [
        "every frame",
        "every 2nd frame",
        "every 3rd frame",
        "every 4th frame",
        "every 11th frame",
        "every 22nd frame",
    ]


def test_auto_raises_k_for_a_camera_below_its_rate_up_to_the_limit():
    g = Governor(["a", "b"], detect_every="auto", max_detect_every=3, adapt_every_s=2.0, clock=lambda: 0.0)
    assert g.every == {"a": 1, "b": 1}
    lines = g.adapt({"a": 0.6, "b": 1.0}, busy=1.0, now=2.0)
    assert g.every == {"a": 2, "b": 1} and lines == [
        "a: detector on every 2nd frame, boxes carried between by optical flow (processed at 60% of its rate)"
    ]
    assert g.adapt({"a": 0.6}, busy=1.0, now=3.0) == []  # within the period: the last change is still being measured
    g.adapt({"a": 0.6}, busy=1.0, now=4.0)
    g.adapt({"a": 0.6}, busy=1.0, now=6.0)
    assert g.every["a"] == 3 and [c[1:] for c in g.changes] == [("a", 2), ("a", 3)]


def test_auto_lowers_k_only_when_the_cost_model_leaves_a_margin():
    g = Governor(["a"], detect_every="auto", max_detect_every=4, adapt_every_s=1.0, clock=lambda: 0.0)
    g.every["a"] = 3
    for _ in range(50):  # a detection costs 60 ms a frame, the rest 10 ms
        g.observe(frames=3, detected=1, step_s=0.06 + 0.03, detect_s=0.06)
    assert g.detect_cost == pytest.approx(0.06) and g.rest_cost == pytest.approx(0.01)
    assert g.frame_cost(3) == pytest.approx(0.03) and g.frame_cost(2) == pytest.approx(0.04)
    g.adapt({"a": 1.0}, busy=0.65, now=1.0)  # 0.65 * 0.04 / 0.03 = 0.87 expected at k=2: too tight
    assert g.every["a"] == 3
    g.adapt({"a": 1.0}, busy=0.5, now=2.0)  # 0.67 expected: room
    assert g.every["a"] == 2


def test_live_control_feeds_the_rate_watch_and_moves_the_governor():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    g = Governor(["a"], detect_every="auto", adapt_every_s=2.0, clock=clock)
    live = LiveControl(g, RateWatch({"a": 10.0}, window_s=5.0, clock=clock), clock=clock)
    while now[0] < 8.0:  # 4 frames a second of a 10 fps camera, the loop always busy
        live.step(["a"], busy_s=0.25)
        now[0] += 0.25
    assert g.every["a"] >= 2 and live.report()["below_rate"]["a"]["share"] == pytest.approx(0.4)


def textured(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h // 4, w // 4), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST), (5, 5), 0)


def test_flow_carries_a_shifted_box_by_its_shift():
    scene = textured(seed=1)
    prev = np.full((240, 320), 90, np.uint8)
    cur = prev.copy()
    prev[60:140, 100:150] = scene[60:140, 100:150]  # a textured person-sized patch on a flat background
    cur[63:143, 105:155] = scene[60:140, 100:150]  # moved 5 px right, 3 px down
    moved, ok = FlowCarrier().carry(prev, cur, np.array([[100, 60, 150, 140]], np.float32))
    assert ok.tolist() == [True]
    assert moved[0] == pytest.approx([105, 63, 155, 143], abs=0.75)


def test_flow_scales_a_growing_box_and_gives_up_on_a_vanished_one():
    scene = textured(seed=2)
    prev = np.full((240, 320), 90, np.uint8)
    prev[80:160, 120:170] = scene[80:160, 120:170]
    cur = np.full((240, 320), 90, np.uint8)
    cur[76:164, 117:172] = cv2.resize(scene[80:160, 120:170], (55, 88))  # 10 % larger about its centre
    moved, ok = FlowCarrier().carry(prev, cur, np.array([[120, 80, 170, 160]], np.float32))
    assert ok[0] and (moved[0, 3] - moved[0, 1]) / 80 == pytest.approx(1.1, abs=0.04)
    gone = np.full((240, 320), 90, np.uint8)  # the patch is gone: nothing to follow
    _, ok = FlowCarrier().carry(prev, gone, np.array([[120, 80, 170, 160]], np.float32))
    assert ok.tolist() == [False]


@pytest.mark.slow
def test_a_lockstep_run_detecting_every_third_frame_still_tracks_every_frame(tmp_path):
    """The detector sees a third of the frames; the tracks and the MOT rows cover all of them."""
    from conftest import demo_camera_file

    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config
    from edge.runtime.pipeline import EdgePipeline

    demo_camera_file(
        tmp_path,
        "{id: cam1, source: 'synthetic://demo?camera=cam1&seed=5', realtime: false}",
        "conf: 0.4",
        f"publisher: {{enabled: false}}\noutputs: {{mot_dir: {tmp_path / 'mot'}}}\nrun: {{max_frames: 90}}\n",
    )
    rows = {}
    for every in (1, 3):
        cfg = load_edge_config(
            tmp_path / "cams.yaml", [f"governor.detect_every={every}", f"outputs.mot_dir={tmp_path / f'mot{every}'}"]
        )
        pipeline = EdgePipeline(cfg)
        calls = []
        detect = pipeline.detector

        def counting(images, calls=calls, detect=detect):
            calls.append(len(images))
            return detect(images)

        pipeline.detector = counting
        report = run_pipeline(cfg, pipeline=pipeline)
        frames = [int(line.split(",")[0]) for line in (tmp_path / f"mot{every}" / "cam1.txt").read_text().splitlines()]
        rows[every] = frames
        assert sum(calls) - 1 == (90 if every == 1 else 30)  # less the warm-up call
        assert report["frames_carried"] == (0 if every == 1 else 60)
    carried_frames = {f for f in rows[3] if (f - 1) % 3}
    assert len(carried_frames) >= 35  # people are in view from frame 30: rows on the frames the detector never saw
    assert len(rows[3]) >= 0.85 * len(rows[1])  # nearly every box of the every-frame run


def test_under_a_quota_the_process_cpu_not_the_idle_looking_loop_says_how_busy_the_box_is():
    """The loop is busy 30 % of the time, but decoding threads use 0.55 of a 0.6-CPU quota: k stays."""
    now, cpu = [0.0], [0.0]
    g = Governor(["a"], detect_every="auto", adapt_every_s=2.0, clock=lambda: now[0])
    g.every["a"] = 3
    for _ in range(50):
        g.observe(frames=3, detected=1, step_s=0.09, detect_s=0.06)
    live = LiveControl(
        g,
        RateWatch({"a": 10.0}, window_s=5.0, clock=lambda: now[0]),
        cpus=0.6,
        clock=lambda: now[0],
        cpu_clock=lambda: cpu[0],
    )
    while now[0] < 12.0:  # every delivered frame processed: the camera keeps its rate
        live.step(["a"], busy_s=0.03)
        now[0] += 0.1
        cpu[0] += 0.055
    assert g.every["a"] == 3 and g.changes == []
    free = LiveControl(
        g,
        RateWatch({"a": 10.0}, window_s=5.0, clock=lambda: now[0]),
        cpus=2.0,
        clock=lambda: now[0],
        cpu_clock=lambda: cpu[0],
    )
    while now[0] < 24.0:  # the same use on 2 CPUs: 28 % busy, room to detect more often
        free.step(["a"], busy_s=0.03)
        now[0] += 0.1
        cpu[0] += 0.055
    assert g.every["a"] < 3
