"""The per-camera capture thread.

A :class:`CameraCapture` thread owns one reader (:mod:`edge.runtime.readers`) and keeps only the
newest frame for the pipeline: a slow pipeline drops frames instead of building a backlog
(counted in ``dropped``). Live sources that fail are reopened with exponential backoff while the
other cameras keep running (each retry counted in ``reconnects``, each failure one warning line
with its reason); files end (or loop).

With ``realtime: false`` a file or synthetic camera instead hands over every frame and waits for
the pipeline (lockstep), which is what evaluation against ground truth needs.

A file or synthetic camera played in real time is decoded on demand: the thread only *grabs* each
frame at its time (a synthetic camera renders nothing, a video is demuxed but not converted) and
the image is made when the pipeline takes it, so a pipeline that keeps one frame in three pays for
one in three. Frames a camera's ``fps`` strides over are only grabbed, in every mode. Streams and
USB cameras keep decoding in the thread: their decoder must see every frame anyway, and a read may
wait seconds for the network, which the pipeline must never wait on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional, Union

import cv2

from edge.runtime.config import CameraConfig
from edge.runtime.readers import FrameReader, make_reader
from edge.runtime.source_diagnosis import SourceError
from edge.runtime.types import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grabbed:
    """A frame grabbed and not decoded yet: its image is made when the pipeline takes it."""

    index: int  # the capture's count (the frame's number in its MOT rows)
    position: int  # the reader's, to retrieve it by
    scene_time: float


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
        self._latest: Union[Frame, Grabbed, None] = None
        self._reader_lock = threading.Lock()  # a grab and the retrieve of what it grabbed never interleave
        self.on_demand = cam.realtime and not self.reader.live  # decode on take (see the module's docstring)
        self._next_due = 0.0  # when a file or synthetic camera played in real time has its next frame
        self.finished = False
        # read_count: frames delivered (the governor's measure of a camera's rate); dropped: overwritten
        # before the pipeline took them; reconnects: every open attempt after the first
        self.read_count = self.dropped = self.reconnects = 0
        self._opens = 0
        self.error: Optional[str] = None  # why the capture ended (a file that cannot be read, a crash)
        self.problem: Optional[str] = None  # why a live source delivers nothing now (cleared by its next frame)

    def take(self) -> Optional[Frame]:
        """The newest frame not taken yet (None if none came since), decoded now if it was only grabbed."""
        if not self.on_demand:
            with self._cond:
                frame, self._latest = self._latest, None
                self._cond.notify_all()
            assert not isinstance(frame, Grabbed)
            return frame
        with self._reader_lock:  # the reader stays on the frame taken until it is decoded
            with self._cond:
                item, self._latest = self._latest, None
                self._cond.notify_all()
            return self._decode(item) if isinstance(item, Grabbed) else item

    def _decode(self, grabbed: Grabbed) -> Optional[Frame]:
        start = time.perf_counter()
        image = self.reader.retrieve(grabbed.position)
        if image is None:  # a video grabbed past it before it was taken: dropped after all
            with self._cond:
                self.dropped += 1
            return None
        if self.cam.resize:
            image = cv2.resize(image, tuple(self.cam.resize), interpolation=cv2.INTER_AREA)
        return Frame(self.cam.id, grabbed.index, grabbed.scene_time, image, time.perf_counter() - start)

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

    def _deliver(self, frame: Union[Frame, Grabbed]) -> None:
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
            with self._reader_lock:
                if isinstance(self._latest, Grabbed):  # decoded before the reader closes under it
                    self._latest = self._decode(self._latest)
                self.reader.close()
            self.finished = True
            self.new_frame.set()

    def _loop(self) -> None:
        if not self._open_with_backoff():
            return
        stride, index = self._stride(), 0
        period = stride / self.reader.fps if self.reader.fps else (1.0 / self.cam.fps if self.cam.fps else 0.0)
        self._next_due = time.monotonic()
        while not self.stop.is_set():
            start = time.perf_counter()
            wanted = index % stride == 0  # frames the camera's fps strides over are only grabbed
            if wanted and not self.on_demand:
                image = self.reader.read()
                got = image is not None
            else:
                with self._reader_lock:
                    got = self.reader.grab()
                image = None
            if not got:
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
                    with self._reader_lock:
                        self._drop_grabbed()  # its position means another frame in the next pass
                        self.reader.close()
                        self.reader.open()
                    continue
                return
            index += 1
            if not wanted:
                continue
            self.read_count += 1
            self.problem = None
            if self.on_demand:  # decoded when taken
                self._deliver(Grabbed(index, self.reader.position, self._scene_time(index)))
                self._pace(period)
                continue
            assert image is not None  # read() gave it (got)
            if self.cam.resize:
                image = cv2.resize(image, tuple(self.cam.resize), interpolation=cv2.INTER_AREA)
            self._deliver(Frame(self.cam.id, index, self._scene_time(index), image, time.perf_counter() - start))
            self._pace(period)

    def _drop_grabbed(self) -> None:
        with self._cond:
            if isinstance(self._latest, Grabbed):
                self._latest = None
                self.dropped += 1

    def _pace(self, period: float) -> None:
        """A file or synthetic camera played in real time waits for its next frame's time."""
        if self.cam.realtime and not self.reader.live and period:
            self._next_due += period
            self.stop.wait(max(0.0, self._next_due - time.monotonic()))
