"""What the box publishes after each step: the events of ``docs/events.md`` on the ZeroMQ socket.

``track/<camera>`` lifecycle events as the tracklet book reports them, plus a rate-limited
``update`` per active track (``update_interval_s``); ``identity/<id>`` decisions, with a JPEG crop
for ``new`` / ``assigned`` when crops are on; ``frame/<camera>`` previews (downscaled JPEGs with
their boxes, ``preview_fps``); and a ``snapshot`` of the identities every ``snapshot_interval_s``
for late subscribers. Images are encoded later, on the publisher's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Optional

import numpy as np

from edge.identity.records import Key
from edge.runtime.preview import PreviewClock, crop_region, downscale, encode_jpeg, fit_jpeg
from edge.runtime.tracklets import ACTIVE, Tracklet, TrackletBook
from edge.runtime.types import Frame
from edge.wire.config import PublisherConfig
from edge.wire.publisher import EventPublisher, track_event

TrackEvent = tuple[str, Tracklet, float]  # (kind, tracklet, capture time)
IdentityMessage = tuple[str, dict[str, Any], Optional[np.ndarray]]  # (topic, header, embedding)


class Broadcaster:
    """The publisher socket and the clocks that pace what goes out on it."""

    def __init__(self, cfg: PublisherConfig, provisional: Callable[[int], bool] = lambda gid: False):
        """``provisional``: whether a global id is one a site node gave while its hub was away
        (its events say so)."""
        self.cfg = cfg
        self.provisional = provisional
        self.publisher = EventPublisher(cfg.endpoint, cfg.high_water_mark, curve=cfg.curve, insecure=cfg.insecure)
        self.previews = PreviewClock(cfg.preview_fps)
        self._last_update: dict[Key, float] = {}  # wall time of each track's last ``update`` event
        self._last_snapshot = 0.0

    def forget(self, key: Key) -> None:
        """A tracklet ended: no more updates for it."""
        self._last_update.pop(key, None)

    def step(
        self,
        by_camera: dict[str, Frame],
        books: dict[str, TrackletBook],
        events: list[TrackEvent],
        identity_events: list[IdentityMessage],
        snapshot: Callable[[], list[dict]],
    ) -> None:
        """Everything one step has to say (``by_camera``: this step's frame of each camera)."""
        now = time.time()
        changed = set()
        for kind, t, ts in events:
            changed.add(t.key)
            self.publisher.publish(f"track/{t.camera_id}", self._track_event(kind, t, ts))
        for topic, header, emb in identity_events:
            self.publisher.publish(topic, header, emb, self._crop(header, by_camera))
        self._previews(by_camera, books, now)
        for camera_id, frame in by_camera.items():
            for t in books[camera_id].tracklets.values():
                if t.state != ACTIVE or t.key in changed:
                    continue
                if now - self._last_update.get(t.key, 0.0) >= self.cfg.update_interval_s:
                    self._last_update[t.key] = now
                    self.publisher.publish(f"track/{t.camera_id}", self._track_event("update", t, frame.timestamp))
        if now - self._last_snapshot >= self.cfg.snapshot_interval_s:
            self._last_snapshot = now
            self.publisher.publish("snapshot", {"event": "snapshot", "identities": snapshot()})

    def close(self, events: Iterable[TrackEvent], identity_events: Iterable[IdentityMessage]) -> None:
        """The end of the run's events (every tracklet ended, the last decisions), then the socket."""
        for kind, t, ts in events:
            self.publisher.publish(f"track/{t.camera_id}", self._track_event(kind, t, ts))
        for topic, header, emb in identity_events:
            self.publisher.publish(topic, header, emb)
        self.publisher.close()

    def _track_event(self, kind: str, t: Tracklet, ts: float) -> dict[str, Any]:
        return track_event(kind, t, ts, t.global_id is not None and self.provisional(t.global_id))

    def _crop(self, header: dict[str, Any], by_camera: dict[str, Frame]) -> Optional[Callable[[], Optional[bytes]]]:
        """The JPEG crop (encoded later, on the publisher thread) for an identity ``new`` /
        ``assigned`` event, when crops are on and the tracklet's box is from a frame of this
        step (so the crop shows the box)."""
        p = self.cfg
        if not p.crops or header.get("event") not in ("new", "assigned"):
            return None
        camera = header.get("camera")
        frame = by_camera.get(camera) if camera is not None else None
        if frame is None or frame.index != header.get("frame"):
            return None
        region = crop_region(frame.image, header["bbox"], p.crop_height)
        return None if region is None else partial(fit_jpeg, region, p.crop_max_bytes)

    def _previews(self, by_camera: dict[str, Frame], books: dict[str, TrackletBook], now: float) -> None:
        """``frame/<camera>``: a downscaled JPEG with the boxes (preview pixels) and their ids."""
        p = self.cfg
        for camera_id, frame in by_camera.items():
            if not self.previews.due(camera_id, now):
                continue
            small, scale = downscale(frame.image, p.preview_width)
            boxes = [
                [*(round(float(v) * scale, 1) for v in t.xyxy), t.local_id, t.global_id]
                for t in books[camera_id].tracklets.values()
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
