"""The compute governor: which frames get the detector when the box can't afford every one.

Without it, a box that is behind loses whatever frames its capture slots happen to overwrite:
irregular gaps that ByteTrack's IoU gate and the Kalman filter can't bridge, and identities
fragment (issue 30: under a 1-CPU quota 64 % of frames processed, cross-camera IDF1 96 → 55).
With it, every frame still goes through tracking, and the detector, by far the largest cost,
runs on every k-th frame of a camera; in between, the tracked boxes are carried by optical flow
(:mod:`edge.runtime.coasting`), as DeepStream's ``interval`` does with its visual tracker.

k is per camera. A config may fix it (``governor.detect_every: 3``); ``auto`` adapts it between 1
and ``max_detect_every`` from what the run measures: a camera processed below its rate (frames
skipped at the capture slot) raises its k; when all keep up, a cost model (the running cost of
a detection and of the rest of a frame) predicts the load at k - 1, and k comes down when that
load leaves a margin. Lockstep
runs (every frame, as fast as the box goes) keep k = 1 unless it is fixed: they are never behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from edge.runtime.rate_watch import RateWatch

log = logging.getLogger(__name__)

MAX_DETECT_EVERY = 4  # the default ceiling of detect_every: auto (governor.max_detect_every)

AUTO = "auto"


class Governor:
    """Per-camera detection cadence (see the module docstring)."""

    def __init__(
        self,
        cameras: list[str],
        detect_every: Union[int, str] = 1,
        max_detect_every: int = MAX_DETECT_EVERY,
        adapt_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.auto = detect_every == AUTO
        start = 1 if self.auto else int(detect_every)
        self.max_every = max(int(max_detect_every), start)
        self.every = {cam: start for cam in cameras}
        # frames since the camera's last detection (None: never)
        self._since: dict[str, Optional[int]] = {cam: None for cam in cameras}
        self.adapt_every_s, self.clock = adapt_every_s, clock
        self._last_adapt = clock()
        self.changes: list[tuple[float, str, int]] = []  # (time, camera, new k): counted in the run report
        self.adapting = False  # set by LiveControl: a realtime run whose k may change
        self.detect_cost: Optional[float] = None  # seconds per detected frame (running mean)
        self.rest_cost: Optional[float] = None  # seconds per frame for everything else
        self.target_busy = 0.8  # lower k only when the loop would stay this busy at most

    def detect_now(self, camera: str) -> bool:
        """True when this frame of ``camera`` gets the detector; counts the frame either way."""
        since = self._since.get(camera)
        if since is not None and since + 1 < self.every.get(camera, 1):
            self._since[camera] = since + 1
            return False
        self._since[camera] = 0
        return True

    def observe(self, frames: int, detected: int, step_s: float, detect_s: float) -> None:
        """One step's cost: ``frames`` processed in ``step_s``, ``detected`` of them through the
        detector in ``detect_s``. Kept as running means of the cost of a detection and of
        everything else per frame: the model that predicts the load at another k."""
        if frames <= 0:
            return
        a = 0.1
        if detected:
            self.detect_cost = _mix(self.detect_cost, detect_s / detected, a)
        self.rest_cost = _mix(self.rest_cost, max(step_s - detect_s, 0.0) / frames, a)

    def frame_cost(self, k: int) -> float:
        """Predicted seconds per frame when the detector runs on every k-th frame."""
        return (self.rest_cost or 0.0) + (self.detect_cost or 0.0) / k

    def adapt(self, shares: dict[str, float], busy: float, now: Optional[float] = None) -> list[str]:
        """Move each camera's k one step. Up when the camera is processed below 0.95 of its rate
        (``shares``: processed/configured over the last window); down when every camera keeps its
        rate and the cost model says the loop, now ``busy`` (share of its time spent processing),
        would stay below ``target_busy`` at k - 1. At most once per ``adapt_every_s``, so each
        change is measured before the next. Returns a line per change (logged)."""
        now = self.clock() if now is None else now
        if not self.auto or now - self._last_adapt < self.adapt_every_s:
            return []
        self._last_adapt = now
        lines = []
        keeping_up = all(s >= 0.95 for s in shares.values())
        for cam, k in self.every.items():
            share = shares.get(cam)
            new = k
            if share is not None and share < 0.95 and k < self.max_every:
                new, why = k + 1, f"processed at {share:.0%} of its rate"
            elif keeping_up and k > 1 and self.detect_cost is not None:
                predicted = busy * self.frame_cost(k - 1) / max(self.frame_cost(k), 1e-9)
                if predicted < self.target_busy:
                    new, why = k - 1, f"keeping its rate, {busy:.0%} busy, {predicted:.0%} expected at {k - 1}"
            if new != k:
                self.every[cam] = new
                self.changes.append((now, cam, new))
                lines.append(f"{cam}: detector on {every_nth(new)}, boxes carried between by optical flow ({why})")
                log.info("governor: %s", lines[-1])
        return lines

    @property
    def coasting(self) -> bool:
        """Whether boxes may have to be carried to the next frame (each frame's grey copy is kept)."""
        return self.adapting or max(self.every.values(), default=1) > 1

    def report(self) -> dict[str, int]:
        return dict(self.every)


def _mix(old: Optional[float], new: float, a: float) -> float:
    return new if old is None else (1 - a) * old + a * new


def every_nth(k: int) -> str:
    """``every frame``, ``every 2nd frame``, ``every 3rd frame``, ``every 4th frame``..."""
    if k == 1:
        return "every frame"
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"every {k}{suffix} frame"


class LiveControl:
    """The realtime loop's feedback: every processed frame goes to the :class:`RateWatch` (which
    warns when a camera falls below its rate) and the time spent processing is summed; once per
    ``governor.adapt_every_s`` the governor moves k from the shares and how busy the loop was.
    ``delivered`` gives each camera's count of frames delivered so far (its capture's reads), so
    shares are against what a camera sends, not what it announces.

    How busy the box is: the larger of the loop's share of time processing and the process's CPU
    use (every thread: capture and decoding too) over the ``cpus`` it may use. Under a quota the
    loop alone looks idle while decoding threads exhaust the quota; lowering k then would only
    move the throttling (measured: k oscillating between 1 and 4 under a 0.6-CPU quota)."""

    def __init__(
        self,
        governor: Governor,
        watch: RateWatch,
        delivered: Optional[Callable[[], dict[str, int]]] = None,
        cpus: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ):
        self.governor, self.watch, self.clock, self.cpu_clock = governor, watch, clock, cpu_clock
        self.delivered, self.cpus = delivered, cpus
        self._busy, self._since, self._cpu_since = 0.0, clock(), cpu_clock()
        governor.adapting = True  # from now on a camera's k may rise: keep what carrying boxes needs

    def step(self, cameras: list[str], busy_s: float) -> None:
        """One loop step processed frames of ``cameras`` in ``busy_s`` seconds."""
        now = self.clock()
        for cam in cameras:
            self.watch.frame(cam, now)
        self._busy += busy_s
        self.tick(now)

    def tick(self, now: Optional[float] = None) -> None:
        """Warnings due, and the governor's move when its period is over (also called while idle)."""
        now = self.clock() if now is None else now
        for cam, total in (self.delivered() if self.delivered else {}).items():
            self.watch.delivered(cam, total, now)
        self.watch.check(now)
        if now - self._since >= self.governor.adapt_every_s:
            cpu = self.cpu_clock()
            busy = self._busy / (now - self._since)
            if self.cpus:
                busy = max(busy, (cpu - self._cpu_since) / (now - self._since) / self.cpus)
            self.governor.adapt(self.watch.shares(now), busy, now)
            self._busy, self._since, self._cpu_since = 0.0, now, cpu

    def report(self) -> dict:
        return {
            "detect_every": self.governor.report(),
            "below_rate": self.watch.report(),
            "rate_warnings": self.watch.warnings,
            "governor_changes": len(self.governor.changes),
        }
