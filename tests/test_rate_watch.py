"""RateWatch: a camera under its rate is named within seconds, once, and its return is said."""

from __future__ import annotations

import logging

import pytest

from edge.runtime.rate_watch import RateWatch


def feed(watch: RateWatch, camera: str, fps: float, start: float, seconds: float) -> float:
    """Frames of ``camera`` at ``fps`` from ``start`` for ``seconds``, checking as a run loop does."""
    t, step = start, 1.0 / fps
    while t < start + seconds - 1e-9:
        watch.frame(camera, t)
        watch.check(t)
        t += step
    return t


def test_a_camera_at_a_third_of_its_rate_is_warned_about_within_the_window(caplog):
    watch = RateWatch({"cam1": 10.0, "cam2": 10.0}, window_s=5.0)
    with caplog.at_level(logging.WARNING, logger="edge.runtime.rate_watch"):
        for i in range(100):  # 10 s: cam1 at 10 fps, cam2 at 3 fps
            t = i * 0.1
            watch.frame("cam1", t)
            if i % 3 == 0:
                watch.frame("cam2", t)
            watch.check(t)
            if "cam2" in watch.below:
                warned_at = t
                break
    assert "cam1" not in watch.below
    assert watch.below["cam2"].fps == pytest.approx(3.2)  # 16 frames in the window (0, 5]
    assert 5.0 <= warned_at <= 6.1  # judged after one whole window, within a second of it
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cam2 is processed at 3.2 of the 10.0 fps it delivers (32%)")


def test_one_warning_while_it_lasts_and_one_line_when_it_is_back(caplog):
    watch = RateWatch({"cam1": 10.0}, window_s=5.0)
    with caplog.at_level(logging.INFO, logger="edge.runtime.rate_watch"):
        t = feed(watch, "cam1", 4.0, 0.0, 20.0)
        assert watch.warnings == 1 and watch.report()["cam1"]["share"] == pytest.approx(0.4, abs=0.05)
        feed(watch, "cam1", 10.0, t, 10.0)
    assert watch.below == {} and watch.warnings == 1
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert (
        caplog.records[-1].getMessage().startswith("cam1 is back at 8.8 of the 10.0 fps it delivers")
    )  # (4 fps + 10 fps) over the window


def test_warm_up_a_full_rate_and_a_camera_that_stopped_are_not_shortfalls():
    watch = RateWatch({"cam1": 10.0, "cam2": 10.0}, window_s=5.0)
    feed(watch, "cam1", 10.0, 0.0, 4.0)  # not yet a whole window
    assert watch.below == {}
    feed(watch, "cam1", 9.0, 4.0, 10.0)  # 90 %: within the tolerance
    assert watch.below == {}
    feed(watch, "cam2", 10.0, 0.0, 6.0)
    watch.check(30.0)  # no frame of cam2 for 24 s: down, not slow
    assert "cam2" not in watch.below
    assert RateWatch({"cam1": 0.0}).rates == {}  # no rate known: nothing to judge


def test_a_stream_that_delivers_less_than_announced_is_not_behind_when_all_of_it_is_processed():
    """Announced 30 fps, delivers 25, every delivered frame processed: no warning, share 1."""
    watch = RateWatch({"cam1": 30.0}, window_s=5.0)
    t, total = 0.0, 0
    while t < 12.0:
        total += 1
        watch.delivered("cam1", total, t)
        watch.frame("cam1", t)
        watch.check(t)
        t += 1 / 25
    assert watch.below == {} and watch.warnings == 0
    assert watch.shares(t)["cam1"] == pytest.approx(1.0, abs=0.02)


def test_the_share_is_against_what_the_camera_delivers():
    """25 fps delivered, 10 processed: 40 %, and the line says the delivered rate."""
    watch = RateWatch({"cam1": 30.0}, window_s=5.0)
    for i in range(250):  # 10 s
        t = i / 25
        watch.delivered("cam1", i + 1, t)
        if i % 5 in (0, 2):
            watch.frame("cam1", t)
        watch.check(t)
    assert watch.below["cam1"].rate == pytest.approx(25.0, abs=0.3)
    assert watch.shares(9.96)["cam1"] == pytest.approx(0.4, abs=0.03)
