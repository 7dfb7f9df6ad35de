"""Frame sources and the per-camera capture thread.

A *reader* knows how to get images out of one kind of source (OpenCV video file / RTSP / HTTP /
USB, an image folder, the synthetic world). A :class:`CameraCapture` thread owns one reader and
keeps only the newest frame for the pipeline: a slow pipeline drops frames instead of building
a backlog (counted in ``dropped``). Live sources that fail are reopened with exponential
backoff while the other cameras keep running; files end (or loop).

With ``realtime: false`` a file or synthetic camera instead hands over every frame and waits for
the pipeline (lockstep), which is what evaluation against ground truth needs.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional, Protocol
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from .config import CameraConfig
from .types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class SourceError(RuntimeError):
    """A source that cannot be opened (bad path, unreachable stream, unknown scene)."""


class FrameReader(Protocol):
    fps: Optional[float]
    live: bool

    def open(self) -> None: ...

    def read(self) -> Optional[np.ndarray]: ...

    def close(self) -> None: ...


class VideoReader:
    """OpenCV capture of a video file, a stream URL or a USB camera index."""

    def __init__(self, source: str):
        self.source = source
        self.live = source.isdigit() or "://" in source
        self.cap: Optional[cv2.VideoCapture] = None
        self.fps: Optional[float] = None

    def open(self) -> None:
        target = int(self.source) if self.source.isdigit() else self.source
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video source {self.source!r}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and fps < 1000 else None

    def read(self) -> Optional[np.ndarray]:
        ok, image = self.cap.read() if self.cap is not None else (False, None)
        return image if ok else None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderReader:
    """Sorted images of a folder (a MOT Challenge ``img1`` folder or its sequence folder)."""

    live = False

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.files: list[Path] = []
        self.position = 0
        self.fps = None

    def open(self) -> None:
        folder = self.folder / "img1" if (self.folder / "img1").is_dir() else self.folder
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        self.position = 0
        seqinfo = self.folder / "seqinfo.ini"
        if seqinfo.is_file():
            for line in seqinfo.read_text().splitlines():
                if line.lower().startswith("framerate="):
                    self.fps = float(line.split("=", 1)[1])

    def read(self) -> Optional[np.ndarray]:
        if self.position >= len(self.files):
            return None
        image = cv2.imread(str(self.files[self.position]))
        self.position += 1
        if image is None:
            raise SourceError(f"unreadable image {self.files[self.position - 1]}")
        return image

    def close(self) -> None:
        pass


class SyntheticReader:
    """Frames of a synthetic world camera: ``synthetic://<scene>?camera=<name|index>``.

    Extra query keys: ``seed`` (other people), ``frames`` (stop early), ``live=1`` (behave like a
    stream: failures reconnect), and ``fail_after=N&fail_for_s=S`` to simulate a camera that
    drops after N frames and refuses to reopen for S seconds (for testing reconnection);
    ``reopen_size=WxH`` makes it come back at another resolution; ``crash_after=N`` raises after N
    frames (a decoder crash that ends the capture thread, for testing the watchdog).
    """

    def __init__(self, url: str):
        from .world.render import CameraRenderer
        from .world.scene import World, resolve_scene

        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        scene = parsed.netloc or parsed.path.strip("/")
        overrides = {"seed": int(query["seed"])} if "seed" in query else {}
        try:
            world = World(resolve_scene(scene, **overrides))
            index = world.camera(query.get("camera", "0"))
        except ValueError as exc:
            raise SourceError(f"{url}: {exc}") from None
        self.renderer = CameraRenderer(world, index)
        self.fps = world.spec.fps
        self.length = min(world.spec.num_frames, int(query.get("frames", world.spec.num_frames)))
        self.live = query.get("live", "0") == "1" or "fail_after" in query or "crash_after" in query
        self.fail_after = int(query["fail_after"]) if "fail_after" in query else None
        self.fail_for_s = float(query.get("fail_for_s", 1.0))
        self.reopen_size = tuple(int(v) for v in query["reopen_size"].split("x")) if "reopen_size" in query else None
        self.crash_after = int(query["crash_after"]) if "crash_after" in query else None
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
        if self.fail_after is not None and self.position >= self.fail_after and self._failed_at is None:
            self._failed_at = time.monotonic()
            return None
        if self.position >= self.length:
            return None
        if self.crash_after is not None and self.position >= self.crash_after:
            raise RuntimeError(f"simulated decoder crash after {self.crash_after} frames")
        if self.live:  # a live camera delivers at its own rate, whatever the reader does
            time.sleep(max(0.0, self._clock + self.position / self.fps - time.monotonic()))
        image, _ = self.renderer.render(self.position)
        self.position += 1
        return image if self.size is None else cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        pass


def make_reader(source: str) -> FrameReader:
    if source.startswith("synthetic://"):
        return SyntheticReader(source)
    if source.isdigit() or "://" in source:
        return VideoReader(source)
    path = Path(source)
    if path.is_dir():
        return ImageFolderReader(source)
    if path.is_file():
        return VideoReader(source)
    raise SourceError(f"source not found: {source}")


class CameraCapture(threading.Thread):
    """One camera's capture loop; the pipeline calls :meth:`take` for the newest frame."""

    def __init__(self, cam: CameraConfig, new_frame: threading.Event, stop: threading.Event,
                 reconnect_max_s: float = 10.0, reader: Optional[FrameReader] = None, epoch: Optional[float] = None):
        super().__init__(name=f"capture-{cam.id}", daemon=True)
        self.epoch = time.time() if epoch is None else epoch  # scene time of a file's first frame
        self.cam = cam
        self.reader = reader or make_reader(cam.source)
        self.new_frame, self.stop = new_frame, stop
        self.reconnect_max_s = reconnect_max_s
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self.finished = False
        self.read_count = self.dropped = self.reconnects = 0
        self.decode_seconds = 0.0
        self.error: Optional[str] = None

    def take(self) -> Optional[Frame]:
        with self._cond:
            frame, self._latest = self._latest, None
            self._cond.notify_all()
        return frame

    def _open_with_backoff(self) -> bool:
        delay = 0.25
        while not self.stop.is_set():
            try:
                self.reader.open()
                return True
            except SourceError as exc:
                if not self.reader.live:
                    self.error = str(exc)
                    log.error("camera %s: %s", self.cam.id, exc)
                    return False
                log.warning("camera %s: %s; retrying in %.1fs", self.cam.id, exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)
        return False

    def _stride(self) -> int:
        if self.cam.fps is None or not self.reader.fps or self.reader.live:
            return 1
        return max(1, int(round(self.reader.fps / self.cam.fps)))

    def _scene_time(self, index: int) -> float:
        """Media time for files and synthetic cameras (frame position / rate), wall clock for live streams."""
        rate = self.reader.fps or self.cam.fps
        if self.reader.live or not rate:
            return time.time()
        return self.epoch + (index - 1) / rate

    def _deliver(self, frame: Frame) -> None:
        with self._cond:
            if not self.cam.realtime and not self.reader.live:
                while self._latest is not None and not self.stop.is_set():
                    self._cond.wait(0.1)
            elif self._latest is not None:
                self.dropped += 1
            self._latest = frame
        self.new_frame.set()

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - a broken camera must not kill the process
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s stopped", self.cam.id)
        finally:
            self.reader.close()
            self.finished = True
            self.new_frame.set()

    def _loop(self) -> None:
        if not self._open_with_backoff():
            return
        stride, index = self._stride(), 0
        period = stride / self.reader.fps if self.reader.fps else (1.0 / self.cam.fps if self.cam.fps else 0.0)
        next_due = time.monotonic()
        while not self.stop.is_set():
            start = time.perf_counter()
            image = self.reader.read()
            if image is None:
                if self.reader.live:
                    self.reconnects += 1
                    log.warning("camera %s: stream dropped, reconnecting", self.cam.id)
                    self.reader.close()
                    self.stop.wait(0.25)  # never spin on a stream that opens and drops at once
                    if not self._open_with_backoff():
                        return
                    continue
                if self.cam.loop:
                    self.reader.close()
                    self.reader.open()
                    continue
                return
            index += 1
            if (index - 1) % stride:
                continue
            if self.cam.resize:
                image = cv2.resize(image, tuple(self.cam.resize), interpolation=cv2.INTER_AREA)
            decode = time.perf_counter() - start
            self.decode_seconds += decode
            self.read_count += 1
            self._deliver(Frame(self.cam.id, index, self._scene_time(index), image, decode))
            if self.cam.realtime and not self.reader.live and period:
                next_due += period
                self.stop.wait(max(0.0, next_due - time.monotonic()))
