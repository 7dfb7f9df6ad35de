"""Running statistics of the pipeline: fps per camera, per-stage latency, drops, gallery size."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np


class PipelineStats:
    """Per-stage latencies (ms, a sliding window) and frame counters since the last report."""

    def __init__(self, window: int = 2000):
        self.latency: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self.frames: dict[str, int] = defaultdict(int)
        self.total_frames: dict[str, int] = defaultdict(int)
        self.first_frame_at: dict[str, float] = {}  # monotonic time of each camera's first / last frame
        self.last_frame_at: dict[str, float] = {}
        self.end_to_end: deque = deque(maxlen=window)
        self.embedded = 0
        self.swaps = 0  # tracks cut because their crops turned into someone else's (reid.swap_below)
        self.carried = 0  # frames whose boxes were carried by optical flow, not detected (edge/runtime/governor.py)
        self._since = time.monotonic()

    def stage(self, name: str, seconds: float) -> None:
        self.latency[name].append(seconds * 1000.0)

    def frame(self, camera_id: str, capture_ts: float) -> None:
        self.frames[camera_id] += 1
        self.total_frames[camera_id] += 1
        now = time.monotonic()
        self.first_frame_at.setdefault(camera_id, now)
        self.last_frame_at[camera_id] = now
        self.end_to_end.append((time.time() - capture_ts) * 1000.0)

    def report(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Figures since the previous report (fps) and over the window (latency percentiles)."""
        now = time.monotonic()
        elapsed = max(now - self._since, 1e-6)
        out: dict[str, Any] = {
            "fps": {cam: round(n / elapsed, 2) for cam, n in self.frames.items()},
            "latency_ms": {name: percentiles(values) for name, values in self.latency.items() if values},
            "end_to_end_ms": percentiles(self.end_to_end) if self.end_to_end else {},
            "frames": dict(self.total_frames),
            "embedded": self.embedded,
            "swaps_cut": self.swaps,
            "frames_carried": self.carried,
        }
        out.update(extra or {})
        self.frames.clear()
        self._since = now
        return out

    def per_camera(self, camera_ids: Sequence[str] = ()) -> dict[str, dict[str, float]]:
        """Frames of each camera and its mean fps over the time it actually ran (first to last
        frame), so a camera that ended early is not averaged over the others' time. Cameras in
        ``camera_ids`` that delivered nothing are listed with zeros."""
        out = {}
        for cam in dict.fromkeys([*camera_ids, *self.total_frames]):
            n = self.total_frames.get(cam, 0)
            running = self.last_frame_at[cam] - self.first_frame_at[cam] if n else 0.0
            fps = (n - 1) / running if n > 1 and running > 0 else 0.0
            out[cam] = {"frames": n, "fps": round(fps, 2), "running_s": round(running, 2)}
        return out


def percentiles(values) -> dict[str, float]:
    a = np.fromiter(values, float)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "mean": round(float(a.mean()), 2),
    }


def format_report(r: dict[str, Any]) -> str:
    fps = " ".join(f"{cam}={v:.1f}" for cam, v in r["fps"].items())
    lat = " ".join(f"{k}={v['p50']:.1f}" for k, v in r["latency_ms"].items())
    extra = " ".join(
        f"{k}={v}"
        for k, v in r.items()
        if k in ("dropped", "gallery", "reconnects", "events_dropped")
        or (k in ("down", "restarts") and any(v.values() if isinstance(v, dict) else [v]))
        or (k == "detect_every" and any(n > 1 for n in v.values()))
    )
    return f"fps[{fps}] p50ms[{lat}] {extra}"
