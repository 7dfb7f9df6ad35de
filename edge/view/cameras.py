"""The cameras the view knows and the runtime's latest stats.

:class:`CameraBook` takes the headers of ``frame/<camera>`` events (the latest preview of each
camera, at most ``max_cameras``) and ``stats`` events (the runtime's figures: per-camera fps, how
long a camera has been down, whether it is processed below its rate, the governor's cadence; and
the latencies and counters the page's status shows). A camera is down when the runtime says so,
or when its previews stopped for ``stale_s`` on the view's clock.

Not thread-safe by itself: the state's lock covers every call.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from edge.view.config import Limits

# the fields of a ``stats`` event the page's status shows
STATUS_STATS = (
    "latency_ms",
    "end_to_end_ms",
    "dropped",
    "events_dropped",
    "gallery",
    "reconnects",
    "restarts",
    "frames",
    "embedded",
    "publish_ts",
)


@dataclass
class Camera:
    id: str
    frame_seq: int = 0  # previews received (the page asks for /frame/<id>?seq=N)
    jpeg: Optional[bytes] = None
    header: dict[str, Any] = field(default_factory=dict)
    frame_at: Optional[float] = None  # view clock of the latest preview
    preview_times: deque[float] = field(default_factory=lambda: deque(maxlen=10))
    fps: Optional[float] = None  # the runtime's figure (stats event)
    down_for_s: Optional[float] = None  # the runtime's figure (stats event)
    # processed below its rate: {fps, rate, share} (stats event, edge/runtime/rate_watch.py)
    behind: Optional[dict[str, Any]] = None
    detect_every: Optional[int] = None  # the governor's k: the detector on every k-th frame (stats event)
    stats_at: Optional[float] = None


class CameraBook:
    """Cameras by id (oldest first out past ``max_cameras``) and the runtime's status stats;
    ``clock`` is the view's now. Every delta carries every camera, so cameras hold no version."""

    def __init__(self, limits: Limits, clock: Callable[[], float]):
        self.limits, self.clock = limits, clock
        self.cameras: OrderedDict[str, Camera] = OrderedDict()
        self.stats: dict[str, Any] = {}

    def _camera(self, cam_id: str) -> Camera:
        cam = self.cameras.get(cam_id)
        if cam is None:
            cam = self.cameras[cam_id] = Camera(cam_id)
            while len(self.cameras) > self.limits.max_cameras:
                self.cameras.popitem(last=False)
        return cam

    def frame(self, h: dict[str, Any], jpeg: Optional[bytes]) -> None:
        """A ``frame/<camera>`` event: the camera's newest preview."""
        if jpeg is None:
            raise ValueError("frame message without its JPEG")
        cam = self._camera(str(h["camera"]))
        cam.jpeg, cam.frame_seq = jpeg, cam.frame_seq + 1
        cam.header = {k: h.get(k) for k in ("frame", "capture_ts", "publish_ts", "width", "height", "boxes")}
        cam.frame_at = self.clock()
        cam.preview_times.append(cam.frame_at)

    def take_stats(self, h: dict[str, Any]) -> None:
        """A ``stats`` event: the status figures, and each camera's fps, downtime, rate and cadence."""
        self.stats = {k: h.get(k) for k in STATUS_STATS if k in h}
        now = self.clock()
        down, behind, every = h.get("down") or {}, h.get("below_rate") or {}, h.get("detect_every") or {}
        for cam_id in {*(h.get("fps") or {}), *down, *behind}:
            cam = self._camera(str(cam_id))
            cam.fps = (h.get("fps") or {}).get(cam_id)
            cam.down_for_s = down.get(cam_id)
            cam.behind = behind.get(cam_id)
            cam.detect_every = every.get(cam_id)
            cam.stats_at = now

    def view(self, cam: Camera, now: float) -> dict[str, Any]:
        """What the page's tile shows of ``cam`` at view time ``now``."""
        down_since = None
        if cam.down_for_s is not None and cam.stats_at is not None:
            down_since = cam.stats_at - float(cam.down_for_s)
        elif cam.frame_at is not None and now - cam.frame_at > self.limits.stale_s:
            down_since = cam.frame_at  # previews stopped: down since the last one
        t = cam.preview_times
        preview_fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None
        return {
            "id": cam.id,
            "frame_seq": cam.frame_seq,
            "frame": cam.header,
            "fps": cam.fps,
            "preview_fps": round(preview_fps, 2) if preview_fps else None,
            "down_since": down_since,
            "behind": cam.behind,
            "detect_every": cam.detect_every,
        }

    def views(self, now: float) -> list[dict[str, Any]]:
        return [self.view(c, now) for c in self.cameras.values()]

    def jpeg(self, cam_id: str) -> Optional[bytes]:
        cam = self.cameras.get(cam_id)
        return cam.jpeg if cam is not None else None
