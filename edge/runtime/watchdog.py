"""The capture watchdog: a camera whose capture thread died is logged and, for a live stream,
restarted with exponential backoff; every camera that delivers nothing is reported as down.

Streams already reconnect inside their capture thread (``CameraCapture``); the watchdog is for
what that loop cannot catch: an exception that ended the thread (a decoder crash, a bug). Files
and synthetic cameras are not restarted (they would start again from their first frame); they
are reported down instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Optional

from edge.runtime.config import CameraConfig
from edge.runtime.sources import CameraCapture

log = logging.getLogger(__name__)

SILENT_AFTER_S = 2.0  # a live camera with no frame for this long is down


class CaptureWatchdog:
    """Owns the list of capture threads (replaced in place on a restart) and their health."""

    def __init__(
        self,
        captures: list[CameraCapture],
        restart: Callable[[CameraConfig], CameraCapture],
        max_backoff_s: float = 10.0,
    ):
        self.captures = captures
        self.restart = restart
        self.max_backoff_s = max_backoff_s
        self.restarts: dict[str, int] = {c.cam.id: 0 for c in captures}
        self._dead_since: dict[str, float] = {}
        self._next_try: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        now = time.monotonic()
        self._last_frame: dict[str, float] = {c.cam.id: now for c in captures}

    def frame(self, camera_id: str) -> None:
        """A camera delivered a frame: it is up."""
        self._last_frame[camera_id] = time.monotonic()
        self._dead_since.pop(camera_id, None)
        self._backoff.pop(camera_id, None)

    def will_restart(self, c: CameraCapture) -> bool:
        return bool(c.error) and c.reader.live

    def check(self, now: Optional[float] = None) -> None:
        """Restart live cameras whose thread died, once their backoff has passed."""
        now = time.monotonic() if now is None else now
        for i, c in enumerate(self.captures):
            cam = c.cam.id
            if c.is_alive() or not c.error:
                continue
            if cam not in self._dead_since:
                self._dead_since[cam] = now
                self._backoff[cam] = self._backoff.get(cam, 0.5)
                self._next_try[cam] = now + self._backoff[cam]
                log.error(
                    "camera %s: capture stopped: %s%s",
                    cam,
                    c.error,
                    f"; restarting in {self._backoff[cam]:.1f}s"
                    if c.reader.live
                    else " (not a live stream: not restarted)",
                )
            if not c.reader.live or now < self._next_try[cam]:
                continue
            self.captures[i] = replacement = self.restart(c.cam)
            replacement.reconnects, replacement.dropped = (
                c.reconnects,
                c.dropped,
            )  # the camera's counts go on across restarts
            replacement.start()
            self.restarts[cam] += 1
            self._backoff[cam] = min(2 * self._backoff[cam], self.max_backoff_s)
            self._next_try[cam] = now + self._backoff[cam]
            self._dead_since.pop(cam, None)
            log.warning("camera %s: capture restarted (restart %d)", cam, self.restarts[cam])

    def down(self, now: Optional[float] = None) -> dict[str, float]:
        """Seconds since the last frame of each camera that is down: its capture thread died, or it
        is a live stream that has been silent for more than ``SILENT_AFTER_S``."""
        now = time.monotonic() if now is None else now
        out = {}
        for c in self.captures:
            silent = now - self._last_frame[c.cam.id]
            if (c.error and not c.is_alive()) or (c.reader.live and silent > SILENT_AFTER_S):
                out[c.cam.id] = round(silent, 1)
        return out
