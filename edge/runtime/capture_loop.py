"""The run loop: capture threads feed :class:`~edge.runtime.pipeline.EdgePipeline` until the end.

:func:`run_pipeline` starts one capture thread per camera (:mod:`edge.runtime.sources`), with a
watchdog that restarts dead ones, and steps the pipeline until the sources end, a frame/time
limit is reached or ``stop`` is set (SIGINT/SIGTERM in ``edge.run``). Files and synthetic
cameras with ``realtime: false`` run in lockstep (one frame of every camera per step:
reproducible batches); otherwise each step takes the newest frame of each camera and the
governor (:class:`~edge.runtime.governor.LiveControl`) adapts to what the box keeps up with.
The stats line and event go out every ``stats_interval_s``; the report is returned at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from core.cpu_budget import read_cpu_budget
from edge.runtime.config import CameraConfig, EdgeConfig
from edge.runtime.governor import LiveControl
from edge.runtime.pipeline import EdgePipeline
from edge.runtime.rate_watch import RateWatch
from edge.runtime.sources import CameraCapture
from edge.runtime.stats import format_report
from edge.runtime.types import Frame
from edge.runtime.watchdog import CaptureWatchdog

# The stats line has always been logged as the pipeline's (``INFO edge.runtime.pipeline: fps[...``).
log = logging.getLogger("edge.runtime.pipeline")


def run_pipeline(
    cfg: EdgeConfig,
    stop: Optional[threading.Event] = None,
    pipeline: Optional[EdgePipeline] = None,
    on_loaded: Optional[Callable[[], None]] = None,
) -> dict[str, Any]:
    """Capture from every camera and process until the sources end, a limit is hit or ``stop``.
    ``on_loaded`` is called once the models are loaded, before the cameras start (``edge.run``: from
    then on a signal stops the loop and flushes, before it ends the load at once)."""
    stop = stop or threading.Event()
    new_frame = threading.Event()
    # one scene clock for every file/synthetic camera (and, given, for a site's or a region's file nodes)
    given = [s.epoch for s in (cfg.site, cfg.stream) if s is not None and s.epoch is not None]
    epoch = given[0] if given else time.time()

    def capture(cam: CameraConfig) -> CameraCapture:
        return CameraCapture(cam, new_frame, stop, cfg.run.reconnect_max_s, epoch=epoch)

    captures = [capture(c) for c in cfg.cameras]
    watchdog = CaptureWatchdog(captures, capture, cfg.run.reconnect_max_s)  # replaces dead captures in the list
    rates = {c.cam.id: c.rate for c in captures}
    pipeline = pipeline or EdgePipeline(cfg, rates)
    if pipeline.stream_output is not None:  # a session carried on replays on its killed run's clock
        epoch = pipeline.stream_output.scene_epoch(epoch)
        for c in captures:
            c.epoch = epoch
    pipeline.warmup()
    if on_loaded is not None:
        on_loaded()
    for c in captures:
        c.start()
    started, last_stats = time.monotonic(), time.monotonic()
    counts = {c.cam.id: 0 for c in captures}
    report: dict[str, Any] = {}
    lockstep = all(not c.cam.realtime and not c.reader.live for c in captures)
    live = (
        None
        if lockstep
        else LiveControl(
            pipeline.governor,
            RateWatch(rates),
            lambda: {c.cam.id: c.read_count for c in captures},
            read_cpu_budget().cpus,
        )
    )  # lockstep is never behind
    try:
        while not stop.is_set():
            if cfg.run.duration_s and time.monotonic() - started >= cfg.run.duration_s:
                break  # checked here, so it also ends a run whose cameras deliver nothing
            watchdog.check()
            new_frame.clear()
            if lockstep:  # one frame of every camera per step: reproducible batches and matching order
                frames = _one_frame_each(captures, new_frame, stop)
            else:
                frames = [f for f in (c.take() for c in captures) if f is not None]
            if cfg.run.max_frames:
                frames = [f for f in frames if counts[f.camera_id] < cfg.run.max_frames]
            if not frames:
                done = all(c.finished and not watchdog.will_restart(c) for c in captures) or (
                    cfg.run.max_frames and all(n >= cfg.run.max_frames for n in counts.values())
                )
                if done:
                    break
                new_frame.wait(0.05)
                if live is not None:
                    live.tick()
                continue
            step_started = time.monotonic()
            pipeline.process(frames)
            if live is not None:
                live.step([f.camera_id for f in frames], time.monotonic() - step_started)
            for f in frames:
                counts[f.camera_id] += 1
                watchdog.frame(f.camera_id)
            if time.monotonic() - last_stats >= cfg.run.stats_interval_s:
                last_stats = time.monotonic()
                report = _stats(pipeline, captures, watchdog, live)
                log.info("%s", format_report(report))
    finally:
        stop.set()
        # a capture blocked in a stream's open/read (up to its timeout_s) is a daemon left behind
        deadline = time.monotonic() + 1.0
        for c in captures:
            c.join(timeout=max(0.0, deadline - time.monotonic()))
        report = _stats(pipeline, captures, watchdog, live)
        report["processed"] = counts
        # problem: a live camera down at the end
        report["errors"] = {c.cam.id: c.error or c.problem for c in captures if c.error or c.problem}
        report["cameras"] = pipeline.stats.per_camera(list(counts))
        pipeline.close()  # a site node may wait here for the hub's final ids
        report["output_errors"] = pipeline.output_errors()
        report["elapsed_s"] = round(time.monotonic() - started, 2)
        if cfg.site_node:
            _site_report(pipeline, report)
        else:
            report.update(pipeline.engine.report())  # a threshold learned from the site says so
            if pipeline.topology_watch is not None:
                report["topology"] = pipeline.topology_watch.report()
        if pipeline.stream_output is not None:
            report["stream"] = pipeline.stream_output.report()
    return report


def _site_report(pipeline: EdgePipeline, report: dict[str, Any]) -> None:
    """The node's link to the hub in the report (outages, provisional ids), and a warning at the
    end when the hub was away: the global ids are then not (all) site ids."""
    from edge.site.node import outage_line

    site = pipeline.engine.report()
    site["rows"], site["rows_provisional"] = pipeline.site_rows
    report["site"] = site
    line = outage_line(site, *pipeline.site_rows)
    if line:
        log.warning("%s", line)


def _one_frame_each(captures: list[CameraCapture], new_frame: threading.Event, stop: threading.Event) -> list[Frame]:
    """Wait until every camera that has not ended has delivered its next frame."""
    got: dict[str, Frame] = {}
    pending = list(captures)
    while pending and not stop.is_set():
        for c in list(pending):
            frame = c.take()
            if frame is None and c.finished:
                frame = c.take()  # a last frame delivered just before it ended
                pending.remove(c)
            elif frame is not None:
                pending.remove(c)
            if frame is not None:
                got[c.cam.id] = frame
        if pending:
            new_frame.wait(0.05)
            new_frame.clear()
    return [got[c.cam.id] for c in captures if c.cam.id in got]


def _stats(
    pipeline: EdgePipeline, captures: list[CameraCapture], watchdog: CaptureWatchdog, live: Optional[LiveControl] = None
) -> dict[str, Any]:
    pub = pipeline.publisher
    report = pipeline.stats.report(
        {
            "dropped": {c.cam.id: c.dropped for c in captures},
            "reconnects": {c.cam.id: c.reconnects for c in captures},
            "down": watchdog.down(),
            "restarts": dict(watchdog.restarts),
            "gallery": len(pipeline.engine),
            "events_dropped": pub.dropped if pub else 0,
            "images_dropped": pub.images_dropped if pub else 0,
            **(live.report() if live is not None else {"detect_every": pipeline.governor.report(), "below_rate": {}}),
        }
    )
    if pub is not None:
        pub.publish("stats", {"event": "stats", **report})
    return report
