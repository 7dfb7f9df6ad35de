"""Identity events over ZeroMQ PUB (schema ``clipreid-edge.events`` version 2).

Every message is multipart:

1. topic (UTF-8): ``track/<camera>``, ``identity/<global_id>``, ``snapshot`` or ``stats``
   (subscribers filter by prefix: ``identity``, ``track/cam1`` ...);
2. header (UTF-8 JSON): ``schema``, ``version``, ``seq`` (per publisher, gaps mean drops),
   ``publish_ts`` and the event's own fields (see :func:`track_event` and README);
3. optional: the identity embedding as raw little-endian float16 (``embedding_dim`` in header);
4. optional, last: a JPEG (``jpeg_bytes`` in header): the preview of ``frame/<camera>`` messages,
   or the tracklet's crop on identity ``new`` / ``assigned`` (both off by default, see
   :mod:`edge.runtime.preview`).

The pipeline never waits for subscribers: messages go through a bounded queue (oldest dropped)
to one publisher thread, and the socket's send high-water mark drops messages for subscribers
that do not keep up instead of blocking. One ZeroMQ context per process, ``linger=0`` on close.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import zmq

log = logging.getLogger(__name__)

SCHEMA = "clipreid-edge.events"
SCHEMA_VERSION = 2


def track_event(event: str, t, capture_ts: float) -> dict[str, Any]:
    """Header fields for a tracklet event (new / found / update / lost / ended)."""
    x0, y0, x1, y1 = (round(float(v), 1) for v in t.xyxy)
    return {
        "event": event,
        "camera": t.camera_id,
        "local_id": t.local_id,
        "global_id": t.global_id,
        "bbox": [x0, y0, x1, y1],
        "score": round(float(t.conf), 3),
        "capture_ts": capture_ts,
        "frame": t.last_frame,
        **floor_field(t),
    }


def floor_field(t) -> dict[str, Any]:
    """``{"floor": [x, y]}``: the tracklet's latest floor position in metres (calibrated cameras)."""
    if getattr(t, "floor", None) is None or not len(t.floor):
        return {}
    x, y = t.floor.points[-1]
    return {"floor": [round(float(x), 2), round(float(y), 2)]}


def decision_event(d, ident=None, t=None) -> dict[str, Any]:
    """Header fields for an identity event, from an identity engine :class:`~edge.identity.Decision`.

    ``new`` / ``assigned``: tracklet ``t`` founded / joined ``global_id``; ``merged``: identity
    ``from`` is the same person as ``into`` (= ``global_id``) and is folded into it; ``reassigned``:
    tracklet (``camera``, ``local_id``) moved ``from`` one identity ``into`` another; ``expired``:
    ``global_id`` unseen for the time to live. A new identity was founded by ``t`` alone, so its
    ``cameras`` is ``t``'s camera even when other tracklets joined it in the same round (they get
    their own ``assigned`` events). ``ident`` is the identity as it stands now (None once gone).
    """
    if d.kind == "new" and t is not None:
        cameras = [t.camera_id]
    else:
        cameras = sorted(ident.cameras) if ident is not None else list(d.cameras)
    out: dict[str, Any] = {"event": d.kind, "global_id": d.global_id, "cameras": cameras}
    last_seen = ident.last_seen if ident is not None else (t.last_seen if t is not None else None)
    if last_seen is not None:
        out["last_seen"] = last_seen
    if d.kind == "new" and getattr(ident, "sealed", False):
        out["sealed"] = True  # founded by a tracklet too short to match: nothing will join it
    if d.kind in ("merged", "reassigned"):
        out["from"], out["into"] = d.previous, d.global_id
    if d.key is not None:
        out.update(camera=d.key[0], local_id=d.key[1])
    if t is not None and d.kind != "merged":
        x0, y0, x1, y1 = (round(float(v), 1) for v in t.xyxy)
        out.update(bbox=[x0, y0, x1, y1], score=round(float(t.conf), 3), capture_ts=t.last_seen, frame=t.last_frame)
    return out


class EventPublisher:
    """Bind a PUB socket and send from a background thread; :meth:`publish` never blocks."""

    def __init__(
        self,
        endpoint: str,
        high_water_mark: int = 1000,
        queue_size: int = 10000,
        curve=None,
        insecure: bool = False,
        guard=None,
        max_pending_images: int = 16,
    ):
        """``curve`` (:class:`edge.wire.curve.CurveServer`): encrypt, and let in only the allow-listed
        subscribers; without it a bind beyond localhost is refused unless ``insecure``. ``guard``: the
        process's :class:`edge.wire.curve.Guard` (one ZAP authenticator per context).
        ``max_pending_images``: previews and crops waiting for the publisher thread (each holds
        pixels); past it a new image message is dropped, so images never crowd out events nor
        grow memory when JPEG encoding falls behind."""
        from edge.wire.curve import Guard, check_bind

        check_bind(endpoint, curve is not None, insecure, "the event publisher")
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.guard, self._own_guard = None, False
        if curve is not None:
            self.guard = guard or Guard(self.context)
            self._own_guard = guard is None
            self.guard.serve(self.socket, curve.secret_key, curve.allow, "subscribers")
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(0)
            if self.guard is not None and self._own_guard:
                self.guard.stop()
            raise RuntimeError(f"cannot bind the event publisher to {endpoint}: {exc}") from exc
        self.endpoint = endpoint
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self.seq = 0
        self.sent = self.dropped = 0
        self.max_pending_images = max_pending_images
        self.images_dropped = 0
        self._pending_images = 0
        self._images_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
        self._thread.start()

    def publish(
        self,
        topic: str,
        header: dict[str, Any],
        embedding: Optional[np.ndarray] = None,
        jpeg: Optional[bytes | Callable[[], Optional[bytes]]] = None,
    ) -> None:
        """Queue one message. ``jpeg`` may be a function returning the JPEG (or None to leave it
        out): it then runs on the publisher thread, off the pipeline's path (previews, crops)."""
        header = {"schema": SCHEMA, "version": SCHEMA_VERSION, **header}
        frames = [topic.encode()]
        payload = []
        if embedding is not None:
            header["embedding_dim"] = int(np.asarray(embedding).size)
            payload.append(np.asarray(embedding, "<f2").tobytes())
        if jpeg is not None:
            with self._images_lock:
                if self._pending_images >= self.max_pending_images:
                    self.images_dropped += 1
                    return
                self._pending_images += 1
            if not callable(jpeg):
                header["jpeg_bytes"] = len(jpeg)
            payload.append(jpeg)
        item = (frames, header, payload, jpeg is not None)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._taken(self._queue.get_nowait())
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _taken(self, item: tuple) -> tuple:
        """An item leaves the queue (sent or dropped): an image frees its place."""
        if item[3]:
            with self._images_lock:
                self._pending_images -= 1
        return item

    def _loop(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            try:
                frames, header, payload, _ = self._taken(self._queue.get(timeout=0.1))
            except queue.Empty:
                continue
            if payload and callable(payload[-1]):
                payload = self._encode(header, payload)
            self.seq += 1
            header["seq"] = self.seq
            header["publish_ts"] = time.time()
            parts = frames + [json.dumps(header).encode()] + payload
            try:
                self.socket.send_multipart(parts, flags=zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.dropped += 1
            except zmq.ZMQError as exc:
                self.dropped += 1
                log.error("publish failed on %s: %s", self.endpoint, exc)

    @staticmethod
    def _encode(header: dict[str, Any], payload: list) -> list:
        try:
            jpeg = payload[-1]()
        except Exception as exc:  # noqa: BLE001 - an image must not stop the events
            log.error("JPEG for %s failed: %s: %s", header.get("event"), type(exc).__name__, exc)
            jpeg = None
        if jpeg is None:
            return payload[:-1]
        header["jpeg_bytes"] = len(jpeg)
        return payload[:-1] + [jpeg]

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.socket.close(0)
        if self.guard is not None and self._own_guard:
            self.guard.stop()
