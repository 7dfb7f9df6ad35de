"""Frame sources and the per-camera capture thread.

A *reader* knows how to get images out of one kind of source (OpenCV video file / RTSP / HTTP /
USB, an image folder, the synthetic world). A :class:`CameraCapture` thread owns one reader and
keeps only the newest frame for the pipeline: a slow pipeline drops frames instead of building
a backlog (counted in ``dropped``). Live sources that fail are reopened with exponential
backoff while the other cameras keep running (each retry counted in ``reconnects``, each
failure one warning line with its reason); files end (or loop).

OpenCV and FFmpeg print their own multi-line diagnostics to stderr and expose no reason through
their API, so :func:`quiet_opencv` silences them and the readers find the reason themselves
(the file's content, the device node, a timed-out or refused connection). Video files and image
folders are probed when the config is loaded (:func:`why_unreadable`), before any model loads.

With ``realtime: false`` a file or synthetic camera instead hands over every frame and waits for
the pipeline (lockstep), which is what evaluation against ground truth needs.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Protocol
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edge.runtime.config import CameraConfig
from edge.runtime.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own console output (a missing USB index prints 9 lines per
    retry, a bad file FFmpeg's ``moov atom not found``); our warnings carry the reason instead.
    A user who sets ``OPENCV_LOG_LEVEL`` or ``OPENCV_FFMPEG_LOGLEVEL`` keeps their choice. FFmpeg's
    level is read once, when OpenCV first uses FFmpeg: call this before any video is opened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def redact(url: str) -> str:
    """``url`` without its password, for log lines (``rtsp://admin:***@10.0.0.5/stream1``)."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)).geturl()


class SourceError(RuntimeError):
    """A source that cannot be opened (bad path, unreachable stream, unknown scene)."""


class FrameReader(Protocol):
    fps: Optional[float]
    live: bool
    frame_count: Optional[int]  # a file's length as its header gives it (None: unknown, or live)
    problem: Optional[str]  # why the last read gave no frame, when the reader knows

    def open(self) -> None: ...

    def read(self) -> Optional[np.ndarray]: ...

    def close(self) -> None: ...


class VideoReader:
    """OpenCV capture of a video file, a stream URL or a USB camera index.

    Streams are opened through FFmpeg with open and read timeouts of ``timeout_s`` (OpenCV's
    default is 30 s, so a server that accepts and never answers held a camera that long); a
    failure raises :class:`SourceError` with the reason, and a failed read leaves it in
    :attr:`problem`."""

    def __init__(self, source: str, timeout_s: float = 4.0):
        self.source = source
        self.usb = source.isdigit()
        self.stream = "://" in source
        self.live = self.usb or self.stream
        self.timeout_s = timeout_s
        self.cap: Optional[cv2.VideoCapture] = None
        self.fps: Optional[float] = None
        self.frame_count: Optional[int] = None  # a file's length as its header says (for a truncation warning)
        self.problem: Optional[str] = None  # why the last read gave no frame

    def open(self) -> None:
        started = time.monotonic()
        if self.usb:  # Linux: V4L2 only; through FFmpeg it would wait on the lock a hung stream's open holds
            cap = cv2.VideoCapture(int(self.source), cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY)
        elif self.stream:
            ms = int(self.timeout_s * 1000)
            cap = cv2.VideoCapture(
                self.source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            )
        else:
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            what = f"USB camera {self.source}" if self.usb else redact(self.source)
            raise SourceError(f"cannot open {what}: {self._why_not_opened(time.monotonic() - started)}")
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and fps < 1000 else None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if not self.live and count and count > 0 else None

    def _why_not_opened(self, elapsed: float) -> str:
        if self.usb:
            return usb_failure(int(self.source))
        if self.stream:
            return stream_failure(self.source, elapsed, self.timeout_s)
        return why_unreadable(self.source) or "OpenCV cannot open it"

    def read(self) -> Optional[np.ndarray]:
        started = time.monotonic()
        ok, image = self.cap.read() if self.cap is not None else (False, None)
        if ok:
            return image
        if self.stream and time.monotonic() - started >= 0.9 * self.timeout_s:
            self.problem = f"no frame within {self.timeout_s:g} s (read timeout)"
        elif self.live:
            self.problem = (
                "the stream ended or the connection dropped"
                if self.stream
                else "the camera stopped delivering frames (unplugged?)"
            )
        return None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def stream_failure(url: str, elapsed: float, timeout_s: float) -> str:
    """Why OpenCV could not open a stream URL: it timed out, or a plain TCP connection tells
    (unknown host, refused), or the server answers and the stream itself is the problem."""
    if elapsed >= 0.9 * timeout_s:
        return f"no answer within {timeout_s:g} s (open timeout)"
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or DEFAULT_PORTS.get(parsed.scheme.lower())
    if not host or not port:
        return "OpenCV/FFmpeg cannot open this URL"
    try:
        with socket.create_connection((host, port), timeout=max(0.1, timeout_s - elapsed)):
            pass
    except socket.gaierror:
        return f"unknown host {host!r}"
    except TimeoutError:
        return f"{host}:{port} does not answer"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return "the server answers but OpenCV/FFmpeg cannot open the stream (wrong path or credentials, or an unsupported codec)"


def usb_failure(index: int) -> str:
    """Why OpenCV could not open USB camera ``index`` (Linux: what its device node says)."""
    if not sys.platform.startswith("linux"):
        return f"no camera at index {index}, or it is in use"
    device = Path(f"/dev/video{index}")
    if not device.exists():
        return f"no such device {device}"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"permission denied on {device} (is the user in the 'video' group?)"
    return f"{device} cannot be opened (in use by another program, or not a capture device)"


def why_unreadable(source: str) -> Optional[str]:
    """Why a video file or image folder cannot be a camera, or None when it can: probed by
    decoding its first frame (or image), so a bad source is a config error found before any
    model loads, with a reason instead of FFmpeg's ``moov atom not found``."""
    quiet_opencv()
    path = Path(source)
    if not path.exists():
        return "video file or image folder not found"
    if path.is_dir():
        folder, files = image_files(path)
        if not files:
            return f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}"
        return None if cv2.imread(str(files[0])) is not None else f"cannot decode its first image {files[0].name}"
    if path.stat().st_size == 0:
        return "an empty file (0 bytes)"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return undecodable_reason(path)
        if not cap.read()[0]:
            return "OpenCV opens it but decodes no frame (truncated, or a codec this OpenCV build lacks)"
    finally:
        cap.release()
    return None


def undecodable_reason(path: Path) -> str:
    """What a file OpenCV cannot open is: text, an unfinished MP4 recording, or something else."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head[4:8] == b"ftyp" and "moov" not in mp4_boxes(path):
        return "an MP4 without its index (no 'moov' box): truncated, or a recording that was never finished"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "a text file, not a video"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut at the end of the 4 KiB read
                return "a text file, not a video"
    return "not a video OpenCV can decode"


def mp4_boxes(path: Path, limit: int = 1000) -> list[str]:
    """Top-level box types of an ISO media file (``ftyp``, ``mdat``, ``moov``, ...), from their
    headers; a recording cut short lacks ``moov``, which most writers put at the end."""
    size = path.stat().st_size
    kinds, pos = [], 0
    with path.open("rb") as f:
        while pos + 8 <= size and len(kinds) < limit:
            f.seek(pos)
            header = f.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:
                length = struct.unpack(">Q", header[8:])[0]
            elif length == 0:
                length = size - pos
            if length < 8:
                break
            kinds.append(kind.decode("latin-1"))
            pos += length
    return kinds


def image_files(path: Path) -> tuple[Path, list[Path]]:
    """An image folder's frames, sorted: ``path/img1`` (a MOT Challenge sequence) or ``path``."""
    folder = path / "img1" if (path / "img1").is_dir() else path
    return folder, sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolderReader:
    """Sorted images of a folder (a MOT Challenge ``img1`` folder or its sequence folder)."""

    live = False
    frame_count: Optional[int] = None
    problem: Optional[str] = None

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.files: list[Path] = []
        self.position = 0
        self.fps = None

    def open(self) -> None:
        folder, self.files = image_files(self.folder)
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
        from sim.render import CameraRenderer
        from sim.scene import World, resolve_scene

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


def make_reader(source: str, timeout_s: float = 4.0) -> FrameReader:
    """The reader for ``source``; ``timeout_s`` bounds a stream's open and each read."""
    if source.startswith("synthetic://"):
        return SyntheticReader(source)
    if source.isdigit() or "://" in source:
        return VideoReader(source, timeout_s)
    path = Path(source)
    if path.is_dir():
        return ImageFolderReader(source)
    if path.is_file():
        return VideoReader(source)
    raise SourceError(f"source not found: {source}")


class CameraCapture(threading.Thread):
    """One camera's capture loop; the pipeline calls :meth:`take` for the newest frame."""

    def __init__(
        self,
        cam: CameraConfig,
        new_frame: threading.Event,
        stop: threading.Event,
        reconnect_max_s: float = 10.0,
        reader: Optional[FrameReader] = None,
        epoch: Optional[float] = None,
    ):
        super().__init__(name=f"capture-{cam.id}", daemon=True)
        self.epoch = time.time() if epoch is None else epoch  # scene time of a file's first frame
        self.cam = cam
        self.reader = reader or make_reader(cam.source, cam.timeout_s)
        self.new_frame, self.stop = new_frame, stop
        self.reconnect_max_s = reconnect_max_s
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self.finished = False
        self.read_count = self.dropped = self.reconnects = 0  # reconnects: every open attempt after the first
        self._opens = 0
        self.decode_seconds = 0.0
        self.error: Optional[str] = None  # why the capture ended (a file that cannot be read, a crash)
        self.problem: Optional[str] = None  # why a live source delivers nothing now (cleared by its next frame)

    def take(self) -> Optional[Frame]:
        with self._cond:
            frame, self._latest = self._latest, None
            self._cond.notify_all()
        return frame

    def _open_with_backoff(self) -> bool:
        """Open the reader; a live source is retried with exponential backoff until ``stop``,
        one warning line per failed attempt, with its reason."""
        delay = 0.25
        while not self.stop.is_set():
            if self._opens:
                self.reconnects += 1
            self._opens += 1
            try:
                self.reader.open()
                return True
            except SourceError as exc:
                if not self.reader.live:
                    self.error = str(exc)
                    log.error("camera %s: %s", self.cam.id, exc)
                    return False
                self.problem = str(exc)
                log.warning("camera %s: %s; retry %d in %.1fs", self.cam.id, exc, self.reconnects + 1, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)
        return False

    def _warn_if_cut_short(self, frames: int) -> None:
        """A file that ends well before the length its header gives was cut short (a copy or a
        recording interrupted): say so, since the camera simply ends."""
        expected = self.reader.frame_count
        if expected and frames < 0.9 * expected:
            log.warning(
                "camera %s: %s ended after %d of the %d frames its header announces (truncated?)",
                self.cam.id,
                self.cam.source,
                frames,
                expected,
            )

    @property
    def rate(self) -> float:
        """Frames per second this capture delivers: a file's or synthetic camera's own rate over
        the stride ``fps`` asks for (a 25 fps file at ``fps: 10`` delivers 12.5), a stream's
        configured or announced rate, 30 when nothing says."""
        if self.reader.fps and not self.reader.live:
            return self.reader.fps / self._stride()
        return self.cam.fps or getattr(self.reader, "fps", None) or 30.0

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
                if self.stop.is_set():
                    return
                if self.reader.live:
                    self.problem = self.reader.problem or "the stream dropped"
                    log.warning("camera %s: %s; reconnecting", self.cam.id, self.problem)
                    self.reader.close()
                    self.stop.wait(0.25)  # never spin on a stream that opens and drops at once
                    if not self._open_with_backoff():
                        return
                    continue
                self._warn_if_cut_short(index)
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
            self.problem = None
            self._deliver(Frame(self.cam.id, index, self._scene_time(index), image, decode))
            if self.cam.realtime and not self.reader.live and period:
                next_due += period
                self.stop.wait(max(0.0, next_due - time.monotonic()))
