"""The edge pipeline: frames of all cameras -> detections -> tracks -> embeddings -> identities.

:class:`EdgePipeline` holds the models and per-camera state and processes one batch of frames
(:meth:`~EdgePipeline.process`): the detector (or boxes carried by optical flow, as the governor
says), the trackers, the embedding budget, the identity service, then the result files and the
events (:mod:`edge.runtime.broadcast`). What the config and the model decide together is built
in :mod:`edge.runtime.build`; :func:`edge.runtime.capture_loop.run_pipeline` drives the pipeline
from the capture threads.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Union, cast

import numpy as np

from core.embeddings import Embeddings
from edge.identity import Decision, homography_from
from edge.identity.config import TransitionWindow
from edge.identity.engine import IdentityEngine
from edge.identity.records import Key, TrackletSummary
from edge.identity.settings import transitions_from
from edge.identity.threshold_learning import ThresholdLearning
from edge.reid.base import ReIDBackend
from edge.reid.factory import build_backend
from edge.runtime import build
from edge.runtime.broadcast import Broadcaster, IdentityMessage, TrackEvent
from edge.runtime.coasting import FlowCarrier, to_gray
from edge.runtime.config import EdgeConfig
from edge.runtime.detector import Detector, build_detector
from edge.runtime.floor_map import FloorMap
from edge.runtime.governor import Governor
from edge.runtime.outputs import ALL_CAMERAS, open_outputs, open_stream, open_tracklet_log
from edge.runtime.stats import PipelineStats
from edge.runtime.tracking import CameraTracker
from edge.runtime.tracklets import ACTIVE, BudgetPolicy, EmbedRequest, Tracklet, TrackletBook
from edge.runtime.types import Detections, Frame
from edge.wire.events import provisional_field
from edge.wire.publisher import EventPublisher, decision_event

log = logging.getLogger(__name__)


class EdgePipeline:
    def __init__(
        self,
        cfg: EdgeConfig,
        frame_rates: Optional[dict[str, float]] = None,
        detector: Optional[Detector] = None,
        reid: Optional[ReIDBackend] = None,
    ):
        self.cfg = cfg
        self.detector = detector or build_detector(cfg.detector)
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
            {c.id: BudgetPolicy.from_config(cfg.reid, rates.get(c.id) or c.fps or 30.0) for c in cfg.cameras}
            if self.reid is not None and cfg.reid is not None
            else {}
        )
        self.homographies = {cam: homography_from(cal, f"calibration.{cam}") for cam, cal in cfg.calibration.items()}
        self.books = {
            c.id: TrackletBook(c.id, self.trackers[c.id].lost_s, policies.get(c.id), self.homographies.get(c.id))
            for c in cfg.cameras
        }
        self.sie = {c.id: (c.sie_index if c.sie_index is not None else i) for i, c in enumerate(cfg.cameras)}
        settings = build.engine_settings(cfg, self.reid, len(self.homographies))
        self.swap_below = build.swap_below(cfg, self.reid)
        self.site_similarity = build.site_similarity(cfg, self.reid)  # None unless the threshold is to be learned
        self.engine = build.identity_service(cfg, self.reid, settings, self._describe, self.site_similarity)
        self.topology_watch = build.topology_watch(cfg, self.reid)  # None unless learned while running
        # a site node's global MOT rows: all, and those with provisional ids (decided while the hub was away)
        self.site_rows = [0, 0]
        self._closing: dict[Key, Tracklet] = {}  # ended tracklets whose identity may still change
        self.stats = PipelineStats()
        self.broadcast = Broadcaster(cfg.publisher, self.engine.is_provisional) if cfg.publisher.enabled else None
        self.mot, self.video = open_outputs(cfg, frame_rates)
        self.floor_map: Optional[FloorMap] = None
        if cfg.outputs.floor_map and self.homographies:
            self.floor_map = FloorMap(cfg.outputs.floor_map, {})
        elif cfg.outputs.floor_map:
            log.warning("outputs.floor_map is set but no camera has a calibration: no floor map is drawn")
        self._now = 0.0  # scene clock: the newest frame time processed
        self.tracklet_log = open_tracklet_log(cfg, self.reid)
        # what publishes to the region's stream (stream:): with site ids the identity service's own
        self.stream_output = open_stream(cfg, self.reid, self.engine)
        # the one this pipeline writes to (with site: and stream: {site_ids: false} too): not the service's
        self.stream = self.stream_output if cfg.stream is not None and not cfg.stream.site_ids else None

    @property
    def publisher(self) -> Optional[EventPublisher]:
        return self.broadcast.publisher if self.broadcast is not None else None

    def output_errors(self) -> dict[str, str]:
        """``{"<output>/<camera>": reason}`` for every output switched off after a failure."""
        errors = {}
        for out in (self.mot, self.video):
            if out is not None:
                errors.update(out.errors())
        return errors

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
        events: list[TrackEvent] = []
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

    def _carry(self, camera_id: str, gray: Optional[np.ndarray]) -> Detections:
        """The camera's live boxes moved by optical flow onto ``gray`` (a frame is only skipped
        while the governor is coasting, which keeps each grey frame)."""
        prev, live = self._gray.get(camera_id), self.trackers[camera_id].live_boxes()
        if prev is None or gray is None or prev.shape != gray.shape or not len(live):
            return Detections.empty()
        moved, ok = self.flow.carry(prev, gray, live.xyxy)
        return Detections(moved[ok], live.conf[ok])

    def _backend(self) -> ReIDBackend:
        """The ReID model: only a run with a ``reid`` section has crops to embed."""
        if self.reid is None:
            raise RuntimeError("no reid section: nothing to embed")
        return self.reid

    def _embed_detections(self, frames: list[Frame], detections: list[Detections]) -> dict[str, Embeddings]:
        """Every detection embedded (BoT-SORT with our features)."""
        reid = self._backend()
        out = {}
        for frame, dets in zip(frames, detections):
            crops = reid.crops(frame.image, dets.xyxy)
            cams = np.full(len(crops), self.sie[frame.camera_id])
            out[frame.camera_id] = reid.embed(crops, cams)
            self.stats.embedded += len(crops)
        return out

    def _embed_requests(self, requests: list[tuple[Frame, EmbedRequest]]) -> None:
        reid = self._backend()
        crops, cams = [], []
        for frame, req in requests:
            crops.append(reid.crops(frame.image, req.xyxy[None]))
            cams.append(self.sie[frame.camera_id])
        emb = reid.embed(np.concatenate(crops), np.asarray(cams))
        self.stats.embedded += len(requests)
        for i, (frame, req) in enumerate(requests):
            self._absorb(req, emb[i], frame.timestamp)

    def _absorb(self, req: EmbedRequest, crop: Embeddings, now: float) -> None:
        """One crop's embedding (one row, with parts for part-based models) into its tracklet."""
        t = req.tracklet
        parts = part_conf = None
        if crop.parts is not None and crop.part_conf is not None:  # they come together
            parts, part_conf = crop.parts[0], crop.part_conf[0]
        if t.offer(crop.global_[0], req.quality, parts, part_conf, swap_below=self.swap_below):
            # the tracker gave this id to someone else: a new tracklet from the next frame on
            self.trackers[t.camera_id].split(t.local_id)
            self.stats.swaps += 1
        elif self.site_similarity is not None:  # a crop of someone else is no same-person evidence
            beside = [o.key for o in self.books[t.camera_id].tracklets.values() if o.last_seen == now and o is not t]
            self.site_similarity.add_crop(t.key, t.camera_id, crop, beside)

    def _match(self, events: list[TrackEvent], now: float) -> list[IdentityMessage]:
        """Feed the identity engine this step's tracklets; sync global ids; turn decisions into events."""
        ended = [t for e, t, _ in events if e == "ended"]
        live = [t for book in self.books.values() for t in book.tracklets.values()]
        for t in ended:
            self._closing[t.key] = t
            if self.site_similarity is not None:
                self.site_similarity.end(t.key)
            self.trackers[t.camera_id].forget(t.local_id)
            if self.broadcast is not None:
                self.broadcast.forget(t.key)
        summaries = [t.summary() for t in (*live, *ended)]
        if self.tracklet_log is not None:
            self.tracklet_log.call(ALL_CAMERAS, self.tracklet_log.output.write, now, summaries)
        if self.stream is not None:
            self.stream.write(now, summaries)
        decisions = self.engine.update(summaries, now)
        if self.topology_watch is not None:
            self._learn_topology(summaries[len(live) :], now)
        for t in (*live, *self._closing.values()):
            t.global_id = self.engine.global_id(t.key)
        with self.engine.reading():
            out = [self._decision_message(d) for d in decisions]
        self._write_final()
        return out

    def _learn_topology(self, ended: list[TrackletSummary], now: float) -> None:
        """Ended tracklets to the topology watch; a learned topology that changed to the engine."""
        assert self.topology_watch is not None
        self.topology_watch.add(ended)
        engine = cast(Union[IdentityEngine, ThresholdLearning], self.engine)  # a site node learns none
        if isinstance(engine, ThresholdLearning) and engine.engine is None:
            return  # nothing is confident before there is a threshold
        learned = self.topology_watch.step(now, engine.cfg)
        if learned is not None and self.topology_watch.apply:
            engine.use_transitions(transitions_from(TransitionWindow.model_validate(t) for t in learned.transitions()))

    def _describe(self, key: Key) -> tuple[float, int]:
        """Detection score and frame of a tracklet (what the site hub's events show)."""
        t = self._tracklet(key)
        return (float(t.conf), int(t.last_frame)) if t is not None else (0.0, 0)

    def _tracklet(self, key: Key) -> Optional[Tracklet]:
        return self._closing.get(key) or self.books[key[0]].tracklets.get(key[1])

    def _decision_message(self, d: Decision) -> IdentityMessage:
        """Topic, header and optional embedding, taken now: later decisions must not leak into it."""
        ident = self.engine.identities.get(d.global_id)
        t = self._tracklet(d.key) if d.key is not None else None
        emb = ident.embedding if (ident is not None and self.cfg.publisher.send_embeddings) else None
        header = {**decision_event(d, ident, t), **provisional_field(self.engine.is_provisional(d.global_id))}
        return f"identity/{d.global_id}", header, emb

    def _write_final(self) -> None:
        """Tracklets whose identity is final: their global MOT rows are written with it."""
        for key, gid in self.engine.take_final():
            t = self._closing.pop(key, None)
            if t is None:
                continue
            t.global_id = gid
            if self.cfg.site_node:
                self.site_rows[0] += len(t.pending_rows)
                self.site_rows[1] += len(t.pending_rows) if self.engine.is_provisional(gid) else 0
            if self.mot is not None:
                self.mot.call(t.camera_id, self.mot.output.flush, t)
            if self.floor_map is not None and t.floor is not None and len(t.floor):
                self.floor_map.add(gid, t.camera_id, t.floor.arrays()[1])

    def _publish(self, frames: list[Frame], events: list[TrackEvent], identity_events: list[IdentityMessage]) -> None:
        """The step's result rows and video frames, then its events."""
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
        if self.broadcast is not None:
            self.broadcast.step(by_camera, self.books, events, identity_events, self.snapshot)

    def snapshot(self) -> list[dict]:
        with self.engine.reading():
            return self._snapshot()

    def _snapshot(self) -> list[dict]:
        return [
            {
                "global_id": i.global_id,
                "cameras": sorted(i.cameras),
                "last_seen": i.last_seen,
                "live": [[c, lid] for c, lid in sorted(i.members)],
                **provisional_field(self.engine.is_provisional(i.global_id)),
            }
            for i in self.engine.identities.values()
        ]

    def close(self) -> None:
        """End every tracklet (so it gets an identity and its rows are written), then close outputs."""
        events = [(e, t, t.last_seen) for book in self.books.values() for e, t in book.end_all()]
        identity_events = self._match(events, self._now)
        decisions = self.engine.flush(self._now)
        with self.engine.reading():
            identity_events += [self._decision_message(d) for d in decisions]
        self._write_final()
        self.engine.close()  # a site node's link to the hub
        if self.topology_watch is not None:
            self.topology_watch.close()
        if self.stream is not None:
            self.stream.close()
        if self.broadcast is not None:
            self.broadcast.close(events, identity_events)
        if self.mot is not None:
            self.mot.close()
        if self.video is not None:
            self.video.close()
        if self.tracklet_log is not None:
            self.tracklet_log.close()
        if self.floor_map is not None:
            try:
                self.floor_map.write()
            except Exception as exc:  # noqa: BLE001 - an output must not fail the run's close
                log.error("output floor_map: %s: %s", type(exc).__name__, exc)
