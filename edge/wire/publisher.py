"""Identity events over ZeroMQ PUB (schema ``clipreid-edge.events`` version 2): the socket and its queue.

Every message is multipart:

1. topic (UTF-8): ``track/<camera>``, ``identity/<global_id>``, ``snapshot`` or ``stats``
   (subscribers filter by prefix: ``identity``, ``track/cam1`` ...);
2. header (UTF-8 JSON): ``schema``, ``version``, ``seq`` (per publisher, gaps mean drops),
   ``publish_ts`` and the event's own fields (built by :mod:`edge.wire.events`, see docs/events.md);
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

from edge.wire.events import SCHEMA, SCHEMA_VERSION, decision_event, track_event

# The builders moved to edge.wire.events; these names stay importable from here for the callers
# that still use them (edge/runtime/pipeline.py, edge/site/hub_service.py, tests/test_camera_centering.py).
__all__ = ["SCHEMA", "SCHEMA_VERSION", "EventPublisher", "decision_event", "track_event"]

log = logging.getLogger(__name__)

HIGH_WATER_MARK = 1000  # messages queued per subscriber (publisher.high_water_mark)

JpegMaker = Callable[[], Optional[bytes]]  # a JPEG made on the publisher thread (None: leave it out)
Part = bytes | JpegMaker
# a queued message: topic frame, header, payload parts, and whether it holds an image
Queued = tuple[list[bytes], dict[str, Any], list[Part], bool]


class EventPublisher:
    """Bind a PUB socket and send from a background thread; :meth:`publish` never blocks."""

    def __init__(
        self,
        endpoint: str,
        high_water_mark: int = HIGH_WATER_MARK,
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
        self.context: zmq.Context = zmq.Context.instance()
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
        self._queue: queue.Queue[Queued] = queue.Queue(maxsize=queue_size)
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
        jpeg: Optional[bytes | JpegMaker] = None,
    ) -> None:
        """Queue one message. ``jpeg`` may be a function returning the JPEG (or None to leave it
        out): it then runs on the publisher thread, off the pipeline's path (previews, crops)."""
        header = {"schema": SCHEMA, "version": SCHEMA_VERSION, **header}
        frames = [topic.encode()]
        payload: list[Part] = []
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
        item: Queued = (frames, header, payload, jpeg is not None)
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

    def _taken(self, item: Queued) -> Queued:
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
            last = payload[-1] if payload else None
            if callable(last):
                payload = self._encode(header, payload[:-1], last)
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
    def _encode(header: dict[str, Any], head: list[Part], make: JpegMaker) -> list[Part]:
        """The payload with the JPEG ``make`` returns last (``jpeg_bytes`` in the header), or
        without it when it gives None or fails."""
        try:
            jpeg = make()
        except Exception as exc:  # noqa: BLE001 - an image must not stop the events
            log.error("JPEG for %s failed: %s: %s", header.get("event"), type(exc).__name__, exc)
            jpeg = None
        if jpeg is None:
            return head
        header["jpeg_bytes"] = len(jpeg)
        return head + [jpeg]

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.socket.close(0)
        if self.guard is not None and self._own_guard:
            self.guard.stop()
