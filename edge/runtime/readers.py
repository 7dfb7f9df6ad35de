"""Frame readers: how images come out of one kind of source.

A *reader* knows how to get images out of one kind of source: an OpenCV video file / RTSP / HTTP
stream / USB camera (:class:`VideoReader`), an image folder (:class:`ImageFolderReader`), or the
synthetic world (:class:`~edge.runtime.synthetic_source.SyntheticReader`, loaded only for a
``synthetic://`` source). :func:`make_reader` picks one for a camera's ``source``; the capture
thread (:mod:`edge.runtime.sources`) owns it. A reader that cannot open raises
:class:`SourceError` with the reason (:mod:`edge.runtime.source_diagnosis` finds it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Protocol

import cv2
import numpy as np

from edge.runtime.source_diagnosis import (
    IMAGE_SUFFIXES,
    SourceError,
    image_files,
    redact,
    stream_failure,
    usb_failure,
    why_unreadable,
)


class FrameReader(Protocol):
    """What the capture thread reads of a reader (read-only, so a reader whose rate is always
    known may say ``fps: float``)."""

    @property
    def fps(self) -> Optional[float]: ...

    @property
    def live(self) -> bool: ...

    @property
    def frame_count(self) -> Optional[int]:
        """A file's length as its header gives it (None: unknown, or live)."""

    @property
    def problem(self) -> Optional[str]:
        """Why the last read gave no frame, when the reader knows."""

    def open(self) -> None: ...

    def read(self) -> Optional[np.ndarray]:
        """The next frame, decoded (None: no frame, see :attr:`problem`)."""

    @property
    def position(self) -> int:
        """Frames read or grabbed since :meth:`open` (the last one's number)."""

    def grab(self) -> bool:
        """Move past the next frame without decoding it into an image (False: no frame)."""

    def retrieve(self, position: int) -> Optional[np.ndarray]:
        """The image of frame ``position`` if the reader can still give it (None if not): a video
        only the frame its last grab moved past, an image folder or a synthetic camera any."""

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
        self.live = is_live(source)
        self.timeout_s = timeout_s
        self.cap: Optional[cv2.VideoCapture] = None
        self.position = 0
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
        self.position = 0
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
            self.position += 1
            return image
        self._explain_missing(started)
        return None

    def grab(self) -> bool:
        """OpenCV's ``grab``: the frame is demuxed (and, for FFmpeg, decoded) but not converted to
        BGR nor copied out; a frame nobody will look at costs no more than that."""
        started = time.monotonic()
        if self.cap is not None and self.cap.grab():
            self.position += 1
            return True
        self._explain_missing(started)
        return False

    def retrieve(self, position: int) -> Optional[np.ndarray]:
        if self.cap is None or position != self.position:  # grabbed past it: that frame is gone
            return None
        ok, image = self.cap.retrieve()
        return image if ok else None

    def _explain_missing(self, started: float) -> None:
        if self.stream and time.monotonic() - started >= 0.9 * self.timeout_s:
            self.problem = f"no frame within {self.timeout_s:g} s (read timeout)"
        elif self.live:
            self.problem = (
                "the stream ended or the connection dropped"
                if self.stream
                else "the camera stopped delivering frames (unplugged?)"
            )

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderReader:
    """Sorted images of a folder (a MOT Challenge ``img1`` folder or its sequence folder)."""

    live = False
    frame_count: Optional[int] = None
    problem: Optional[str] = None

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.files: list[Path] = []
        self.position = 0
        self.fps: Optional[float] = None

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
        return self.retrieve(self.position) if self.grab() else None

    def grab(self) -> bool:
        if self.position >= len(self.files):
            return False
        self.position += 1
        return True

    def retrieve(self, position: int) -> Optional[np.ndarray]:
        image = cv2.imread(str(self.files[position - 1]))
        if image is None:
            raise SourceError(f"unreadable image {self.files[position - 1]}")
        return image

    def close(self) -> None:
        pass


def is_live(source: str) -> bool:
    """A source that goes on in time whether it is read or not (a stream URL, a USB camera, a
    synthetic camera told to behave like one), not one that gives the same frames each run."""
    if source.startswith("synthetic://"):
        from edge.runtime.synthetic_source import is_live_url  # the simulator loads only when asked for

        return is_live_url(source)
    return source.isdigit() or "://" in source


def make_reader(source: str, timeout_s: float = 4.0) -> FrameReader:
    """The reader for ``source``; ``timeout_s`` bounds a stream's open and each read."""
    if source.startswith("synthetic://"):
        from edge.runtime.synthetic_source import SyntheticReader  # the simulator loads only when asked for

        return SyntheticReader(source)
    if source.isdigit() or "://" in source:
        return VideoReader(source, timeout_s)
    path = Path(source)
    if path.is_dir():
        return ImageFolderReader(source)
    if path.is_file():
        return VideoReader(source)
    raise SourceError(f"source not found: {source}")
