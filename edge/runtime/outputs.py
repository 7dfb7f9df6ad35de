"""Result files: MOT Challenge rows per camera (local and global ids) and annotated videos.

``<mot_dir>/<camera>.txt`` has the tracker's local ids; ``<camera>.global.txt`` the same rows
with global ids. A tracklet's global rows wait until its identity is final (the identity engine's
revision window has passed, or the run ended) and are then written with it, so every row carries
the identity the run finally decided (what a user reads at the end, and what evaluation scores).
Tracklets become final out of order, so their rows wait in a buffer and go out sorted by frame
(as MOT files are) once no tracklet still waiting has an earlier row.

An annotated video keeps the media's clock: each processed frame is written at its media time
(the frame held until the next one), so a run that processed a third of the frames still gives
a video that plays at the right speed.

Outputs are extras: :class:`GuardedOutput` wraps one, so that a failure (a writer that cannot
open, a full disk) is logged once with the camera and the reason and switches that output off
for that camera, while detection, tracking, matching and publishing go on.
"""

from __future__ import annotations

import heapq
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Optional, ParamSpec, Protocol, TypeVar

import cv2
import numpy as np

from core.mot import mot_row
from edge.runtime.config import EdgeConfig
from edge.runtime.tracklets import Tracklet

if TYPE_CHECKING:
    from edge.identity.service import IdentityService
    from edge.reid.base import ReIDBackend
    from edge.site.tracklet_log import TrackletLogWriter
    from edge.stream.node_stream import StreamOutput

log = logging.getLogger(__name__)

MAX_PENDING_ROWS = 5000
MAX_BUFFERED_ROWS = 50000  # global rows of one camera waiting behind an earlier one (then written anyway)
MAX_HOLD_S = 60.0  # a gap in a video longer than this (a camera down) is held this long, not more


ALL_CAMERAS = "*"


class MotWriter:
    """MOT rows per camera. One global id appears at most once per frame: where a tracker
    hand-over showed a person's old and new track together for a frame or two, the first row
    written stands (the MOT format, and TrackEval, allow one box per id and frame).

    Global rows are buffered (a heap per camera) and written in frame order: a row goes out once
    no tracklet whose identity is not final yet has a pending row at an earlier frame. Past
    ``MAX_BUFFERED_ROWS`` (a tracklet that never becomes final) the oldest go out anyway."""

    def __init__(self, folder: str | Path, camera_ids: list[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.local = {c: open(self.folder / f"{c}.txt", "w") for c in camera_ids}
        self.global_ = {c: open(self.folder / f"{c}.global.txt", "w") for c in camera_ids}
        self._written: dict[str, dict[int, set[int]]] = {c: {} for c in camera_ids}  # camera -> frame -> global ids
        self._buffer: dict[str, list] = {
            c: [] for c in camera_ids
        }  # camera -> heap of (frame, global id, seq, xyxy, conf)
        self._waiting: dict[int, Tracklet] = {}  # id(tracklet) -> tracklet with rows not yet final
        self._seq = 0

    def row(self, t: Tracklet, frame_index: int) -> None:
        """The local row now; the global row once the tracklet's identity is final (:meth:`flush`).
        Past ``MAX_PENDING_ROWS`` a long tracklet's oldest rows go out with its current id."""
        self.local[t.camera_id].write(mot_row(frame_index, t.local_id, t.xyxy, t.conf))
        t.pending_rows.append((frame_index, t.xyxy.copy(), t.conf))
        self._waiting[id(t)] = t
        if len(t.pending_rows) > MAX_PENDING_ROWS:
            frame, xyxy, conf = t.pending_rows.pop(0)
            if t.global_id is not None:
                self._buffer_row(t.camera_id, frame, t.global_id, xyxy, conf)
                self._drain(t.camera_id)

    def flush(self, t: Tracklet) -> None:
        """The tracklet is final: its global rows go out (none when it never got an identity), and
        it no longer holds back the rows of the tracklets after it."""
        if t.global_id is not None:
            for frame_index, xyxy, conf in t.pending_rows:
                self._buffer_row(t.camera_id, frame_index, t.global_id, xyxy, conf)
        t.pending_rows.clear()
        self._waiting.pop(id(t), None)
        self._drain(t.camera_id)

    def _buffer_row(self, camera_id: str, frame: int, global_id: int, xyxy: np.ndarray, conf: float) -> None:
        self._seq += 1
        heapq.heappush(self._buffer[camera_id], (frame, global_id, self._seq, xyxy, conf))

    def _drain(self, camera_id: str, everything: bool = False) -> None:
        """Write the buffered rows no waiting tracklet of this camera can still precede."""
        starts = [t.pending_rows[0][0] for t in self._waiting.values() if t.camera_id == camera_id and t.pending_rows]
        horizon = float("inf") if everything else min(starts, default=float("inf"))
        heap = self._buffer[camera_id]
        while heap and (heap[0][0] < horizon or len(heap) > MAX_BUFFERED_ROWS):
            frame, global_id, _, xyxy, conf = heapq.heappop(heap)
            self._write_global(camera_id, frame, global_id, xyxy, conf)

    def _write_global(self, camera_id: str, frame: int, global_id: int, xyxy: np.ndarray, conf: float) -> None:
        written = self._written[camera_id]
        ids = written.setdefault(frame, set())
        if global_id in ids:
            return
        ids.add(global_id)
        self.global_[camera_id].write(mot_row(frame, global_id, xyxy, conf))
        if len(written) > 2 * MAX_PENDING_ROWS:  # bounded: forget the oldest frames
            for old in sorted(written)[:MAX_PENDING_ROWS]:
                del written[old]

    def close(self) -> None:
        for camera_id in self._buffer:
            self._drain(camera_id, everything=True)
        for f in (*self.local.values(), *self.global_.values()):
            f.close()


def _colour(kind: str, ident: int) -> tuple[int, int, int]:
    """A stable colour per id; ``kind`` ("global" / "local") keeps the two id spaces apart."""
    rng = np.random.default_rng(zlib.crc32(f"{kind}:{ident}".encode()))
    blue, green, red = (int(c) for c in rng.integers(60, 255, 3))
    return blue, green, red


class AnnotatedVideo:
    """Boxes with ``local/global`` labels drawn on each camera's frames, one mp4 per camera.

    The writer runs at the camera's nominal rate and each frame lands at its media time: where
    frames were skipped (a pipeline slower than the camera drops them), the last frame is held
    (repeated) until the next one's time, so the video plays at the speed of the scene. A frame
    whose slot is already written (faster than the nominal rate) is left out; a gap longer than
    ``MAX_HOLD_S`` (a camera down) is held for ``MAX_HOLD_S`` only; a clock that jumps back (a
    restarted stream) starts again from the next slot."""

    def __init__(self, folder: str | Path, fps: float | dict[str, float] = 10.0):
        """``fps``: one rate for every camera, or one per camera (10 where one is missing)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps = fps if isinstance(fps, dict) else {}
        self.default_fps = 10.0 if isinstance(fps, dict) else fps
        self.writers: dict[str, tuple[cv2.VideoWriter, tuple[int, int]]] = {}
        self.written: dict[str, int] = {}  # camera -> frames written (repeats included)
        self._origin: dict[str, float] = {}  # camera -> media time of slot 0
        self._last: dict[str, np.ndarray] = {}  # camera -> last frame written (held over gaps)

    def write(
        self, camera_id: str, image: np.ndarray, tracklets: list[Tracklet], media_ts: Optional[float] = None
    ) -> None:
        """Draw the boxes and write the frame at ``media_ts`` (seconds; None: the next slot)."""
        canvas = image.copy()
        for t in tracklets:
            x0, y0, x1, y1 = (int(v) for v in t.xyxy)
            gid: Optional[int] = t.global_id
            colour = _colour("global", gid) if gid is not None else _colour("local", t.local_id)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
            label = f"{t.local_id}/{gid if gid is not None else '?'}"
            label_y = y0 - 3 if y0 >= 14 else y0 + 14  # inside the box when it touches the top edge
            cv2.putText(canvas, label, (x0 + 2 if y0 < 14 else x0, label_y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
        writer, size = self._writer(camera_id, canvas)
        if (canvas.shape[1], canvas.shape[0]) != size:  # a stream that came back at another resolution
            canvas = cv2.resize(canvas, size)
        repeats = self._repeats(camera_id, media_ts)
        if repeats < 0:
            return
        last = self._last.get(camera_id)
        if last is not None:
            for _ in range(repeats):
                writer.write(last)
        writer.write(canvas)
        self._last[camera_id] = canvas
        self.written[camera_id] = self.written.get(camera_id, 0) + (repeats if last is not None else 0) + 1

    def _repeats(self, camera_id: str, media_ts: Optional[float]) -> int:
        """How often the previous frame is held before this one (-1: this frame's slot is taken)."""
        n = self.written.get(camera_id, 0)
        if media_ts is None:
            return 0
        fps = self.fps.get(camera_id, self.default_fps)
        origin = self._origin.setdefault(camera_id, media_ts)
        slot = round((media_ts - origin) * fps)
        if slot < n - 1 - fps:  # the clock went back (a restarted stream): carry on from here
            self._origin[camera_id] = media_ts - n / fps
            return 0
        if slot < n:
            return -1
        hold = min(slot - n, int(MAX_HOLD_S * fps))
        if hold < slot - n:
            self._origin[camera_id] += (slot - n - hold) / fps
        return hold

    def _writer(self, camera_id: str, canvas: np.ndarray) -> tuple[cv2.VideoWriter, tuple[int, int]]:
        if camera_id not in self.writers:
            h, w = canvas.shape[:2]
            path = self.folder / f"{camera_id}.mp4"
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps.get(camera_id, self.default_fps), (w, h)
            )
            if not writer.isOpened():
                raise OSError(f"cannot open a video writer for {path} ({w}x{h})")
            self.writers[camera_id] = (writer, (w, h))
        return self.writers[camera_id]

    def close(self) -> None:
        for writer, _ in self.writers.values():
            writer.release()


class Closable(Protocol):
    def close(self) -> None: ...


OutputT = TypeVar("OutputT", bound=Closable)
P = ParamSpec("P")


class GuardedOutput(Generic[OutputT]):
    """One result output whose failures are contained: the first failure for a camera is logged
    once (output, camera, reason) and later calls for that camera are skipped."""

    def __init__(self, name: str, output: OutputT):
        self.name = name
        self.output = output
        self.failed: dict[str, str] = {}  # camera (or ALL_CAMERAS) -> reason

    def call(self, camera_id: str, method: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
        """``method(*args, **kwargs)``, one of the output's methods (``mot.call(cam, mot.output.row,
        t, frame)``), unless this camera's output is already off."""
        if camera_id in self.failed or ALL_CAMERAS in self.failed:
            return
        try:
            method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of an extra output is contained
            self._switch_off(camera_id, exc)

    def close(self) -> None:
        try:
            self.output.close()
        except Exception as exc:  # noqa: BLE001
            self._switch_off(ALL_CAMERAS, exc)

    def _switch_off(self, camera_id: str, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.failed[camera_id] = reason
        where = "every camera" if camera_id == ALL_CAMERAS else f"camera {camera_id}"
        log.error("%s output switched off for %s: %s", self.name, where, reason)
        log.debug("%s output failure", self.name, exc_info=True)

    def errors(self) -> dict[str, str]:
        """``{"<output>/<camera>": reason}`` for the report."""
        return {f"{self.name}/{camera}": reason for camera, reason in self.failed.items()}


def open_outputs(
    cfg: EdgeConfig, frame_rates: Optional[dict[str, float]] = None
) -> tuple[Optional[GuardedOutput[MotWriter]], Optional[GuardedOutput[AnnotatedVideo]]]:
    """The MOT files and annotated videos a config asks for, each guarded (None where not asked);
    videos play at each camera's configured or measured rate. Opening them fails loudly (a bad
    folder is a config mistake); writing them later does not."""
    o = cfg.outputs
    mot = GuardedOutput("mot", MotWriter(o.mot_dir, [c.id for c in cfg.cameras])) if o.mot_dir else None
    fps = {c.id: c.fps or (frame_rates or {}).get(c.id) or 10.0 for c in cfg.cameras}
    video = GuardedOutput("video", AnnotatedVideo(o.video_dir, fps)) if o.video_dir else None
    return mot, video


def open_stream(cfg: EdgeConfig, reid: Optional[ReIDBackend], engine: IdentityService) -> Optional[StreamOutput]:
    """What publishes this node's summaries to its region's stream (``stream:``), else None: with
    site ids the identity service's own output (it also takes the hub's decisions back), else one
    of the pipeline's."""
    if cfg.stream is None or reid is None:
        return None
    if cfg.stream.site_ids:
        from edge.stream.site_ids import StreamSiteIds  # NATS only for a node that streams

        return engine.output if isinstance(engine, StreamSiteIds) else None
    from edge.stream.node_stream import StreamOutput

    return StreamOutput(cfg.stream, [c.id for c in cfg.cameras], reid.meta.embedding_dim, replay=cfg.replay_key)


def open_tracklet_log(cfg: EdgeConfig, reid: Optional[ReIDBackend]) -> Optional[GuardedOutput[TrackletLogWriter]]:
    """The tracklet log a config asks for (``outputs.tracklet_log``), guarded like the others."""
    if not cfg.outputs.tracklet_log:
        return None
    from edge.site.tracklet_log import TrackletLogWriter  # the site protocol's format

    dim = reid.meta.embedding_dim if reid is not None else 0
    writer = TrackletLogWriter(cfg.outputs.tracklet_log, [c.id for c in cfg.cameras], dim)
    return GuardedOutput("tracklet_log", writer)
