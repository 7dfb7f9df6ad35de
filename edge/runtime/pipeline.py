"""The edge pipeline: frames of all cameras -> detections -> tracks -> embeddings -> identities.

:class:`EdgePipeline` holds the models and per-camera state and processes one batch of frames
(:meth:`process`); :func:`run_pipeline` drives it from the capture threads until the sources end,
a frame/time limit is reached or ``stop`` is set (SIGINT/SIGTERM in ``edge.run``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity import Decision, IdentityEngine, homography_from
from edge.identity.engine import settings_from_config
from edge.reid.base import ReIDBackend
from edge.reid.factory import build_backend
from edge.runtime.coasting import FlowCarrier, to_gray
from edge.runtime.config import EdgeConfig
from edge.runtime.cpu_budget import read_cpu_budget
from edge.runtime.detector import PersonDetector
from edge.runtime.floor_map import FloorMap
from edge.runtime.governor import Governor, LiveControl
from edge.runtime.outputs import open_outputs
from edge.runtime.preview import PreviewClock, crop_region, downscale, encode_jpeg, fit_jpeg
from edge.runtime.rate_watch import RateWatch
from edge.runtime.sources import CameraCapture
from edge.runtime.stats import PipelineStats, format_report
from edge.runtime.tracking import CameraTracker
from edge.runtime.tracklets import ACTIVE, BudgetPolicy, EmbedRequest, Tracklet, TrackletBook
from edge.runtime.types import Detections, Frame
from edge.runtime.watchdog import CaptureWatchdog
from edge.wire.publisher import EventPublisher, decision_event, track_event

log = logging.getLogger(__name__)


class EdgePipeline:
    def __init__(
        self,
        cfg: EdgeConfig,
        frame_rates: Optional[dict[str, float]] = None,
        detector: Optional[PersonDetector] = None,
        reid: Optional[ReIDBackend] = None,
    ):
        self.cfg = cfg
        self.detector = detector or PersonDetector.from_config(cfg.detector)
        self.reid = reid if reid is not None else (build_backend(cfg.reid) if cfg.reid else None)
        rates = frame_rates or {}
        self.trackers = {c.id: CameraTracker(c.id, cfg.tracker, rates.get(c.id) or c.fps or 30.0) for c in cfg.cameras}
        if cfg.tracker.reid_features and self.reid is None:
            raise ValueError("tracker.reid_features needs a reid section")
        g = cfg.governor
        # BoT-SORT with our features embeds every detection: nothing to carry between detections
        self.governor = Governor(
            [c.id for c in cfg.cameras], 1 if cfg.tracker.reid_features else g.detect_every, g.max_detect_every
        )
        self.flow = FlowCarrier()
        self._gray: dict[str, np.ndarray] = {}  # each camera's last processed frame, grey: where carried boxes start
        self._detect_s = 0.0  # the last step's detector time
        policies = (
            {c.id: self._budget_policy(rates.get(c.id) or c.fps or 30.0) for c in cfg.cameras}
            if self.reid is not None
            else {}
        )
        self.homographies = {cam: homography_from(cal, f"calibration.{cam}") for cam, cal in cfg.calibration.items()}
        self.books = {
            c.id: TrackletBook(c.id, self.trackers[c.id].lost_s, policies.get(c.id), self.homographies.get(c.id))
            for c in cfg.cameras
        }
        self.sie = {c.id: (c.sie_index if c.sie_index is not None else i) for i, c in enumerate(cfg.cameras)}
        settings = self._engine_settings()
        self.engine = IdentityEngine(settings)
        self.swap_below = self._swap_below()
        self.site_rows = [
            0,
            0,
        ]  # a site node's global MOT rows: all, with provisional ids (decided while the hub was away)
        if (
            cfg.site is not None
        ):  # a site node: the hub's engine decides, over every node's cameras; its own while the hub is away
            from edge.site.node import site_engine

            self.engine = site_engine(cfg, self.reid, self._describe, local=partial(IdentityEngine, settings))
        self._closing: dict[tuple[str, int], Tracklet] = {}  # ended tracklets whose identity may still change
        self.stats = PipelineStats()
        p = cfg.publisher
        self.publisher = (
            EventPublisher(p.endpoint, p.high_water_mark, curve=p.curve, insecure=p.insecure) if p.enabled else None
        )
        self.previews = PreviewClock(p.preview_fps)
        self.mot, self.video = open_outputs(cfg, frame_rates)
        self.floor_map: Optional[FloorMap] = None
        if cfg.outputs.floor_map and self.homographies:
            self.floor_map = FloorMap(cfg.outputs.floor_map, {})
        elif cfg.outputs.floor_map:
            log.warning("outputs.floor_map is set but no camera has a calibration: no floor map is drawn")
        self._last_update: dict[tuple[str, int], float] = {}
        self._now = 0.0  # scene clock: the newest frame time processed
        self.final_log: Optional[list] = None  # set to a list to keep every final tracklet's summary (benchmarks)
        self._last_snapshot = 0.0

    def _budget_policy(self, fps: float) -> BudgetPolicy:
        """A camera's embedding budget in seconds of media time (``reid.embed_every`` in frames is
        the older form, read at the camera's rate)."""
        r = self.cfg.reid
        every = r.embed_every / fps if r.embed_every else r.embed_every_s
        return BudgetPolicy(every, r.better_crop, r.min_box_height, r.max_overlap)

    def _engine_settings(self):
        if self.reid is None:  # tracking only: every tracklet its own identity, at once
            return replace(
                settings_from_config(self.cfg.matching.model_copy(update={"enabled": False}), None), min_embeddings=0
            )
        stats = getattr(self.reid.meta, "similarity", None)
        settings = settings_from_config(
            self.cfg.matching, stats, self.cfg.reid.model, getattr(self.reid.meta, "embedding_dim", None)
        )
        source = "config" if self.cfg.matching.threshold is not None else "model metadata"
        log.info(
            "matching: %s threshold %.3f (%s), scale %.3f, %d calibrated camera(s)",
            "camera-centered" if settings.centering else "raw cosine",
            settings.threshold,
            source,
            settings.scale,
            len(self.homographies),
        )
        return settings

    def _swap_below(self) -> Optional[float]:
        """The cosine that cuts a swapped track: the config's, else the one stored with the model
        (``similarity.swap``, measured by training or ``python -m export similarity``), else off."""
        if self.reid is None or self.cfg.reid.swap_below is False:
            return None
        below, source = self.cfg.reid.swap_below, "config"
        if below is None:
            below = ((getattr(self.reid.meta, "similarity", None) or {}).get("swap") or {}).get("swap_below")
            source = "model metadata"
        if below is not None:
            log.info("track swaps: cut below cosine %.3f (%s)", below, source)
        return below

    def output_errors(self) -> dict[str, str]:
        """``{"<output>/<camera>": reason}`` for every output switched off after a failure."""
        return {k: v for out in (self.mot, self.video) if out is not None for k, v in out.errors().items()}

    def warmup(self) -> None:
        """One dummy detection and embedding, so model loading/fusing is not billed to the first frames."""
        self.detector([np.zeros((360, 640, 3), np.uint8)])
        if self.reid is not None:
            h, w = self.reid.input_size
            self.reid.embed(np.zeros((1, h, w, 3), np.uint8), np.zeros(1, np.int64))

    # --- one step -------------------------------------------------------------------------
    def process(self, frames: list[Frame]) -> None:
        if self.floor_map is not None:
            for f in frames:  # the map draws each calibrated camera's view at its frame size
                if f.camera_id in self.homographies and f.camera_id not in self.floor_map.cameras:
                    self.floor_map.cameras[f.camera_id] = (
                        self.homographies[f.camera_id],
                        f.image.shape[1],
                        f.image.shape[0],
                    )
        for f in frames:
            self.stats.stage("decode", f.decode_s)
        t0 = time.perf_counter()
        detections, detected = self._detect_or_carry(frames)
        t1 = time.perf_counter()
        self.stats.stage("detect", t1 - t0)

        det_feats = self._embed_detections(frames, detections) if self.cfg.tracker.reid_features else {}
        t2 = time.perf_counter()
        events: list[tuple[str, Tracklet, float]] = []
        requests: list[tuple[Frame, EmbedRequest]] = []
        for frame, dets, fresh in zip(frames, detections, detected):
            feats = det_feats.get(frame.camera_id)
            tracks = self.trackers[frame.camera_id].update(
                dets, frame.image, feats.global_ if feats else None, frame.timestamp
            )
            evs, reqs = self.books[frame.camera_id].update(tracks, frame, embed=fresh)
            events += [(e, t, frame.timestamp) for e, t in evs]
            if feats:  # BoT-SORT already embedded every detection: reuse, do not embed twice
                index = {tr.local_id: tr.det_index for tr in tracks}
                for req in reqs:
                    i = index.get(req.tracklet.local_id, -1)
                    if i >= 0:
                        self._absorb(req, feats[i], frame.timestamp)
            else:
                requests += [(frame, r) for r in reqs]
        t3 = time.perf_counter()
        self.stats.stage("track", t3 - t2 + (t2 - t1 if det_feats else 0.0))

        if requests:
            self._embed_requests(requests)
        t4 = time.perf_counter()
        if requests or det_feats:
            self.stats.stage("embed", t4 - t3 + (t2 - t1))

        self._now = max(self._now, *(f.timestamp for f in frames))
        identity_events = self._match(events, self._now)
        t5 = time.perf_counter()
        self.stats.stage("match", t5 - t4)

        self._publish(frames, events, identity_events)
        for f in frames:
            self.stats.frame(f.camera_id, f.wall_ts)
        t6 = time.perf_counter()
        self.stats.stage("publish", t6 - t5)
        self.governor.observe(len(frames), detected.count(True), t6 - t0, self._detect_s)

    def _detect_or_carry(self, frames: list[Frame]) -> tuple[list[Detections], list[bool]]:
        """This step's boxes per frame: the detector's, in one batch, for the cameras the governor
        says are due, and for the others the tracked boxes carried from their last frame by optical
        flow (:mod:`edge.runtime.coasting`). Returns the boxes and which frames were detected."""
        due = [self.governor.detect_now(f.camera_id) for f in frames]
        t0 = time.perf_counter()
        found = iter(self.detector([f.image for f, d in zip(frames, due) if d]) if any(due) else [])
        self._detect_s = time.perf_counter() - t0  # the detector alone: the governor's cost model
        out = []
        for f, d in zip(frames, due):
            gray = to_gray(f.image) if self.governor.coasting else None
            out.append(next(found) if d else self._carry(f.camera_id, gray))
            if gray is not None:
                self._gray[f.camera_id] = gray
        self.stats.carried += due.count(False)
        return out, due

    def _carry(self, camera_id: str, gray: np.ndarray) -> Detections:
        prev, live = self._gray.get(camera_id), self.trackers[camera_id].live_boxes()
        if prev is None or prev.shape != gray.shape or not len(live):
            return Detections.empty()
        moved, ok = self.flow.carry(prev, gray, live.xyxy)
        return Detections(moved[ok], live.conf[ok])

    def _embed_detections(self, frames: list[Frame], detections: list[Detections]) -> dict[str, Embeddings]:
        """Every detection embedded (BoT-SORT with our features)."""
        out = {}
        for frame, dets in zip(frames, detections):
            crops = self.reid.crops(frame.image, dets.xyxy)
            cams = np.full(len(crops), self.sie[frame.camera_id])
            out[frame.camera_id] = self.reid.embed(crops, cams)
            self.stats.embedded += len(crops)
        return out

    def _embed_requests(self, requests: list[tuple[Frame, EmbedRequest]]) -> None:
        crops, cams = [], []
        for frame, req in requests:
            crops.append(self.reid.crops(frame.image, req.xyxy[None]))
            cams.append(self.sie[frame.camera_id])
        emb = self.reid.embed(np.concatenate(crops), np.asarray(cams))
        self.stats.embedded += len(requests)
        for i, (frame, req) in enumerate(requests):
            self._absorb(req, emb[i], frame.timestamp)

    def _absorb(self, req: EmbedRequest, crop: Embeddings, now: float) -> None:
        """One crop's embedding (one row, with parts for part-based models) into its tracklet."""
        t = req.tracklet
        parts = (None, None) if crop.parts is None else (crop.parts[0], crop.part_conf[0])
        if t.offer(crop.global_[0], req.quality, *parts, swap_below=self.swap_below):
            self.trackers[t.camera_id].split(
                t.local_id
            )  # the tracker gave this id to someone else: a new tracklet from the next frame on
            self.stats.swaps += 1

    def _match(
        self, events: list[tuple[str, Tracklet, float]], now: float
    ) -> list[tuple[str, dict, Optional[np.ndarray]]]:
        """Feed the identity engine this step's tracklets; sync global ids; turn decisions into events."""
        ended = [t for e, t, _ in events if e == "ended"]
        live = [t for book in self.books.values() for t in book.tracklets.values()]
        for t in ended:
            self._closing[t.key] = t
            self.trackers[t.camera_id].forget(t.local_id)
            self._last_update.pop(t.key, None)
        decisions = self.engine.update([t.summary() for t in (*live, *ended)], now)
        for t in (*live, *self._closing.values()):
            t.global_id = self.engine.global_id(t.key)
        out = [self._decision_message(d) for d in decisions]
        self._write_final()
        return out

    def _describe(self, key) -> tuple[float, int]:
        """Detection score and frame of a tracklet (what the site hub's events show)."""
        t = self._tracklet(key)
        return (float(t.conf), int(t.last_frame)) if t is not None else (0.0, 0)

    def _tracklet(self, key) -> Optional[Tracklet]:
        return self._closing.get(key) or self.books[key[0]].tracklets.get(key[1])

    def _decision_message(self, d: Decision) -> tuple[str, dict, Optional[np.ndarray]]:
        """Topic, header and optional embedding, taken now: later decisions must not leak into it."""
        ident = self.engine.identities.get(d.global_id)
        t = self._tracklet(d.key) if d.key is not None else None
        emb = ident.embedding if (ident is not None and self.cfg.publisher.send_embeddings) else None
        return f"identity/{d.global_id}", decision_event(d, ident, t), emb

    def _write_final(self) -> None:
        """Tracklets whose identity is final: their global MOT rows are written with it."""
        for key, gid in self.engine.take_final():
            t = self._closing.pop(key, None)
            if t is None:
                continue
            t.global_id = gid
            if self.cfg.site is not None:
                self.site_rows[0] += len(t.pending_rows)
                self.site_rows[1] += len(t.pending_rows) if self.engine.is_provisional(gid) else 0
            if self.mot is not None:
                self.mot.call(t.camera_id, self.mot.output.flush, t)
            if self.final_log is not None:
                self.final_log.append(t.summary())
            if self.floor_map is not None and t.floor is not None and len(t.floor):
                self.floor_map.add(gid, t.camera_id, t.floor.arrays()[1])

    def _publish(self, frames: list[Frame], events, identity_events) -> None:
        by_camera = {f.camera_id: f for f in frames}
        for camera_id, frame in by_camera.items():
            active = [
                t for t in self.books[camera_id].tracklets.values() if t.state == ACTIVE and t.last_frame == frame.index
            ]
            if self.mot is not None:
                for t in active:
                    self.mot.call(camera_id, self.mot.output.row, t, frame.index)
            if self.video is not None:
                self.video.call(camera_id, self.video.output.write, camera_id, frame.image, active, frame.timestamp)
        if self.publisher is None:
            return
        now = time.time()
        interval = self.cfg.publisher.update_interval_s
        changed = set()
        for kind, t, ts in events:
            changed.add(t.key)
            self.publisher.publish(f"track/{t.camera_id}", track_event(kind, t, ts))
        for topic, header, emb in identity_events:
            self.publisher.publish(topic, header, emb, self._crop(header, by_camera))
        self._publish_previews(by_camera, now)
        for camera_id, frame in by_camera.items():
            for t in self.books[camera_id].tracklets.values():
                if t.state != ACTIVE or t.key in changed:
                    continue
                if now - self._last_update.get(t.key, 0.0) >= interval:
                    self._last_update[t.key] = now
                    self.publisher.publish(f"track/{t.camera_id}", track_event("update", t, frame.timestamp))
        if now - self._last_snapshot >= self.cfg.publisher.snapshot_interval_s:
            self._last_snapshot = now
            self.publisher.publish("snapshot", {"event": "snapshot", "identities": self.snapshot()})

    def _crop(self, header: dict, by_camera: dict[str, Frame]) -> Optional[Callable[[], Optional[bytes]]]:
        """The JPEG crop (encoded later, on the publisher thread) for an identity ``new`` /
        ``assigned`` event, when crops are on and the tracklet's box is from a frame of this
        step (so the crop shows the box)."""
        p = self.cfg.publisher
        if not p.crops or header.get("event") not in ("new", "assigned"):
            return None
        frame = by_camera.get(header.get("camera"))
        if frame is None or frame.index != header.get("frame"):
            return None
        region = crop_region(frame.image, header["bbox"], p.crop_height)
        return None if region is None else partial(fit_jpeg, region, p.crop_max_bytes)

    def _publish_previews(self, by_camera: dict[str, Frame], now: float) -> None:
        """``frame/<camera>``: a downscaled JPEG with the boxes (preview pixels) and their ids."""
        p = self.cfg.publisher
        for camera_id, frame in by_camera.items():
            if not self.previews.due(camera_id, now):
                continue
            small, scale = downscale(frame.image, p.preview_width)
            boxes = [
                [*(round(float(v) * scale, 1) for v in t.xyxy), t.local_id, t.global_id]
                for t in self.books[camera_id].tracklets.values()
                if t.state == ACTIVE and t.last_frame == frame.index
            ]
            self.publisher.publish(
                f"frame/{camera_id}",
                {
                    "event": "frame",
                    "camera": camera_id,
                    "frame": frame.index,
                    "capture_ts": frame.timestamp,
                    "width": small.shape[1],
                    "height": small.shape[0],
                    "scale": round(scale, 5),
                    "boxes": boxes,
                },
                jpeg=partial(encode_jpeg, small, p.preview_quality),
            )

    def snapshot(self) -> list[dict]:
        return [
            {
                "global_id": i.global_id,
                "cameras": sorted(i.cameras),
                "last_seen": i.last_seen,
                "live": [[c, lid] for c, lid in sorted(i.members)],
            }
            for i in self.engine.identities.values()
        ]

    def close(self) -> None:
        """End every tracklet (so it gets an identity and its rows are written), then close outputs."""
        events = [(e, t, t.last_seen) for book in self.books.values() for e, t in book.end_all()]
        identity_events = self._match(events, self._now)
        identity_events += [self._decision_message(d) for d in self.engine.flush(self._now)]
        self._write_final()
        if hasattr(self.engine, "close"):  # a site node's link to the hub
            self.engine.close()
        if self.publisher is not None:
            for kind, t, ts in events:
                self.publisher.publish(f"track/{t.camera_id}", track_event(kind, t, ts))
            for topic, header, emb in identity_events:
                self.publisher.publish(topic, header, emb)
            self.publisher.close()
        if self.mot is not None:
            self.mot.close()
        if self.video is not None:
            self.video.close()
        if self.floor_map is not None:
            try:
                self.floor_map.write()
            except Exception as exc:  # noqa: BLE001 - an output must not fail the run's close
                log.error("output floor_map: %s: %s", type(exc).__name__, exc)


def run_pipeline(
    cfg: EdgeConfig,
    stop: Optional[threading.Event] = None,
    pipeline: Optional[EdgePipeline] = None,
    on_loaded: Optional[Callable[[], None]] = None,
) -> dict:
    """Capture from every camera and process until the sources end, a limit is hit or ``stop``.
    ``on_loaded`` is called once the models are loaded, before the cameras start (``edge.run``: from
    then on a signal stops the loop and flushes, before it ends the load at once)."""
    stop = stop or threading.Event()
    new_frame = threading.Event()
    epoch = (
        cfg.site.epoch if (cfg.site and cfg.site.epoch is not None) else time.time()
    )  # one scene clock for every file/synthetic camera

    def capture(cam) -> CameraCapture:
        return CameraCapture(cam, new_frame, stop, cfg.run.reconnect_max_s, epoch=epoch)

    captures = [capture(c) for c in cfg.cameras]
    watchdog = CaptureWatchdog(captures, capture, cfg.run.reconnect_max_s)  # replaces dead captures in the list
    rates = {c.cam.id: c.rate for c in captures}
    pipeline = pipeline or EdgePipeline(cfg, rates)
    pipeline.warmup()
    if on_loaded is not None:
        on_loaded()
    for c in captures:
        c.start()
    started, last_stats = time.monotonic(), time.monotonic()
    counts = {c.cam.id: 0 for c in captures}
    report: dict = {}
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
        deadline = (
            time.monotonic() + 1.0
        )  # a capture blocked in a stream's open/read (up to its timeout_s) is a daemon left behind
        for c in captures:
            c.join(timeout=max(0.0, deadline - time.monotonic()))
        report = _stats(pipeline, captures, watchdog, live)
        report["processed"] = counts
        report["errors"] = {
            c.cam.id: c.error or c.problem for c in captures if c.error or c.problem
        }  # problem: a live camera down at the end
        report["cameras"] = pipeline.stats.per_camera(list(counts))
        pipeline.close()  # a site node may wait here for the hub's final ids
        report["output_errors"] = pipeline.output_errors()
        report["elapsed_s"] = round(time.monotonic() - started, 2)
        if cfg.site is not None:
            _site_report(pipeline, report)
    return report


def _site_report(pipeline: EdgePipeline, report: dict) -> None:
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
) -> dict:
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
