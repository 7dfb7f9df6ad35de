"""The ``synthetic://`` reader: a camera of the synthetic world (:mod:`sim`) as a frame source.

This module is the one declared place the edge runtime imports ``sim`` (the layer contract in
pyproject.toml allows it here and nowhere else in ``edge``): a box that runs real cameras never
loads it (:func:`edge.runtime.readers.make_reader` imports it only for a ``synthetic://`` source).
"""

from __future__ import annotations

import time
from typing import Optional
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edge.runtime.source_diagnosis import SourceError
from sim.render import CameraRenderer
from sim.scene import World, resolve_scene


def is_live_url(url: str) -> bool:
    """``live=1``, ``fail_after`` or ``crash_after``: the camera behaves like a stream."""
    query = parse_qs(urlparse(url).query)
    return query.get("live", ["0"])[-1] == "1" or "fail_after" in query or "crash_after" in query


class SyntheticReader:
    """Frames of a synthetic world camera: ``synthetic://<scene>?camera=<name|index>``.

    Extra query keys: ``seed`` (other people), ``duration_s`` and ``people`` (a longer day of the
    same site: as many people a minute with ``people`` scaled alike), ``frames`` (stop early),
    ``live=1`` (behave like a stream: failures reconnect), and ``fail_after=N&fail_for_s=S`` to simulate a camera that
    drops after N frames and refuses to reopen for S seconds (for testing reconnection);
    ``reopen_size=WxH`` makes it come back at another resolution; ``crash_after=N`` raises after N
    frames (a decoder crash that ends the capture thread, for testing the watchdog).
    """

    def __init__(self, url: str):
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        scene = parsed.netloc or parsed.path.strip("/")
        try:
            overrides = {
                field: kind(query[key])
                for key, field, kind in (
                    ("seed", "seed", int),
                    ("duration_s", "duration_s", float),
                    ("people", "num_identities", int),
                )
                if key in query
            }
            world = World(resolve_scene(scene, **overrides))
            index = world.camera(query.get("camera", "0"))
        except ValueError as exc:
            raise SourceError(f"{url}: {exc}") from None
        self.renderer = CameraRenderer(world, index)
        self.fps = world.spec.fps
        self.length = min(world.spec.num_frames, int(query.get("frames", world.spec.num_frames)))
        self.live = is_live_url(url)
        self.fail_after = int(query["fail_after"]) if "fail_after" in query else None
        self.fail_for_s = float(query.get("fail_for_s", 1.0))
        self.reopen_size = _size(query["reopen_size"]) if "reopen_size" in query else None
        self.crash_after = int(query["crash_after"]) if "crash_after" in query else None
        self.frame_count: Optional[int] = None
        self.problem: Optional[str] = None
        self.size: Optional[tuple[int, int]] = None  # (w, h) frames are resized to, after a reopen
        self._failed_at: Optional[float] = None
        self.position = 0
        self._clock = time.monotonic()

    def open(self) -> None:
        if self._failed_at is not None:
            if time.monotonic() - self._failed_at < self.fail_for_s:
                raise SourceError("synthetic camera is down (simulated)")
            self.fail_after = None  # back for good
            self.size = self.reopen_size
        if self.position >= self.length:
            if self.live:
                raise SourceError("synthetic stream has ended")
            self.position = 0  # reopening a file-like source starts it again (loop: true)
        self._clock = time.monotonic() - self.position / self.fps

    def read(self) -> Optional[np.ndarray]:
        return self.retrieve(self.position) if self.grab() else None

    def grab(self) -> bool:
        """The next frame's turn, without rendering it (rendering is the costly part: ~15 ms)."""
        if self.fail_after is not None and self.position >= self.fail_after and self._failed_at is None:
            self._failed_at = time.monotonic()
            return False
        if self.position >= self.length:
            return False
        if self.crash_after is not None and self.position >= self.crash_after:
            raise RuntimeError(f"simulated decoder crash after {self.crash_after} frames")
        if self.live:  # a live camera delivers at its own rate, whatever the reader does
            time.sleep(max(0.0, self._clock + self.position / self.fps - time.monotonic()))
        self.position += 1
        return True

    def retrieve(self, position: int) -> Optional[np.ndarray]:
        """Frame ``position`` (1: the first), rendered: any frame, the world is a function of time."""
        image, _ = self.renderer.render(position - 1)
        return (
            image if image is None or self.size is None else cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        )

    def close(self) -> None:
        pass


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (w, h)."""
    width, height = text.split("x")
    return int(width), int(height)
